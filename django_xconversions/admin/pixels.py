"""Pixel admin: the pixel token is write-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.utils.translation import gettext_lazy

from django_xconversions.admin.forms import PixelForm
from django_xconversions.admin.secrets import SecretsKeptFromErrorReports
from django_xconversions.models import Pixel

# Django's classes are generic for type checkers only (no __class_getitem__ at run time).
if TYPE_CHECKING:
    _PixelModelAdmin = admin.ModelAdmin[Pixel]
else:
    _PixelModelAdmin = admin.ModelAdmin


@admin.register(Pixel)
class PixelAdmin(SecretsKeptFromErrorReports, _PixelModelAdmin):
    form = PixelForm
    list_display = ["pixel_id", "name", "account", "has_pixel_token_display", "created_at"]
    list_filter = ["account"]
    search_fields = ["pixel_id", "name"]
    readonly_fields = ["has_pixel_token_display", "created_at"]
    fields = ["pixel_id", "account", "name", "has_pixel_token_display", "pixel_token", "created_at"]

    @admin.display(description=gettext_lazy("pixel token stored"), boolean=True)
    def has_pixel_token_display(self, obj: Pixel) -> bool:
        return obj.has_pixel_token
