"""The metrics view: Prometheus' text format (or OpenMetrics, when asked) for a user
holding ``xconversions.view_metrics``, authenticated as the API's callers are (so a
scraper can use HTTP basic auth or a token, whatever API_AUTHENTICATION_CLASSES allow).

The permission is granted alone to a scraping user: it reads counts, never a conversion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from django_xconversions import metrics
from django_xconversions.api.permissions import SettingsAccessMixin


class CanViewMetrics(BasePermission):
    message = f"Reading the metrics needs the {metrics.PERMISSION} permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user and user.is_authenticated and user.is_active and user.has_perm(metrics.PERMISSION)
        )


class AnyAccept(BaseContentNegotiation):
    """The body's format follows Accept (see ``metrics.render``); DRF's renderers only
    word refusals, so a scraper's Accept never turns into a 406."""

    def select_parser(self, request: Request, parsers: Iterable[Any]) -> Any:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: Any = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class MetricsView(SettingsAccessMixin, APIView):
    """``GET``: the scrape. 501 with the fix when prometheus-client is not installed."""

    content_negotiation_class = AnyAccept

    def get_permissions(self) -> list[BasePermission]:
        return [CanViewMetrics()]

    def get(self, request: Request) -> HttpResponse:
        if not metrics.AVAILABLE:
            return HttpResponse(
                metrics.MISSING, status=501, content_type="text/plain; charset=utf-8"
            )
        body, content_type = metrics.render(request.headers.get("Accept", ""))
        return HttpResponse(body, content_type=content_type)
