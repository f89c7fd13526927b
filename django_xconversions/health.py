"""Delivery health at a glance: one function shared by the admin panel and the REST API.

It stays cheap on an outbox of tens of millions of rows. Small tables (and SQLite) are
counted exactly. On a large PostgreSQL table nothing reads the whole table: the small
states (pending, sending, held, failed, skipped) are counted through their indexes up to
alerts.COUNT_BOUND rows and estimated beyond; sent is the table's estimated size less the
others; the chart's sent bars come from a per-day tally (SentTally) kept as it is read.
Tallied days assume rows are not deleted within the chart's 14 days (RETENTION_DAYS is 90
by default) and that an outcome commits within SETTLE of its sent_at.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router
from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from django_xconversions import alerts, day_tallies, readiness
from django_xconversions.day_tallies import day_end, day_start
from django_xconversions.models import AdAccount, Conversion, DeliveryAttempt, SentTally

CHART_DAYS = 14
# Tables the planner estimates below this many rows are counted exactly.
EXACT_BELOW = 100_000
# A list estimated large is first counted up to this many rows (a page or two of index).
SURE_BELOW = 1_000
# Sent rows are tallied once sent_at is this old: the worker that wrote them has long
# committed (an outcome is written seconds after its sent_at).
SETTLE = dt.timedelta(minutes=15)
# The tally moves forward in steps of at least this much (one small write per step).
TALLY_STEP = dt.timedelta(minutes=5)


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
    # Statuses whose count in by_status is an estimate (large tables on PostgreSQL).
    estimated: list[str] = field(default_factory=list)
    # Identifiers carried per event key over 7 and 30 days, with warnings (readiness.py).
    match_readiness: readiness.MatchReadiness | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: dates and datetimes as ISO 8601 text."""
        jsonable: dict[str, Any] = json.loads(json.dumps(asdict(self), cls=HealthEncoder))
        return jsonable


class HealthEncoder(DjangoJSONEncoder):
    """Django's encoder, with datetimes in full: /x/health/ has always given them as
    Python writes them (microseconds, +00:00) where Django cuts to milliseconds and Z."""

    def default(self, o: Any) -> Any:
        if isinstance(o, dt.datetime):
            return o.isoformat()
        return super().default(o)


def _vendor(model: type[Any]) -> str:
    return connections[router.db_for_read(model)].vendor


