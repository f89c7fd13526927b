"""Per-day tallies at scale: one row per local day (SentTally for health's chart,
ReadinessTally for match readiness), counted forward from the day's start in small
steps, so a read counts only the rows added since the last one.

The rows and the rule of when one moves live here; what a tally counts, and how, is its
reader's (health.py, readiness.py).
"""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from django_xconversions.models import ReadinessTally, SentTally

__all__ = ["day_end", "day_start", "of_days", "until"]

Tally = TypeVar("Tally", SentTally, ReadinessTally)


def day_start(day: dt.date) -> dt.datetime:
    """Midnight of ``day`` in the current time zone."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def day_end(day: dt.date) -> dt.datetime:
    """Midnight after ``day`` (the start of the next) in the current time zone."""
    return day_start(day + dt.timedelta(days=1))


def of_days(model: type[Tally], days: list[dt.date]) -> dict[dt.date, Tally]:
    """The tally of each of ``days`` (oldest first) in the current time zone; those
    missing are created, counted up to the day's start, and those of earlier days go."""
    zone = timezone.get_current_timezone_name()
    tallies = {t.day: t for t in model.objects.filter(time_zone=zone, day__in=days)}
    missing = [day for day in days if day not in tallies]
    if missing:
        model.objects.filter(time_zone=zone, day__lt=days[0]).delete()
        try:
            with transaction.atomic():
                model.objects.bulk_create(
                    [model(day=d, time_zone=zone, counted_until=day_start(d)) for d in missing]
                )
        except IntegrityError:  # another reader created them first
            pass
        tallies = {t.day: t for t in model.objects.filter(time_zone=zone, day__in=days)}
    return tallies


def until(tally: Tally, settled: dt.datetime, step: dt.timedelta) -> dt.datetime | None:
    """How far ``tally`` moves now: to ``settled`` or its day's end, whichever is first;
    None when it is there already, or less than ``step`` would be counted on a day still
    open (one small write per step)."""
    end = day_end(tally.day)
    upto = min(end, settled)
    gap = upto - tally.counted_until
    if gap <= dt.timedelta(0) or (gap < step and upto < end):
        return None
    return upto
