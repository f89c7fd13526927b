"""Conversion admin: a read-only outbox with send, retry, skip and route actions and a
health panel."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from django_xconversions import actions, health, routing
from django_xconversions.admin import display, perms
from django_xconversions.admin.health_panel import panel_context
from django_xconversions.admin.object_page import ObjectPageContext
from django_xconversions.delivery import SendSummary
from django_xconversions.models import Conversion, DeliveryAttempt

# Delivery attempts shown on a conversion's page.
ATTEMPTS_SHOWN = 10
# An attempt is logged in the transaction that writes the outcome, a moment after it.
ATTEMPT_LOG_LAG = dt.timedelta(seconds=5)


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
            % {"id": account_id, "until": display.plain_time(until)},
        )


def _time(name: str, description: Any) -> Any:
    """A read-only column or field showing the ``name`` time to the second."""

    @admin.display(description=description, ordering=name)
    def show(model_admin: Any, obj: Conversion) -> SafeString | str:
        return display.timestamp(getattr(obj, name))

    return show


def _field(name: str, description: Any) -> Any:
    """A read-only field showing ``name`` under a label of ours (the model's verbose
    names read "Ip address", "Conversion id")."""

    @admin.display(description=description)
    def show(model_admin: Any, obj: Conversion) -> Any:
        return getattr(obj, name) or "-"

    return show


def attempts_of(conversion: Conversion, limit: int = ATTEMPTS_SHOWN) -> list[DeliveryAttempt]:
    """The requests to X for the conversion's pixel from when it was recorded until its
    outcome (now, while it waits), latest first: the ones that may have carried it. The
    request that sent it carries its debug ID. (Attempts are logged per request, not per
    conversion.)"""
    if conversion.pixel_id is None:
        return []
    until = conversion.sent_at or conversion.failed_at or timezone.now()
    return list(
        DeliveryAttempt.objects.filter(
            pixel_id=conversion.pixel_id,
            created_at__gte=conversion.created_at,
            created_at__lte=until + ATTEMPT_LOG_LAG,
        ).order_by("-created_at")[:limit]
    )


def attempt_row(attempt: DeliveryAttempt, conversion: Conversion) -> dict[str, Any]:
    """One line of the conversion page's attempts table."""
    return {
        "time": display.timestamp(attempt.created_at),
        "outcome": attempt.get_outcome_display(),
        "http_status": attempt.http_status or "-",
        "events": attempt.event_count,
        "duration_ms": attempt.duration_ms,
        "debug_id": display.copyable(attempt.debug_id, label=_("Copy the debug ID")),
        "error": display.clipped(
            " ".join(p for p in (attempt.error_code, attempt.error_body) if p),
            limit=display.SUMMARY_CHARS,
        ),
        # The request that sent the conversion: X's debug ID of that request is stored on it.
        "carried": bool(conversion.debug_id) and attempt.debug_id == conversion.debug_id,
    }


