"""Pixel admin: the pixel token is write-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy

from django_xconversions.admin.forms import PixelForm
from django_xconversions.admin.object_page import ObjectPageContext
from django_xconversions.admin.secrets import (
    SecretsKeptFromErrorReports,
    unreadable_display,
    warn_unreadable,
)
from django_xconversions.models import Pixel
from django_xconversions.stored_secrets import unreadable_of_pixel


@admin.register(Pixel)
class PixelAdmin(ObjectPageContext, SecretsKeptFromErrorReports, admin.ModelAdmin[Pixel]):
    form = PixelForm
    list_display = ["pixel_id", "name", "account", "has_pixel_token_display", "created_at"]
    list_filter = ["account"]
    search_fields = ["pixel_id", "name"]
    readonly_fields = ["has_pixel_token_display", "secrets_display", "created_at"]
    fields = [
        "pixel_id",
        "account",
        "name",
        "has_pixel_token_display",
        "secrets_display",
        "pixel_token",
        "created_at",
    ]

    @admin.display(description=gettext_lazy("Pixel token stored"), boolean=True)
    def has_pixel_token_display(self, obj: Pixel) -> bool:
        return obj.has_pixel_token

    @admin.display(description=gettext_lazy("Secrets readable"))
    def secrets_display(self, obj: Pixel) -> str:
        return unreadable_display(lambda: unreadable_of_pixel(obj)) if obj.pk else "-"

    def object_page_context(self, request: HttpRequest, obj: Pixel) -> dict[str, Any]:
        if request.method == "GET":
            warn_unreadable(request, lambda: unreadable_of_pixel(obj))
        return {}
