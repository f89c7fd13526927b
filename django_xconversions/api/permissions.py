"""Authentication, permissions and throttling from the settings, resolved per request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission, DjangoModelPermissions
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from django_xconversions.api.throttling import XConversionsRateThrottle
from django_xconversions.conf import setting_path, xsettings

VIEW = "%(app_label)s.view_%(model_name)s"


class StaffModelPermissions(DjangoModelPermissions):
    """The default: an active staff user holding the model permission the admin asks for.

    Reads need ``view`` (DRF's ``DjangoModelPermissions`` lets any user read), writes
    ``add``; the model is that of the view's queryset (conversions for health and schema).
    A staff user who sees nothing in the admin sees nothing here either.
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": [VIEW],
        "HEAD": [VIEW],
        "OPTIONS": [VIEW],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        return bool(super().has_permission(request, view))


def _classes(name: str, value: Any) -> list[type[Any]]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ImproperlyConfigured(f"{setting_path(name)} must be a list of dotted paths.")
    # Classes are accepted as well as dotted paths (handy in tests).
    return [import_string(item) if isinstance(item, str) else item for item in value]


def authenticators() -> list[BaseAuthentication]:
    """``API_AUTHENTICATION_CLASSES``, or DRF's defaults when it is None."""
    value = xsettings.API_AUTHENTICATION_CLASSES
    if value is None:
        defaults = cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
        return [cls() for cls in defaults]
    return [cls() for cls in _classes("API_AUTHENTICATION_CLASSES", value)]


def permissions() -> list[BasePermission]:
    return [cls() for cls in _classes("API_PERMISSION_CLASSES", xsettings.API_PERMISSION_CLASSES)]


class SettingsAccessMixin:
    """Access from ``XCONVERSIONS`` for an APIView, with throttling first.

    DRF throttles only after authentication and permissions passed, so refused callers
    (password guessing included) would never be slowed down: here they count per IP.
    """

    throttle_classes: Sequence[type[BaseThrottle]] = [XConversionsRateThrottle]

    def get_authenticators(self) -> list[BaseAuthentication]:
        return authenticators()

    def get_permissions(self) -> list[BasePermission]:
        return permissions()

    def get_authenticate_header(self, request: Request) -> str:
        """The challenge of the first authentication class that has one (basic, token...).

        DRF asks only the first class, so its default order (session, then basic) answers
        an anonymous call 403 though basic auth would let it in. A challenge turns it into
        401 with ``WWW-Authenticate``; with session authentication alone there is none and
        403 stays, as in DRF.
        """
        for authenticator in self.get_authenticators():
            challenge = authenticator.authenticate_header(request)
            if challenge:
                return str(challenge)
        return ""  # no challenge: DRF answers 403

    def perform_authentication(self, request: Request) -> None:
        try:
            super().perform_authentication(request)  # type: ignore[misc]
        except APIException:
            self.check_throttles(request)  # request.user is anonymous by now
            raise

    def check_permissions(self, request: Request) -> None:
        self.check_throttles(request)
        super().check_permissions(request)  # type: ignore[misc]

    def check_throttles(self, request: Request) -> None:
        # Called again by APIView.initial(); count each request once.
        if getattr(request, "_xconversions_throttled", False):
            return
        request._xconversions_throttled = True  # type: ignore[attr-defined]
        super().check_throttles(request)  # type: ignore[misc]
