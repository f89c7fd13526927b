"""What needs a person: rows stuck past their lease, no sender while conversions wait,
paused accounts holding pending conversions. Shared by ``send_conversions --check``, the
admin's health panel and the REST API's health."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from django_xconversions import heartbeat
from django_xconversions.models import AdAccount, Conversion, WorkerHeartbeat
from django_xconversions.wording import plural

# A row this long past its lease is stuck: a live worker would have taken it back.
STUCK_GRACE = dt.timedelta(minutes=1)
# Conversions due this long with no worker seen in that time: nobody is sending.
SILENT_AFTER = dt.timedelta(minutes=5)
REASON_CHARS = 120
# Counts stop here ("at least N"): counting a backlog of millions would take seconds.
COUNT_BOUND = 10_000


def bounded_count(queryset: QuerySet[Any]) -> int:
    """How many rows ``queryset`` has, reading at most COUNT_BOUND of them."""
    return queryset.order_by().values("pk")[:COUNT_BOUND].count()


def at_least(count: int) -> str:
    """A bounded count as text: "10000 or more" once it reached COUNT_BOUND."""
    return f"{count} or more" if count >= COUNT_BOUND else str(count)


def counted(count: int, noun: str) -> str:
    """A bounded count with its noun: "1 conversion", "10000 or more conversions"."""
    return plural(count, noun, shown=at_least(count))


@dataclass(frozen=True)
class Problem:
    code: str  # "stuck", "no_worker" or "paused_with_pending"
    message: str


@dataclass(frozen=True)
class WorkerState:
    worker_id: str
    host: str
    pid: int
    started_at: dt.datetime
    last_beat_at: dt.datetime
    current_pixel: str
    stopped_at: dt.datetime | None
    live: bool


@dataclass(frozen=True)
class Report:
    problems: list[Problem] = field(default_factory=list)
    live_workers: int = 0
    due: int = 0  # at most COUNT_BOUND

    @property
    def healthy(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line for a monitor: OK or PROBLEM, then what it saw."""
        if self.healthy:
            return (
                f"OK: {plural(self.live_workers, 'live worker')}, "
                f"{counted(self.due, 'conversion')} due, none stuck, "
                "no paused account holding conversions"
            )
        return "PROBLEM: " + "; ".join(p.message for p in self.problems)


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)


def stuck(now: dt.datetime) -> Problem | None:
    rows = Conversion.objects.filter(
        status=Conversion.Status.SENDING, lease_expires_at__lt=now - STUCK_GRACE
    ).aggregate(n=Count("pk"), oldest=Min("lease_expires_at"))
    if not rows["n"]:
        return None
    late = _minutes(now - rows["oldest"])
    return Problem(
        "stuck",
        f"{plural(rows['n'], 'conversion')} sending past their lease (the oldest by {late} min): "
        "their worker died and no live worker has taken them back",
    )


def _due(now: dt.datetime) -> Q:
    """Due conversions of accounts that may send now (not paused, not waiting on X)."""
    return Q(
        status=Conversion.Status.PENDING,
        next_attempt_at__lte=now,
        pixel__account__status=AdAccount.Status.ACTIVE,
    ) & (
        Q(pixel__account__rate_limited_until__isnull=True)
        | Q(pixel__account__rate_limited_until__lte=now)
    )


def no_worker(now: dt.datetime, due: int) -> Problem | None:
    overdue = Conversion.objects.filter(_due(now), next_attempt_at__lte=now - SILENT_AFTER)
    if not due or not overdue.exists():
        return None
    if WorkerHeartbeat.objects.filter(last_beat_at__gte=now - SILENT_AFTER).exists():
        return None
    last = WorkerHeartbeat.objects.aggregate(last=Max("last_beat_at"))["last"]
    seen = f"for {_minutes(now - last)} minutes" if last else "yet"
    return Problem(
        "no_worker",
        f"no worker seen {seen} while {counted(due, 'conversion')} "
        f"{'is' if due == 1 else 'are'} due",
    )


def paused_with_pending() -> list[Problem]:
    def pending_of(account: Any) -> QuerySet[Conversion]:
        return Conversion.objects.filter(status=Conversion.Status.PENDING, pixel__account=account)

    holding = (
        AdAccount.objects.filter(status=AdAccount.Status.PAUSED)
        .filter(Exists(pending_of(OuterRef("pk"))))
        .order_by("account_id")
    )
    problems = []
    for account in holding:
        # Through the (pixel, ...) index of pending rows, and bounded: one query per
        # problem shown.
        pending = bounded_count(pending_of(account))
        reason = " ".join((account.paused_reason or "no reason recorded").split())
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 1] + "\u2026"
        problems.append(
            Problem(
                "paused_with_pending",
                f"account {account.account_id} is paused holding "
                f"{counted(pending, 'pending conversion')} ({reason})",
            )
        )
    return problems


def workers(now: dt.datetime | None = None, limit: int = 20) -> list[WorkerState]:
    """The most recently seen workers, live or gone."""
    now = now or timezone.now()
    rows = WorkerHeartbeat.objects.order_by("-last_beat_at")[:limit]
    return [
        WorkerState(
            row.worker_id,
            row.host,
            row.pid,
            row.started_at,
            row.last_beat_at,
            row.current_pixel,
            row.stopped_at,
            heartbeat.is_live(row, now),
        )
        for row in rows
    ]


def check(now: dt.datetime | None = None) -> Report:
    now = now or timezone.now()
    due = bounded_count(Conversion.objects.filter(_due(now)))
    problems = [p for p in (stuck(now), no_worker(now, due)) if p is not None]
    problems += paused_with_pending()
    return Report(problems, heartbeat.live_workers(now).count(), due)
