"""DeliveryAttempt admin: a read-only log of every request to X's conversions endpoint."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_xconversions.admin import display
from django_xconversions.admin.conversions import EstimatedCountPaginator
from django_xconversions.models import DeliveryAttempt


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin[DeliveryAttempt]):
    # Six columns that fit beside the filter at 1366 px: the outcome names the HTTP
    # status, the pixel its account (both are filters too); the duration is on the page.
    list_display = [
        "time",
        "pixel_display",
        "outcome",
        "events",
        "error_code_display",
        "debug_id_display",
    ]
    list_display_links = ["time"]
    list_filter = [
        "outcome",
        "http_status",
        "error_code",
        "account",
        "pixel",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["debug_id", "error_code"]
    # No date_hierarchy (a DISTINCT over every row): the created_at filter does that job.
    list_select_related = ["account", "pixel"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = [
        "time",
        "account",
        "pixel",
        "event_count",
        "http_status",
        "outcome",
        "error_code",
        "error_body",
        "debug_id",
        "duration_ms",
    ]

    class Media:
        css = display.MEDIA_CSS
        js = display.MEDIA_JS

    @admin.display(description=gettext_lazy("Time"), ordering="created_at")
    def time(self, obj: DeliveryAttempt) -> SafeString | str:
        return display.timestamp(obj.created_at)

    @admin.display(description=gettext_lazy("Pixel"), ordering="pixel__pixel_id")
    def pixel_display(self, obj: DeliveryAttempt) -> SafeString | str:
        return display.clipped(str(obj.pixel) if obj.pixel else "", css="xconv-clip-name")

    @admin.display(description=gettext_lazy("Events"), ordering="event_count")
    def events(self, obj: DeliveryAttempt) -> int:
        return obj.event_count

    @admin.display(description=gettext_lazy("Error code"), ordering="error_code")
    def error_code_display(self, obj: DeliveryAttempt) -> SafeString | str:
        return display.clipped(obj.error_code, css="xconv-clip-code")

    @admin.display(description=gettext_lazy("Debug ID"))
    def debug_id_display(self, obj: DeliveryAttempt) -> SafeString | str:
        return display.copyable(obj.debug_id, label=_("Copy the debug ID"))

    def get_readonly_fields(self, request: HttpRequest, obj: DeliveryAttempt | None = None) -> Any:
        return self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: DeliveryAttempt | None = None
    ) -> bool:
        return False
