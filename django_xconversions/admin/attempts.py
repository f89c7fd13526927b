"""DeliveryAttempt admin: a read-only log of every request to X's conversions endpoint."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from django_xconversions.admin.conversions import EstimatedCountPaginator
from django_xconversions.models import DeliveryAttempt


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin[DeliveryAttempt]):
    list_display = [
        "created_at",
        "account",
        "pixel",
        "event_count",
        "http_status",
        "outcome",
        "error_code",
        "debug_id",
        "duration_ms",
    ]
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

    def get_readonly_fields(self, request: HttpRequest, obj: DeliveryAttempt | None = None) -> Any:
        return [f.name for f in self.opts.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: DeliveryAttempt | None = None
    ) -> bool:
        return False
