"""Delivery health at a glance: one function shared by the admin panel and the REST API."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Count, Max, Min
from django.db.models.functions import TruncDate
from django.utils import timezone

from django_xconversions import alerts
from django_xconversions.models import AdAccount, Conversion, DeliveryAttempt

CHART_DAYS = 14


@dataclass(frozen=True)
class PausedAccount:
    account_id: str
    name: str
    reason: str
    paused_at: dt.datetime | None


@dataclass(frozen=True)
class DayOutcome:
    day: dt.date
    sent: int
    failed: int


@dataclass(frozen=True)
class HeldReason:
    """Held conversions of one reason: how many, for which event keys, and the fix."""

    reason: str
    label: str
    count: int
    keys: list[str]
    fix: str


@dataclass(frozen=True)
class Health:
    by_status: dict[str, int]
    oldest_pending_seconds: float | None
    last_sent_at: dt.datetime | None
    failed_last_hour: int
    failed_requests_last_hour: int
    paused_accounts: list[PausedAccount] = field(default_factory=list)
    daily: list[DayOutcome] = field(default_factory=list)
    # Senders seen lately (live or gone) and what needs a person (see alerts.py).
    workers: list[alerts.WorkerState] = field(default_factory=list)
    problems: list[alerts.Problem] = field(default_factory=list)
    # Conversions no tag can take yet, per reason (see routing.py).
    held: list[HeldReason] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes and dates as ISO 8601 text."""
        jsonable: dict[str, Any] = _jsonable(asdict(self))
        return jsonable


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _per_day(rows: Any, column: str, since: dt.datetime) -> dict[dt.date, int]:
    counted = (
        rows.filter(**{f"{column}__gte": since})
        .annotate(day=TruncDate(column))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["day"]: row["n"] for row in counted}


def daily_outcomes(days: int = CHART_DAYS, now: dt.datetime | None = None) -> list[DayOutcome]:
    """Conversions sent and failed per day (in the current time zone), oldest day first."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today - dt.timedelta(days=days - 1)
    since = timezone.make_aware(dt.datetime.combine(first, dt.time.min))
    sent = _per_day(Conversion.objects.filter(status=Conversion.Status.SENT), "sent_at", since)
    failed = _per_day(
        Conversion.objects.filter(status=Conversion.Status.FAILED), "failed_at", since
    )
    return [
        DayOutcome(day, sent.get(day, 0), failed.get(day, 0))
        for day in (first + dt.timedelta(days=n) for n in range(days))
    ]


def held_summary() -> list[HeldReason]:
    """Held conversions per reason with their keys and the fix (reasons with none left
    out); the health panel, /x/health/ and send_conversions show it."""
    from django_xconversions import routing

    per_reason: dict[str, dict[str, int]] = {}
    rows = (
        Conversion.objects.filter(status=Conversion.Status.HELD)
        .values("error_reason", "event_key")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        per_reason.setdefault(row["error_reason"], {})[row["event_key"]] = row["n"]
    return [
        HeldReason(
            reason=reason,
            label=str(Conversion.ErrorReason(reason).label),
            count=sum(per_reason[reason].values()),
            keys=sorted(per_reason[reason]),
            fix=routing.fix_for(reason),
        )
        for reason in routing.HELD_REASONS
        if reason in per_reason
    ]


def health(now: dt.datetime | None = None) -> Health:
    """Backlog by status, age of the oldest pending row, last send, recent failures,
    paused accounts and the daily chart data."""
    now = now or timezone.now()
    counts = {status: 0 for status in Conversion.Status.values}
    for row in Conversion.objects.values("status").annotate(n=Count("pk")).order_by():
        counts[row["status"]] = row["n"]
    oldest = Conversion.objects.filter(status=Conversion.Status.PENDING).aggregate(
        oldest=Min("created_at")
    )["oldest"]
    last_sent = Conversion.objects.filter(status=Conversion.Status.SENT).aggregate(
        last=Max("sent_at")
    )["last"]
    hour_ago = now - dt.timedelta(hours=1)
    paused = AdAccount.objects.filter(status=AdAccount.Status.PAUSED).order_by("name")
    return Health(
        by_status=counts,
        oldest_pending_seconds=(now - oldest).total_seconds() if oldest else None,
        last_sent_at=last_sent,
        failed_last_hour=Conversion.objects.filter(
            status=Conversion.Status.FAILED, failed_at__gte=hour_ago
        ).count(),
        failed_requests_last_hour=DeliveryAttempt.objects.filter(created_at__gte=hour_ago)
        .exclude(outcome="sent")
        .count(),
        paused_accounts=[
            PausedAccount(a.account_id, a.name, a.paused_reason, a.paused_at) for a in paused
        ],
        daily=daily_outcomes(now=now),
        workers=alerts.workers(now),
        problems=alerts.check(now).problems,
        held=held_summary(),
    )
