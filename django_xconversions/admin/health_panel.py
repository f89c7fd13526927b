"""The delivery health panel above the Conversion change list, with an inline SVG chart and
the warnings that need a person (each with its fix); and the Match readiness page.

The chart is drawn on the server (plain SVG, no JavaScript), so it works under a strict
Content-Security-Policy and in any browser. Sent conversions have a y-axis with
gridlines; failed ones get a strip of their own below, on their own scale, so 5 failed
stay visible beside 3,000 sent.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from django_xconversions import health as health_module
from django_xconversions import readiness
from django_xconversions.health import DayOutcome, Health, HeldReason, health
from django_xconversions.models import Conversion, ReadinessTally
from django_xconversions.wording import plural

if TYPE_CHECKING:
    _ReadinessModelAdmin = admin.ModelAdmin[ReadinessTally]
else:
    _ReadinessModelAdmin = admin.ModelAdmin

CHART_WIDTH = 560
AXIS_SPACE = 52  # left of the bars, for the y-axis labels
TOP_SPACE = 8  # above the sent plot, so the top label is not cut
SENT_HEIGHT = 120
STRIP_GAP = 10
FAILED_HEIGHT = 30
LABEL_SPACE = 16  # below the bars, for day labels
CHART_HEIGHT = TOP_SPACE + SENT_HEIGHT + STRIP_GAP + FAILED_HEIGHT + LABEL_SPACE
BAR_GAP = 4
# A day with any conversion shows at least this tall, whatever the busiest day.
MIN_BAR = 2.0
TICKS = 4

WORKER_COMMAND = "python manage.py send_conversions --loop"


def resume_fix() -> str:
    return _(
        "Fix the account's access (Connect with X, or Check access on X), then select it "
        'in Ad accounts and run the action "Resume sending".'
    )


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    sent_y: float
    sent_height: float
    failed_y: float
    failed_height: float
    label: str
    label_x: float
    slot_x: float
    slot_width: float
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class PanelWarning:
    """Something that needs a person, and how to fix it: a link, a command, or both."""

    code: str
    message: str
    fix: str
    link: str = ""
    link_text: str = ""
    command: str = ""
    # From alerts.check() (send_conversions --check reports the same).
    problem: bool = False
    # Held conversions of one reason: the template shows their count and keys.
    held: HeldReason | None = None


def duration(seconds: float | None) -> str:
    """A short, human reading of an age: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def nice_step(peak: int, ticks: int = TICKS) -> int:
    """A round step (1, 2, 2.5 or 5 times a power of ten, at least 1) so that ``ticks``
    steps reach ``peak``."""
    raw = max(peak, 1) / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (1, 2, 2.5, 5, 10)]
    # Whole numbers only: 2.5 is skipped below 10 (a step of 2.5 conversions means nothing).
    return max(1, int(next(s for s in steps if s >= raw and s.is_integer())))


def _height(count: int, peak: int, full: float) -> float:
    if not count:
        return 0.0
    return max(MIN_BAR, full * count / peak)


def chart_bars(days: list[DayOutcome]) -> tuple[list[Bar], int]:
    """Sent bars on the y-axis's scale; failed bars in the strip below, on their own
    scale (the busiest failed day fills it); returns the bars and the top of the axis."""
    step = nice_step(max([d.sent for d in days] or [0]))
    top = step * max(1, math.ceil(max([d.sent for d in days] or [0]) / step))
    failed_peak = max([d.failed for d in days] or [0]) or 1
    slot = (CHART_WIDTH - AXIS_SPACE) / max(len(days), 1)
    sent_base = TOP_SPACE + SENT_HEIGHT
    failed_top = sent_base + STRIP_GAP
    bars = []
    for index, day in enumerate(days):
        sent_h = _height(day.sent, top, SENT_HEIGHT)
        failed_h = _height(day.failed, failed_peak, FAILED_HEIGHT)
        slot_x = AXIS_SPACE + index * slot
        bars.append(
            Bar(
                x=round(slot_x + BAR_GAP / 2, 1),
                width=round(slot - BAR_GAP, 1),
                sent_y=round(sent_base - sent_h, 1),
                sent_height=round(sent_h, 1),
                failed_y=round(failed_top + FAILED_HEIGHT - failed_h, 1),
                failed_height=round(failed_h, 1),
                label=day.day.strftime("%d"),
                label_x=round(slot_x + slot / 2, 1),
                slot_x=round(slot_x, 1),
                slot_width=round(slot, 1),
                title=_("%(day)s: %(sent)s sent, %(failed)s failed")
                % {
                    "day": day.day.isoformat(),
                    "sent": f"{day.sent:,}",
                    "failed": f"{day.failed:,}",
                },
            )
        )
    return bars, top


