"""The delivery health panel above the Conversion change list, with an inline SVG chart.

The chart is drawn on the server (plain SVG rectangles, no JavaScript), so it works under
a strict Content-Security-Policy and in any browser.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from django_xconversions.health import DayOutcome, health
from django_xconversions.models import Conversion

CHART_WIDTH = 560
CHART_HEIGHT = 140
LABEL_SPACE = 18  # below the bars, for day labels
BAR_GAP = 4


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
    title: str


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


def chart_bars(days: list[DayOutcome]) -> tuple[list[Bar], int]:
    """Stacked bars (sent below, failed above) scaled to the busiest day."""
    peak = max([d.sent + d.failed for d in days] or [0]) or 1
    slot = CHART_WIDTH / max(len(days), 1)
    plot = CHART_HEIGHT - LABEL_SPACE
    bars = []
    for index, day in enumerate(days):
        sent_h = plot * day.sent / peak
        failed_h = plot * day.failed / peak
        bars.append(
            Bar(
                x=round(index * slot + BAR_GAP / 2, 1),
                width=round(slot - BAR_GAP, 1),
                sent_y=round(plot - sent_h, 1),
                sent_height=round(sent_h, 1),
                failed_y=round(plot - sent_h - failed_h, 1),
                failed_height=round(failed_h, 1),
                label=day.day.strftime("%d"),
                label_x=round(index * slot + slot / 2, 1),
                title=_("%(day)s: %(sent)d sent, %(failed)d failed")
                % {"day": day.day.isoformat(), "sent": day.sent, "failed": day.failed},
            )
        )
    return bars, peak


def panel_context(now: dt.datetime | None = None) -> dict[str, Any]:
    """What templates/xconversions/health_panel.html renders."""
    state = health(now)
    bars, peak = chart_bars(state.daily)
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
        "chart": {
            "bars": bars,
            "peak": peak,
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
            "label_y": CHART_HEIGHT - 4,
            "first_day": state.daily[0].day if state.daily else None,
            "last_day": state.daily[-1].day if state.daily else None,
            "sent_total": sum(d.sent for d in state.daily),
            "failed_total": sum(d.failed for d in state.daily),
        },
    }
