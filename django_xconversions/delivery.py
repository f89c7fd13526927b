"""The outbox engine: claim due conversions, send them in batches, record every outcome.

``send_pending`` is the one function the management command, the admin action and the
tasks call. For each pixel with due conversions it repeatedly:

1. reserves events from the account's shared budget (budget.py),
2. claims that many due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` in a short
   transaction, marking them ``sending`` with a lease and a claim token, and commits,
3. sends them outside any transaction (batch.py classifies X's answers),
4. writes the outcomes in bulk, guarded by the claim token.

A worker that dies after step 2 leaves rows ``sending``; once their lease expires any
worker returns them to ``pending``. Nothing is ever deleted or silently dropped.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.utils import timezone

from django_xconversions import budget
from django_xconversions import claimed as claimed_rows
from django_xconversions.batch import BatchSender, Transmission
from django_xconversions.claimed import ClaimedRow
from django_xconversions.client import XAdsClient
from django_xconversions.conf import xsettings
from django_xconversions.connections import client_for
from django_xconversions.models import AdAccount, Conversion, Pixel
from django_xconversions.payload import MAX_EVENTS_PER_REQUEST, conversion_to_event, validate


@dataclass(frozen=True)
class Claim:
    token: uuid.UUID
    rows: list[ClaimedRow]


@dataclass
class SendSummary:
    """What one ``send_pending`` call did; the command prints it."""

    sent: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    retrying: int = 0
    released: int = 0
    requests: int = 0
    rate_limited: dict[str, dt.datetime] = field(default_factory=dict)
    budget_exhausted: dict[str, dt.datetime] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)
    pending_left: int = 0
    payloads: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: SendSummary) -> None:
        """Add another run's counts (the command's --loop keeps a running total)."""
        self.sent += other.sent
        self.failed.update(other.failed)
        self.retrying += other.retrying
        self.released += other.released
        self.requests += other.requests
        self.rate_limited.update(other.rate_limited)
        self.budget_exhausted.update(other.budget_exhausted)
        self.paused.update(other.paused)
        self.pending_left = other.pending_left

    @property
    def processed(self) -> int:
        return self.sent + sum(self.failed.values()) + self.retrying

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": dict(self.failed),
            "retrying": self.retrying,
            "requests": self.requests,
            "rate_limited": {k: v.isoformat() for k, v in self.rate_limited.items()},
            "budget_exhausted": {k: v.isoformat() for k, v in self.budget_exhausted.items()},
            "paused": dict(self.paused),
            "pending_left": self.pending_left,
        }


def requeue(conversions: QuerySet[Conversion]) -> int:
    """Make failed or skipped conversions due again with a fresh attempt count."""
    return conversions.exclude(status=Conversion.Status.SENDING).update(
        status=Conversion.Status.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        error_reason="",
        last_error="",
        failed_at=None,
        claim_token=None,
        lease_expires_at=None,
    )


def batch_size() -> int:
    return max(1, min(int(xsettings.BATCH_SIZE), MAX_EVENTS_PER_REQUEST))


def recover_expired_leases(now: dt.datetime | None = None) -> int:
    """Return rows whose worker died (lease passed) to ``pending``."""
    return Conversion.objects.filter(
        status=Conversion.Status.SENDING, lease_expires_at__lt=now or timezone.now()
    ).update(status=Conversion.Status.PENDING, claim_token=None, lease_expires_at=None)


def _scope(account: AdAccount | None, pixel: Pixel | None) -> Q:
    scope = Q()
    if account is not None:
        scope &= Q(pixel__account=account)
    if pixel is not None:
        scope &= Q(pixel=pixel)
    return scope


def pending_count(account: AdAccount | None = None, pixel: Pixel | None = None) -> int:
    return Conversion.objects.filter(_scope(account, pixel), status="pending").count()


def _sendable_pixels(
    account: AdAccount | None, pixel: Pixel | None, now: dt.datetime
) -> QuerySet[Pixel]:
    due = Conversion.objects.due(now).filter(_scope(account, pixel))
    return (
        # EXISTS per pixel reads the due-pending index, not every pending row.
        Pixel.objects.filter(Exists(due.filter(pixel=OuterRef("pk"))))
        .filter(account__status=AdAccount.Status.ACTIVE)
        .filter(
            Q(account__rate_limited_until__isnull=True) | Q(account__rate_limited_until__lte=now)
        )
        .select_related("account")
        .order_by("pk")
    )


def _one_of(chosen: QuerySet[Any]) -> Q:
    """``pk IN (chosen)``, with the subquery run once.

    PostgreSQL may run an ``IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` subquery once
    per outer row and so claim more than n rows; ``= ANY(ARRAY(...))`` is evaluated once.
    """
    if connection.vendor != "postgresql":
        return Q(pk__in=Subquery(chosen))
    ids = Func(Subquery(chosen), template="(ARRAY%(expressions)s)", output_field=IntegerField())
    return Q(
        Func(
            F("pk"),
            ids,
            template="%(expressions)s",
            arg_joiner=" = ANY ",
            output_field=BooleanField(),
        )
    )


def claim(pixel: Pixel, count: int, now: dt.datetime | None = None) -> Claim:
    """Mark up to ``count`` due rows of ``pixel`` as ``sending`` under a fresh claim token.

    One UPDATE whose subquery picks the rows with ``FOR UPDATE SKIP LOCKED``, so workers
    never wait on each other's rows; the rows are then read back by their claim token.
    """
    now = now or timezone.now()
    token = uuid.uuid4()
    due = Conversion.objects.due(now).filter(pixel=pixel).order_by("next_attempt_at", "pk")
    # FOR UPDATE OF the conversion rows only (no join is locked).
    chosen = due.select_for_update(skip_locked=True, of=("self",)).values("pk")[:count]
    with transaction.atomic():
        # Exclusive without a status guard out here: PostgreSQL rechecks the subquery's
        # conditions on each row it locks, and SQLite runs the statement under its single
        # write lock. (A guard would also lead SQLite to scan every pending row.)
        claimed = Conversion.objects.filter(_one_of(chosen)).update(
            status=Conversion.Status.SENDING,
            claim_token=token,
            lease_expires_at=now + dt.timedelta(seconds=float(xsettings.LEASE_SECONDS)),
        )
    if not claimed:
        return Claim(token, [])
    mine = Conversion.objects.filter(claim_token=token).order_by("next_attempt_at", "pk")
    return Claim(token, claimed_rows.fetch(mine))


def dry_run(
    *, account: AdAccount | None = None, pixel: Pixel | None = None, limit: int | None = None
) -> SendSummary:
    """Build and validate what would be sent now; change nothing, send nothing."""
    summary = SendSummary()
    due = (
        Conversion.objects.due()
        .filter(_scope(account, pixel))
        .select_related("event_tag", "pixel")
        .order_by("pixel_id", "next_attempt_at")
    )
    for row in due[:limit] if limit else due:
        event = conversion_to_event(row, row.event_tag.website_tag_id)
        problems = validate(event)
        summary.payloads.append({"pixel_id": row.pixel.pixel_id, "event": event})
        if problems:
            summary.failed["invalid"] += 1
            summary.payloads[-1]["errors"] = [p.message for p in problems]
    summary.pending_left = pending_count(account, pixel)
    return summary


def send_pending(
    *,
    account: AdAccount | None = None,
    pixel: Pixel | None = None,
    limit: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[int], None] | None = None,
) -> SendSummary:
    """Send every due conversion (or up to ``limit``) within the accounts' budgets.

    While one batch's request is in flight (on a helper thread, HTTP only), the next
    batch is claimed and built here; every database write stays on this thread.
    """
    summary = SendSummary()
    # Rows rescheduled during this run (after a transient failure) wait for the next run.
    started = timezone.now()
    recover_expired_leases(started)
    remaining = limit if limit is not None else float("inf")
    clients: dict[int, XAdsClient] = {}
    stopped_accounts: set[int] = set()
    in_flight: tuple[BatchSender, Future[Transmission | None]] | None = None

    def finish() -> None:
        nonlocal in_flight
        if in_flight is None:
            return
        sender, future = in_flight
        in_flight = None
        sender.complete(future.result())
        if on_progress is not None:
            on_progress(len(sender.rows))
        if sender.account_stopped:
            stopped_accounts.add(sender.account.pk)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xconversions-send") as pool:
        for target in _sendable_pixels(account, pixel, started):
            if target.pk not in clients:
                clients[target.pk] = client_for(target.account, target)
            while remaining > 0 and target.account_id not in stopped_accounts and not should_stop():
                grant = budget.reserve(target.account_id, int(min(batch_size(), remaining)))
                if not grant.events:
                    if grant.wait_until is not None:
                        summary.budget_exhausted[target.account.account_id] = grant.wait_until
                    break
                claimed = claim(target, grant.events, started)
                budget.give_back(target.account_id, grant.events - len(claimed.rows))
                if not claimed.rows:
                    break
                sender = BatchSender(clients[target.pk], target, claimed, summary)
                sender.prepare()
                future = pool.submit(sender.transmit)
                finish()
                in_flight = (sender, future)
                remaining -= len(claimed.rows)
            finish()
    for client in clients.values():
        client.close()
    summary.pending_left = pending_count(account, pixel)
    return summary