def axis_ticks(top: int) -> list[Tick]:
    """Gridlines of the sent plot: 0 to ``top`` in round steps."""
    step = nice_step(top)
    values = range(0, top + 1, step)
    base = TOP_SPACE + SENT_HEIGHT
    return [Tick(y=round(base - SENT_HEIGHT * v / top, 1), label=f"{v:,}") for v in values]


def _chart(daily: list[DayOutcome]) -> dict[str, Any]:
    bars, top = chart_bars(daily)
    failed_peak = max([d.failed for d in daily] or [0])
    failed_top = TOP_SPACE + SENT_HEIGHT + STRIP_GAP
    return {
        "bars": bars,
        "peak": max([d.sent + d.failed for d in daily] or [0]),
        "top": top,
        "ticks": axis_ticks(top),
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "axis_x": AXIS_SPACE,
        "axis_label_x": AXIS_SPACE - 6,
        "plot_top": TOP_SPACE,
        "plot_height": SENT_HEIGHT + STRIP_GAP + FAILED_HEIGHT,
        "sent_base": TOP_SPACE + SENT_HEIGHT,
        "failed_top": failed_top,
        "failed_base": failed_top + FAILED_HEIGHT,
        "failed_label_y": failed_top + FAILED_HEIGHT / 2 + 4,
        "failed_peak": failed_peak,
        "label_y": CHART_HEIGHT - 4,
        "first_day": daily[0].day if daily else None,
        "last_day": daily[-1].day if daily else None,
        "sent_total": sum(d.sent for d in daily),
        "failed_total": sum(d.failed for d in daily),
    }


