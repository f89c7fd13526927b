"""The dedicated permissions that actions calling X require, beyond Django's change."""

from __future__ import annotations

from django.http import HttpRequest

# Declared on AdAccount.Meta.permissions; the app label makes them global to the app.
SEND_CONVERSIONS = "xconversions.send_conversions"
MANAGE_TAGS = "xconversions.manage_tags"
CHECK_ACCESS = "xconversions.check_access"


def allowed(request: HttpRequest, permission: str) -> bool:
    return bool(request.user.has_perm(permission))


class DedicatedPermissions:
    """``has_<name>_permission`` methods for ``@admin.action(permissions=[...])``."""

    def has_send_conversions_permission(self, request: HttpRequest) -> bool:
        return allowed(request, SEND_CONVERSIONS)

    def has_manage_tags_permission(self, request: HttpRequest) -> bool:
        return allowed(request, MANAGE_TAGS)

    def has_check_access_permission(self, request: HttpRequest) -> bool:
        return allowed(request, CHECK_ACCESS)