@admin.register(Conversion)
class ConversionAdmin(perms.DedicatedPermissions, ObjectPageContext, admin.ModelAdmin[Conversion]):
    # Seven columns that fit beside the filter at 1366 px; the rest is in the detail.
    list_display = [
        "conversion_id_display",
        "event",
        "status_badge",
        "conversion_time_display",
        "attempts_display",
        "error_display",
        "debug_id_display",
    ]
    list_display_links = ["conversion_id_display"]
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
    list_select_related = ["event_tag"]
    # COUNT(*) over a large outbox on every page is costly: no full count, and the
    # filtered one is PostgreSQL's estimate when that is large.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ["send_now_action", "retry_action", "mark_skipped_action", "route_held_action"]
    fieldsets = [
        (
            gettext_lazy("Event"),
            {
                "fields": [
                    "conversion_id_field",
                    "event_tag",
                    "event_key",
                    "pixel",
                    "conversion_time_display",
                    "source_type",
                    "source_id_field",
                ]
            },
        ),
        (
            gettext_lazy("Identifiers (hashed)"),
            {
                "fields": [
                    "twclid_field",
                    "hashed_email",
                    "hashed_phone",
                    "ip_address_field",
                    "user_agent",
                ]
            },
        ),
        (
            gettext_lazy("Values and contents"),
            {"fields": ["value", "currency", "number_items", "description", "contents_display"]},
        ),
        (
            gettext_lazy("Delivery and errors"),
            {
                "fields": [
                    "status_badge",
                    "attempts_display",
                    "next_attempt_at_display",
                    "error_reason",
                    "last_error",
                    "debug_id_field",
                    "sent_at_display",
                    "failed_at_display",
                    "lease_expires_at_display",
                    "created_at_display",
                    "updated_at_display",
                ]
            },
        ),
    ]

    class Media:
        css = display.MEDIA_CSS
        js = display.MEDIA_JS

    # -- columns and fields ------------------------------------------------------------

    @admin.display(description=gettext_lazy("Conversion ID"), ordering="conversion_id")
    def conversion_id_display(self, obj: Conversion) -> SafeString | str:
        return display.clipped(obj.conversion_id)

    @admin.display(description=gettext_lazy("Event"), ordering="event_key")
    def event(self, obj: Conversion) -> SafeString | str:
        # Held rows may have no tag yet: their key says where they are bound.
        name = obj.event_tag.name if obj.event_tag is not None else obj.event_key
        return display.clipped(name)

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_badge(self, obj: Conversion) -> SafeString:
        return display.status_badge(obj.status, obj.get_status_display())

    @admin.display(description=gettext_lazy("Attempts"), ordering="attempts")
    def attempts_display(self, obj: Conversion) -> int:
        return display.attempts_made(obj.status, obj.error_reason, obj.attempts)

    @admin.display(description=gettext_lazy("Error"), ordering="error_reason")
    def error_display(self, obj: Conversion) -> SafeString | str:
        reason = obj.get_error_reason_display() if obj.error_reason else ""
        return display.error_summary(reason, obj.last_error)

    @admin.display(description=gettext_lazy("Debug ID"))
    def debug_id_display(self, obj: Conversion) -> SafeString | str:
        return display.copyable(obj.debug_id, label=_("Copy the debug ID"))

    @admin.display(description=gettext_lazy("Debug ID"))
    def debug_id_field(self, obj: Conversion) -> SafeString | str:
        return display.copyable(obj.debug_id, label=_("Copy the debug ID"), clip=False)

    @admin.display(description=gettext_lazy("Contents"))
    def contents_display(self, obj: Conversion) -> SafeString | str:
        if not obj.contents:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.contents, indent=2))

    conversion_id_field = _field("conversion_id", gettext_lazy("Conversion ID"))
    source_id_field = _field("source_id", gettext_lazy("Source ID"))
    twclid_field = _field("twclid", gettext_lazy("Click ID (twclid)"))
    ip_address_field = _field("ip_address", gettext_lazy("IP address"))
    conversion_time_display = _time("conversion_time", gettext_lazy("Conversion time"))
    next_attempt_at_display = _time("next_attempt_at", gettext_lazy("Next attempt at"))
    sent_at_display = _time("sent_at", gettext_lazy("Sent at"))
    failed_at_display = _time("failed_at", gettext_lazy("Failed at"))
    lease_expires_at_display = _time("lease_expires_at", gettext_lazy("Lease expires at"))
    created_at_display = _time("created_at", gettext_lazy("Recorded at"))
    updated_at_display = _time("updated_at", gettext_lazy("Updated at"))

    def get_readonly_fields(self, request: HttpRequest, obj: Conversion | None = None) -> Any:
        return [name for _title, options in self.fieldsets for name in options["fields"]]

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
        messages.success(
            request,
            ngettext(
                "%(n)d conversion queued again.", "%(n)d conversions queued again.", result.queued
            )
            % {"n": result.queued},
        )
        if result.unroutable:
            messages.warning(
                request,
                ngettext(
                    "%(n)d conversion without an event tag and pixel left as it is.",
                    "%(n)d conversions without an event tag and pixel left as they are.",
                    result.unroutable,
                )
                % {"n": result.unroutable},
            )

    @admin.action(description=gettext_lazy("Mark skipped"), permissions=["change"])
    def mark_skipped_action(self, request: HttpRequest, queryset: QuerySet[Conversion]) -> None:
        count = actions.mark_skipped(queryset)
        messages.success(
            request,
            ngettext("%(n)d conversion marked skipped.", "%(n)d conversions marked skipped.", count)
            % {"n": count},
        )

    @admin.action(description=gettext_lazy("Route held conversions"), permissions=["change"])
    def route_held_action(self, request: HttpRequest, queryset: QuerySet[Conversion]) -> None:
        """Route the chosen held rows whose key now has a tag with a pixel (saving a tag
        does it too; this is for fixes made where no signal is sent)."""
        keys = queryset.filter(status=Conversion.Status.HELD).values_list("event_key", flat=True)
        result = routing.route_held(set(keys))
        routed = ngettext(
            "%(n)d held conversion routed", "%(n)d held conversions routed", result.routed
        ) % {"n": result.routed}
        removed = ngettext(
            "%(d)d repeat of a stored one removed.",
            "%(d)d repeats of stored ones removed.",
            result.duplicates,
        ) % {"d": result.duplicates}
        messages.success(request, f"{routed}; {removed}")
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

    def object_page_context(self, request: HttpRequest, obj: Conversion) -> dict[str, Any]:
        return {
            "xconv_attempts": [attempt_row(attempt, obj) for attempt in attempts_of(obj)],
            "xconv_attempts_shown": ATTEMPTS_SHOWN,
        }

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"xconv_health": panel_context(), **(extra_context or {})}
        return super().changelist_view(request, context)