def _changelist(model: str, **filters: str) -> str:
    url = reverse(f"admin:xconversions_{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _workers_gone(state: Health, now: dt.datetime) -> PanelWarning | None:
    """Workers ran here, none is live now, and conversions wait: said before alerts'
    "no_worker" (due rows unsent for minutes) or "stuck" (a lease long over) fire. Nothing
    when no worker was ever seen: sends may run in the web process or a task queue."""
    waiting = state.by_status.get("pending", 0) + state.by_status.get("sending", 0)
    if not state.workers or any(w.live for w in state.workers) or not waiting:
        return None
    if any(p.code == "no_worker" for p in state.problems):
        return None
    last = state.workers[0]
    return PanelWarning(
        "workers_gone",
        _(
            "No send_conversions --loop worker is live (the last, %(host)s:%(pid)s, beat "
            "%(since)s ago) while %(waiting)s to be sent."
        )
        % {
            "host": last.host,
            "pid": last.pid,
            "since": duration((now - last.last_beat_at).total_seconds()),
            "waiting": plural(
                waiting, _("conversion waits"), _("conversions wait"), shown=f"{waiting:,}"
            ),
        },
        _("Start a worker again, or check why it stopped (its logs, the process manager)."),
        _changelist("workerheartbeat"),
        _("Workers"),
        WORKER_COMMAND,
    )


def warnings(state: Health, now: dt.datetime | None = None) -> list[PanelWarning]:
    """What needs a person, from what health() found (nothing is counted again here)."""
    found: list[PanelWarning] = []
    fixes = {
        "stuck": PanelWarning(
            "stuck",
            "",
            _(
                "A live worker takes them back and sends them once their lease has "
                "ended; start one if none runs."
            ),
            _changelist("conversion", status__exact="sending"),
            _("Conversions sending"),
            WORKER_COMMAND,
        ),
        "no_worker": PanelWarning(
            "no_worker",
            "",
            _(
                "Start a worker (under systemd, supervisor or your platform's process "
                "manager), or check why it stopped; the Workers page lists the last seen."
            ),
            _changelist("workerheartbeat"),
            _("Workers"),
            WORKER_COMMAND,
        ),
        "paused_with_pending": PanelWarning(
            "paused_with_pending",
            "",
            resume_fix(),
            _changelist("adaccount", status__exact="paused"),
            _("Paused ad accounts"),
        ),
    }
    for problem in state.problems:
        fix = fixes.get(problem.code, PanelWarning(problem.code, "", ""))
        found.append(
            PanelWarning(
                problem.code,
                problem.message,
                fix.fix,
                fix.link,
                fix.link_text,
                fix.command,
                problem=True,
            )
        )
    gone = _workers_gone(state, now or timezone.now())
    if gone is not None:
        found.append(gone)
    for held in state.held:
        found.append(
            PanelWarning(
                "held",
                held.label,
                held.fix
                + " "
                + _(
                    'They are routed by themselves once fixed; the action "Route held '
                    'conversions" does it at once.'
                ),
                _changelist("conversion", status__exact="held"),
                _("Held conversions"),
                held=held,
            )
        )
    if state.match_readiness is not None:
        for warning in state.match_readiness.warnings:
            found.append(
                PanelWarning(
                    warning.code,
                    warning.message,
                    warning.fix,
                    _changelist("readinesstally"),
                    _("Match readiness"),
                )
            )
    return found


def panel_context(now: dt.datetime | None = None) -> dict[str, Any]:
    """What templates/xconversions/health_panel.html renders."""
    state = health(now)
    return {
        "health": state,
        "status_counts": [
            (
                status,
                Conversion.Status(status).label,
                # An estimate (a large table on PostgreSQL) reads as one.
                f"\u2248 {count}" if status in state.estimated else count,
            )
            for status, count in state.by_status.items()
        ],
        "oldest_pending": duration(state.oldest_pending_seconds),
        "chart": _chart(state.daily),
        "warnings": warnings(state, now),
        "paused_fix": {
            "text": resume_fix(),
            "link": _changelist("adaccount", status__exact="paused"),
        },
        "readiness_url": _changelist("readinesstally"),
    }


# -- match readiness ----------------------------------------------------------------------


@dataclass(frozen=True)
class ShareCell:
    identifier: str
    text: str  # "34%"
    count: int
    conversions: int
    width: int  # of the little bar, in percent
    previous: str = ""  # twclid's share the 7 days before, for the last 7 days


LABELS = {
    "twclid": "twclid",
    "email": "Email",
    "phone": "Phone",
    "ip_user_agent": "IP + user agent",
}


def _cells(window: readiness.Window, previous: readiness.Window | None = None) -> list[ShareCell]:
    cells = []
    for name in readiness.IDENTIFIERS:
        share = window.shares[name]
        before = previous.shares["twclid"] if previous is not None and name == "twclid" else None
        cells.append(
            ShareCell(
                identifier=name,
                text=readiness.percent(share),
                count=getattr(window.counts, name),
                conversions=window.counts.conversions,
                width=round((share or 0) * 100),
                previous=readiness.percent(before) if before is not None else "",
            )
        )
    return cells


def readiness_rows(result: readiness.MatchReadiness) -> list[dict[str, Any]]:
    return [
        {
            "tag": tag,
            "link": reverse("admin:xconversions_eventtag_change", args=[tag.tag_id])
            if tag.tag_id is not None
            else "",
            "week": tag.last_7_days,
            "month": tag.last_30_days,
            "week_total": f"{tag.last_7_days.counts.conversions:,}",
            "month_total": f"{tag.last_30_days.counts.conversions:,}",
            "week_cells": _cells(tag.last_7_days, tag.previous_7_days),
            "month_cells": _cells(tag.last_30_days),
        }
        for tag in result.tags
    ]


@admin.register(ReadinessTally)
class MatchReadinessAdmin(_ReadinessModelAdmin):
    """Admin → Match readiness: one page, read-only, for whoever may view conversions."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("xconversions.view_conversion"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        """The page alone: the tally rows behind it are no one's to browse."""
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        result = readiness.match_readiness(large=health_module.is_large(Conversion))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Match readiness"),
            "opts": self.opts,
            "readiness": result,
            "rows": readiness_rows(result),
            "warnings": result.warnings,
            "labels": [LABELS[name] for name in readiness.IDENTIFIERS],
            "drop_percent": readiness.percent(float(readiness.DROP_RATIO)),
            "min_week": readiness.MIN_WEEK_CONVERSIONS,
            "min_device_only": readiness.MIN_DEVICE_ONLY,
            "health_url": _changelist("conversion"),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/xconversions/readiness.html", context)
