"""Conversion admin: a read-only outbox with send, retry, skip and route actions and a
health panel."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_xconversions import actions, health, routing
from django_xconversions.admin import perms
from django_xconversions.admin.health_panel import panel_context
from django_xconversions.delivery import SendSummary
from django_xconversions.models import Conversion


class EstimatedCountPaginator(Paginator[Any]):
    """Counts exactly on small tables and SQLite; on a large PostgreSQL table, the
    planner's estimate (a COUNT(*) of millions of rows would take seconds per page)."""

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            return health.estimated_count(self.object_list)
        return len(self.object_list)


def report_summary(request: HttpRequest, summary: SendSummary) -> None:
    failed = sum(summary.failed.values())
    text = _(
        "%(sent)d sent, %(failed)d failed, %(retrying)d to retry later; %(pending)d pending."
    ) % {
        "sent": summary.sent,
        "failed": failed,
        "retrying": summary.retrying,
        "pending": summary.pending_left,
    }
    messages.add_message(request, messages.WARNING if failed else messages.SUCCESS, text)
    for account_id, reason in summary.paused.items():
        messages.error(
            request, _("Account %(id)s paused: %(reason)s") % {"id": account_id, "reason": reason}
        )
    for account_id, until in {**summary.rate_limited, **summary.budget_exhausted}.items():
        messages.warning(
            request,
            _("Account %(id)s waits for its rate limit until %(until)s.")
            % {"id": account_id, "until": until},
        )


@admin.register(Conversion)
class ConversionAdmin(perms.DedicatedPermissions, admin.ModelAdmin[Conversion]):
    list_display = [
        "conversion_id",
        "event_tag",
        "event_key",
        "pixel",
        "status",
        "attempts",
        "conversion_time",
        "created_at",
        "sent_at",
        "error_reason",
        "debug_id",
    ]
    list_filter = [
        "status",
        "error_reason",
        "event_tag",
        "pixel",
        ("created_at", admin.DateFieldListFilter),
        ("conversion_time", admin.DateFieldListFilter),
    ]
    search_fields = ["conversion_id"]
    # No date_hierarchy: its year/month links need a DISTINCT over every row; the
    # created_at filter above covers the same need through the index.
    list_select_related = ["event_tag", "pixel"]
    # COUNT(*) over a large outbox on every page is costly: no full count, and the
    # filtered one is PostgreSQL's estimate when that is large.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ["send_now_action", "retry_action", "mark_skipped_action", "route_held_action"]

    def get_readonly_fields(self, request: HttpRequest, obj: Conversion | None = None) -> Any:
        names = [f.name for f in self.opts.concrete_fields if f.name != "claim_token"]
        return names

    def get_fields(self, request: HttpRequest, obj: Conversion | None = None) -> Any:
        return self.get_readonly_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversions come from track() and SOURCES, never typed in

    def has_change_permission(self, request: HttpRequest, obj: Conversion | None = None) -> bool:
        # Rows are read-only; "change" only gates the list actions.
        return obj is None and super().has_change_permission(request)

    # -- actions -----------------------------------------------------------------------

    @admin.action(description=gettext_lazy("Send now"), permissions=["send_conversions"])
    def send_now_action(self, request: HttpRequest, queryset: QuerySet[Conversion]) -> None:
        report_summary(request, actions.send_now(queryset))

    @admin.action(
        description=gettext_lazy("Retry (failed or skipped)"), permissions=["send_conversions"]
    )
    def retry_action(self, request: HttpRequest, queryset: QuerySet[Conversion]) -> None:
        result = actions.requeue(queryset)
        messages.success(request, _("%(n)d conversion(s) queued again.") % {"n": result.queued})
        if result.unroutable:
            messages.warning(
                request,
                _("%(n)d conversion(s) without an event tag and pixel left as they are.")
                % {"n": result.unroutable},
            )

    @admin.action(description=gettext_lazy("Mark skipped"), permissions=["change"])
    def mark_skipped_action(self, request: HttpRequest, queryset: QuerySet[Conversion]) -> None:
        count = actions.mark_skipped(queryset)
        messages.success(request, _("%(n)d conversion(s) marked skipped.") % {"n": count})

    @admin.action(description=gettext_lazy("Route held conversions"), permissions=["change"])
    def route_held_action(self, request: HttpRequest, queryset: QuerySet[Conversion]) -> None:
        """Route the chosen held rows whose key now has a tag with a pixel (saving a tag
        does it too; this is for fixes made where no signal is sent)."""
        keys = queryset.filter(status=Conversion.Status.HELD).values_list("event_key", flat=True)
        result = routing.route_held(set(keys))
        messages.success(
            request,
            _("%(n)d held conversion(s) routed; %(d)d repeat(s) of stored ones removed.")
            % {"n": result.routed, "d": result.duplicates},
        )
        for key, count in sorted(result.still_held.items()):
            reason = (
                Conversion.objects.filter(status=Conversion.Status.HELD, event_key=key)
                .values_list("last_error", flat=True)
                .first()
            )
            messages.warning(
                request,
                _("%(n)d still held for %(key)s: %(reason)s")
                % {"n": count, "key": key, "reason": reason or ""},
            )

    # -- health panel ------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"xconv_health": panel_context(), **(extra_context or {})}
        return super().changelist_view(request, context)
