"""Worker admin: the send_conversions --loop processes seen, live or gone, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_xconversions import heartbeat
from django_xconversions.models import WorkerHeartbeat


class LiveFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("live", _("live")), ("gone", _("gone"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WorkerHeartbeat]
    ) -> QuerySet[WorkerHeartbeat]:
        live = heartbeat.live_workers().values("pk")
        if self.value() == "live":
            return queryset.filter(pk__in=live)
        if self.value() == "gone":
            return queryset.exclude(pk__in=live)
        return queryset


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin[WorkerHeartbeat]):
    list_display = [
        "state",
        "host",
        "pid",
        "current_pixel",
        "last_beat_at",
        "started_at",
        "stopped_at",
    ]
    list_filter = [LiveFilter, "host"]
    search_fields = ["host", "pid", "current_pixel"]

    @admin.display(description=_("State"))
    def state(self, obj: WorkerHeartbeat) -> str:
        """live: beat within 3x the beat interval and not stopped; else gone."""
        return str(_("live") if heartbeat.is_live(obj, timezone.now()) else _("gone"))

    def get_readonly_fields(self, request: HttpRequest, obj: WorkerHeartbeat | None = None) -> Any:
        return [f.name for f in self.opts.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: WorkerHeartbeat | None = None
    ) -> bool:
        return False