def planner_rows(queryset: QuerySet[Any]) -> int:
    """PostgreSQL's estimate of the rows ``queryset`` returns (EXPLAIN: nothing is read)."""
    plan = json.loads(queryset.order_by().values("pk").explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def table_estimate(model: type[Any]) -> int | None:
    """The planner's estimate of the table's rows on PostgreSQL; None elsewhere."""
    if _vendor(model) != "postgresql":
        return None
    return planner_rows(model._default_manager.all())


def is_large(model: type[Any]) -> bool:
    """True on PostgreSQL when the planner puts the table at EXACT_BELOW rows or more."""
    return (table_estimate(model) or 0) >= EXACT_BELOW


def estimated_count(queryset: QuerySet[Any]) -> int:
    """The exact count, unless PostgreSQL estimates EXACT_BELOW rows or more and there
    are indeed more than SURE_BELOW: then that estimate (a COUNT(*) of millions of rows
    takes seconds). A search or filter that matches a few rows is counted exactly however
    wrong the planner's guess."""
    if _vendor(queryset.model) == "postgresql":
        estimate = planner_rows(queryset)
        if estimate >= EXACT_BELOW:
            seen = queryset.order_by().values("pk")[:SURE_BELOW].count()
            return seen if seen < SURE_BELOW else max(estimate, SURE_BELOW)
    return queryset.count()


def status_counts(total: int | None) -> tuple[dict[str, int], list[str]]:
    """Conversions per status, and the statuses whose count is an estimate; ``total`` is
    the table's estimated size (None: not PostgreSQL)."""
    counts = {status: 0 for status in Conversion.Status.values}
    if total is None or total < EXACT_BELOW:
        for row in Conversion.objects.values("status").annotate(n=Count("pk")).order_by():
            counts[row["status"]] = row["n"]
        return counts, []
    estimated = []
    for status in counts:
        if status == Conversion.Status.SENT:
            continue
        rows = Conversion.objects.filter(status=status)
        counts[status] = alerts.bounded_count(rows)
        if counts[status] >= alerts.COUNT_BOUND:  # past the bound: the planner's estimate
            counts[status] = max(alerts.COUNT_BOUND, planner_rows(rows))
            estimated.append(status)
    counts[Conversion.Status.SENT] = max(0, total - sum(counts.values()))
    return counts, [*estimated, Conversion.Status.SENT.value]


def _per_day(rows: Any, column: str, since: dt.datetime) -> dict[dt.date, int]:
    counted = (
        rows.filter(**{f"{column}__gte": since})
        .annotate(day=TruncDate(column))
        .values("day")
        .annotate(n=Count("*"))  # not Count("pk"): the index alone answers COUNT(*)
        .order_by()
    )
    return {row["day"]: row["n"] for row in counted}


def _sent(since: dt.datetime, until: dt.datetime) -> int:
    return Conversion.objects.filter(
        status=Conversion.Status.SENT, sent_at__gte=since, sent_at__lt=until
    ).count()


def _tallies(days: list[dt.date], now: dt.datetime) -> dict[dt.date, SentTally]:
    """The tally of each day, moved forward to ``now - SETTLE`` (in TALLY_STEP steps)."""
    tallies = day_tallies.of_days(SentTally, days)
    settled = now - SETTLE
    for tally in tallies.values():
        upto = day_tallies.until(tally, settled, TALLY_STEP)
        if upto is None:
            continue
        added = _sent(tally.counted_until, upto)
        moved = SentTally.objects.filter(pk=tally.pk, counted_until=tally.counted_until).update(
            sent=F("sent") + added, counted_until=upto
        )
        if moved:  # else another reader moved it meanwhile; read it back
            tally.sent, tally.counted_until = tally.sent + added, upto
        else:
            tally.refresh_from_db()
    return tallies


def _sent_per_day(days: list[dt.date], now: dt.datetime) -> dict[dt.date, int]:
    """Sent per day from the tallies plus the rows sent since each was counted."""
    tallies = _tallies(days, now)
    open_days = {day: tally for day, tally in tallies.items() if tally.counted_until < day_end(day)}
    recent: dict[str, int] = {}
    if open_days:
        since = min(t.counted_until for t in open_days.values())
        recent = Conversion.objects.filter(
            status=Conversion.Status.SENT, sent_at__gte=since
        ).aggregate(
            **{
                day.isoformat(): Count(
                    "sent_at",  # in the index, unlike the pk
                    filter=Q(
                        sent_at__gte=tally.counted_until,
                        sent_at__lt=day_end(day),
                    ),
                )
                for day, tally in open_days.items()
            }
        )
    return {
        day: tallies[day].sent + int(recent.get(day.isoformat()) or 0) if day in tallies else 0
        for day in days
    }


def daily_outcomes(
    days: int = CHART_DAYS, now: dt.datetime | None = None, *, large: bool | None = None
) -> list[DayOutcome]:
    """Conversions sent and failed per day (in the current time zone), oldest day first."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today - dt.timedelta(days=days - 1)
    chart_days = [first + dt.timedelta(days=n) for n in range(days)]
    since = day_start(first)
    if large if large is not None else is_large(Conversion):
        sent = _sent_per_day(chart_days, now)
    else:
        sent = _per_day(Conversion.objects.filter(status=Conversion.Status.SENT), "sent_at", since)
    # Failed rows are few, and a retry takes them back: counted each time.
    failed = _per_day(
        Conversion.objects.filter(status=Conversion.Status.FAILED), "failed_at", since
    )
    return [DayOutcome(day, sent.get(day, 0), failed.get(day, 0)) for day in chart_days]


def held_summary() -> list[HeldReason]:
    """Held conversions per reason with their keys and the fix (reasons with none left
    out); the health panel, /x/health/ and send_conversions show it."""
    from django_xconversions import routing

    per_reason: dict[str, dict[str, int]] = {}
    rows = (
        Conversion.objects.filter(status=Conversion.Status.HELD)
        .values("error_reason", "event_key")
        .annotate(n=Count("*"))
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
    total = table_estimate(Conversion)
    large = (total or 0) >= EXACT_BELOW
    counts, estimated = status_counts(total)
    # Through the (status, created_at) and partial sent_at indexes: one entry read each.
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
        daily=daily_outcomes(now=now, large=large),
        workers=alerts.workers(now),
        problems=alerts.check(now).problems,
        held=held_summary(),
        estimated=estimated,
        match_readiness=readiness.match_readiness(now, large=large),
    )
