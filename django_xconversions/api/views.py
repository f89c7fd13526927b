"""API views. Access, throttle and page size follow ``XCONVERSIONS`` at request time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_xconversions import health
from django_xconversions.api import ingest, serializers
from django_xconversions.api.parsers import BoundedJSONParser
from django_xconversions.api.permissions import SettingsAccessMixin
from django_xconversions.conf import xsettings
from django_xconversions.models import Conversion, EventTag

F = TypeVar("F", bound=Callable[..., Any])


def documented(**kwargs: Any) -> Callable[[F], F]:
    """``extend_schema`` building on drf-spectacular's AutoSchema even when
    ``DEFAULT_SCHEMA_CLASS`` is DRF's own (it would otherwise be the base it extends)."""

    def decorator(method: F) -> F:
        method.schema = AutoSchema  # type: ignore[attr-defined]
        return extend_schema(**kwargs)(method)

    return decorator


class XConversionsAPIView(SettingsAccessMixin, APIView):
    """Base of every API view (the schema generator lists only these)."""

    # Set here so projects need no REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"].
    schema = AutoSchema()
    parser_classes = [BoundedJSONParser]

    # Bodies carry raw emails and phone numbers: error reports (ADMINS mail, the
    # technical 500 page) show no local variable of any frame below this one, and no
    # form field (form bodies are refused, but a failure before that would list them).
    @method_decorator(sensitive_post_parameters())
    @sensitive_variables()
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return super().dispatch(request, *args, **kwargs)


class ConversionPagination(CursorPagination):
    # Newest first by primary key: unique, indexed, and stable while rows are added.
    ordering = "-id"

    def get_page_size(self, request: Request) -> int:
        return xsettings.API_PAGE_SIZE

    def decode_cursor(self, request: Request) -> Cursor | None:
        cursor = super().decode_cursor(request)
        # DRF does not check the position's type; a tampered one would reach the query.
        if (
            cursor is not None
            and cursor.position is not None
            and not str(cursor.position).isdecimal()
        ):
            raise NotFound(self.invalid_cursor_message)
        return cursor


def _errors(errors: Any) -> Response:
    return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)


def _filtered(queryset: QuerySet[Conversion], params: dict[str, Any]) -> QuerySet[Conversion]:
    if "status" in params:
        queryset = queryset.filter(status=params["status"])
    if params.get("event"):
        key = params["event"]  # a tag's key, or the key a held conversion named
        queryset = queryset.filter(Q(event_tag__key=key) | Q(event_tag__isnull=True, event_key=key))
    if "created_from" in params:
        queryset = queryset.filter(created_at__gte=params["created_from"][0])
    if "created_to" in params:
        until, is_date = params["created_to"]
        if not is_date:
            queryset = queryset.filter(created_at__lte=until)
        elif until.date() < dt.date.max:  # a date includes its whole day
            queryset = queryset.filter(created_at__lt=until + dt.timedelta(days=1))
    return queryset


CONVERSION_INPUT = PolymorphicProxySerializer(
    component_name="ConversionInputOneOrMany",
    serializers=[
        serializers.ConversionInputSerializer,
        serializers.ConversionInputSerializer(many=True),
    ],
    resource_type_field_name=None,
    many=False,
)
CONVERSION_CREATED = PolymorphicProxySerializer(
    component_name="ConversionCreatedOneOrMany",
    serializers=[
        serializers.ConversionResultSerializer,
        serializers.ConversionResultListSerializer,
    ],
    resource_type_field_name=None,
    many=False,
)
DATE_HELP = "ISO 8601 date (the whole day) or date-time; created_at {} it."


class ConversionListView(XConversionsAPIView, generics.GenericAPIView):  # type: ignore[type-arg]
    """Conversions, newest first; POST records new ones."""

    serializer_class = serializers.ConversionSerializer
    pagination_class = ConversionPagination

    def get_queryset(self) -> QuerySet[Conversion]:
        return Conversion.objects.select_related("event_tag", "pixel")

    @documented(
        operation_id="conversions_list",
        parameters=[
            OpenApiParameter("status", enum=Conversion.Status.values, description="Status."),
            OpenApiParameter("event", str, description="Key of the event tag."),
            OpenApiParameter(
                "created_from", OpenApiTypes.STR, description=DATE_HELP.format("on or after")
            ),
            OpenApiParameter(
                "created_to", OpenApiTypes.STR, description=DATE_HELP.format("on or before")
            ),
        ],
        responses={
            200: serializers.ConversionSerializer(many=True),
            400: serializers.ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        params = serializers.ConversionFilterSerializer(data=request.query_params)
        if not params.is_valid():
            return _errors(params.errors)
        if {"created_from", "created_to"} <= params.validated_data.keys() and (
            params.validated_data["created_from"][0] > params.validated_data["created_to"][0]
        ):
            return _errors({"created_to": ["created_to must not be before created_from."]})
        queryset = _filtered(self.get_queryset(), params.validated_data)
        page = self.paginate_queryset(queryset)
        data = self.get_serializer(page, many=True).data
        return self.get_paginated_response(data)

    @documented(
        operation_id="conversions_create",
        request=CONVERSION_INPUT,
        responses={201: CONVERSION_CREATED, 400: serializers.ErrorSerializer},
        description=(
            f"Record one conversion (an object) or up to {ingest.MAX_ITEMS} (a list), all or "
            "none. A repeated event and conversion_id returns the stored conversion."
        ),
    )
    def post(self, request: Request) -> Response:
        try:
            body = request.data
        except ParseError as exc:  # BoundedJSONParser's message says what is wrong
            return _errors({"body": [str(exc.detail)]})
        if isinstance(body, dict):
            conversion, errors = ingest.check(body)
            if conversion is None:
                return _errors(errors)
            stored = ingest.store_all([conversion])[0]
            return Response(asdict(stored), status=status.HTTP_201_CREATED)
        if not isinstance(body, list):
            kind = "null" if body is None else type(body).__name__
            return _errors(
                {"body": [f"Expected a conversion object or a list of them, not {kind}."]}
            )
        if not 1 <= len(body) <= ingest.MAX_ITEMS:
            return _errors(
                {
                    "body": [
                        f"A list must hold 1 to {ingest.MAX_ITEMS} conversions, not {len(body)}."
                    ]
                }
            )
        conversions, item_errors = ingest.check_all(body)
        if item_errors:
            return _errors(item_errors)
        results = [asdict(s) for s in ingest.store_all(conversions)]
        return Response({"results": results}, status=status.HTTP_201_CREATED)


class ConversionDetailView(XConversionsAPIView, generics.RetrieveAPIView):  # type: ignore[type-arg]
    """One conversion by id."""

    serializer_class = serializers.ConversionSerializer
    queryset = Conversion.objects.select_related("event_tag", "pixel")

    @documented(operation_id="conversions_retrieve")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class EventTagListView(XConversionsAPIView, generics.ListAPIView):  # type: ignore[type-arg]
    """Every event tag (few per account, so one unpaginated list)."""

    serializer_class = serializers.EventTagSerializer
    queryset = EventTag.objects.select_related("account", "pixel").order_by("name", "pk")
    pagination_class = None


class HealthView(XConversionsAPIView):
    """Delivery health: backlog by status, oldest pending age, last send, recent failures,
    paused accounts and sent/failed per day."""

    # Not read: tells DjangoModelPermissions which model's view permission health needs.
    queryset = Conversion.objects.none()

    @documented(operation_id="health_retrieve", responses=serializers.HealthSerializer)
    def get(self, request: Request) -> Response:
        return Response(health.health().as_dict())
