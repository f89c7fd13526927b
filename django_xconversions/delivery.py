"""The outbox engine: claim due conversions, send them in batches, record every outcome.

``send_pending`` is the one function the management command, the admin action and the
tasks call. For each pixel with due conversions it repeatedly:

1. reserves events from the account's shared budget (budget.py),
2. claims that many due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` in a short
   transaction, marking them ``sending`` with a claim token and a lease timed from the
   claim, and commits,
3. sends them outside any transaction (batch.py classifies X's answers),
4. writes the outcomes in bulk, guarded by the claim token.

While a batch is held its lease is renewed (leases.py), so a live worker's rows are never
taken over, however long X takes. A worker that dies after step 2 leaves rows
``sending``; once their lease expires any worker returns them to ``pending``. Nothing is
ever deleted or silently dropped.

Accounts take turns, one batch each, with a few requests of different accounts in flight
at once (rounds.py). An account's next batch leaves only once its previous answer is
known: after X says stop (429, 401, 403, a 404 that pauses) not one more request goes out
for that account. An account whose stored secrets cannot be read is
paused with the fix; the other accounts go on.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
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

from django_xconversions import budget, claiming, clock, errors
from django_xconversions import claimed as claimed_rows
from django_xconversions.batch import AccountStopped, BatchSender, pause_account
from django_xconversions.claimed import Claimed
from django_xconversions.client import XAdsClient
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.connections import client_with
from django_xconversions.engine_types import Claim, SendSummary
from django_xconversions.leases import (
    LeaseKeeper,
    claim_token_pid,
    lease_from_now,
    new_claim_token,
)
from django_xconversions.models import AdAccount, Conversion, Pixel
from django_xconversions.payload import MAX_EVENTS_PER_REQUEST, conversion_to_event, validate
from django_xconversions.rounds import Rounds

__all__ = [
    "Claim",
    "SendSummary",
    "batch_size",
    "claim",
    "claim_token_pid",
    "dry_run",
    "pending_count",
    "recover_expired_leases",
    "send_pending",
]


def batch_size() -> int:
    return min(xsettings.BATCH_SIZE, MAX_EVENTS_PER_REQUEST)


def recover_expired_leases(now: dt.datetime | None = None) -> int:
    """Return rows whose worker died (lease passed) to ``pending``."""
    return Conversion.objects.filter(
        status=Conversion.Status.SENDING, lease_expires_at__lt=now or clock.now()
    ).update(status=Conversion.Status.PENDING, claim_token=None, lease_expires_at=None)


def _scope(account: AdAccount | None, pixel: Pixel | None) -> Q:
    scope = Q()
    if account is not None:
        scope &= Q(pixel__account=account)
    if pixel is not None:
        scope &= Q(pixel=pixel)
    return scope


def pending_count(account: AdAccount | None = None, pixel: Pixel | None = None) -> int:
    return Conversion.objects.filter(
        _scope(account, pixel), status=Conversion.Status.PENDING
    ).count()


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


def claim(
    pixel: Pixel,
    count: int,
    *,
    due_by: dt.datetime | None = None,
    within_budget: bool = False,
) -> Claim:
    """Mark up to ``count`` rows of ``pixel`` due by ``due_by`` (default: now) as
    ``sending`` under a fresh claim token, leased for LEASE_SECONDS from now.

    One statement picks the rows with ``FOR UPDATE SKIP LOCKED`` (workers never wait on
    each other's rows), marks them and returns them (claiming.py). ``within_budget``
    first reserves the events from the account's budget in the same transaction and
    gives back what was not claimed; Claim.wait_until then says when the budget, not
    the backlog, held the claim short.
    """
    token = new_claim_token()
    due_by = due_by or clock.now()
    wait_until = None
    # Within the turn's transaction (rounds.py locks the account it picked) no savepoint:
    # the pick, the reservation and the claim commit or roll back together.
    with transaction.atomic(savepoint=False):
        if within_budget:
            grant = budget.reserve(pixel.account_id, count)
            wanted, count = count, grant.events
            if grant.events < wanted:
                wait_until = grant.wait_until
        # Timed from the claim, not from the run: a long run's claims are as safe as its
        # first one.
        lease = lease_from_now()
        if count <= 0:
            rows: list[Claimed] = []
        elif claiming.returns_rows():
            rows = claiming.claim_rows(pixel.pk, count, due_by=due_by, token=token, lease=lease)
        else:
            rows = _claim_then_read(pixel, count, due_by=due_by, token=token, lease=lease)
        if within_budget and len(rows) < count:
            budget.give_back(pixel.account_id, count - len(rows))
            wait_until = None  # the backlog ran out first
    return Claim(token, rows, wait_until)


def _claim_then_read(
    pixel: Pixel, count: int, *, due_by: dt.datetime, token: uuid.UUID, lease: dt.datetime
) -> list[Claimed]:
    """The claim where UPDATE ... RETURNING is not available: update, then read back."""
    due = Conversion.objects.due(due_by).filter(pixel=pixel).order_by("next_attempt_at", "pk")
    # FOR UPDATE OF the conversion rows only (no join is locked).
    chosen = due.select_for_update(skip_locked=True, of=("self",)).values("pk")[:count]
    claimed = Conversion.objects.filter(_one_of(chosen)).update(
        status=Conversion.Status.SENDING, claim_token=token, lease_expires_at=lease
    )
    if not claimed:
        return []
    # Through the index of rows in flight (the claim token has none of its own).
    mine = Conversion.objects.filter(status=Conversion.Status.SENDING, claim_token=token)
    mine = mine.order_by("next_attempt_at", "pk")
    return claimed_rows.fetch(mine)


def dry_run(
    *, account: AdAccount | None = None, pixel: Pixel | None = None, limit: int | None = None
) -> SendSummary:
    """Build and validate what would be sent now; change nothing, send nothing."""
    summary = SendSummary()
    due = (
        Conversion.objects.due()
        .filter(_scope(account, pixel))
        .select_related("event_tag", "pixel")
        .order_by("pixel_id", "next_attempt_at", "pk")  # the order claims take
    )
    for row in due[:limit] if limit else due:
        tag, target = row.event_tag, row.pixel
        event = conversion_to_event(row, tag.website_tag_id if tag else "")
        messages = [p.message for p in validate(event)]
        if tag is None or target is None:
            messages.insert(0, "No event tag or pixel to send it through (routing is held).")
        summary.payloads.append({"pixel_id": target.pixel_id if target else None, "event": event})
        if messages:
            summary.failed[Conversion.ErrorReason.INVALID] += 1
            summary.payloads[-1]["errors"] = messages
    summary.pending_left = pending_count(account, pixel)
    return summary


def _client(target: Pixel, summary: SendSummary) -> XAdsClient | None:
    """The pixel's client; None, with the account paused, when its secrets cannot be read."""
    try:
        credentials = target.account.credentials(target)
    except ImproperlyConfigured as exc:
        # A broken key setting concerns every account: that is raised, not paused for.
        if not isinstance(exc, errors.ImproperlyConfiguredAccount) and (
            type(exc) is not ImproperlyConfigured
        ):
            raise
        reason = f"The stored secrets of this account cannot be read: {exc}"
        if "ENCRYPTION_KEY" not in reason:
            reason += (
                f" Add the key they were written with to {setting_path('ENCRYPTION_KEY')},"
                " or reconnect the account with X."
            )
        pause_account(target.account, reason, summary)
        return None
    return client_with(credentials)


def send_pending(
    *,
    account: AdAccount | None = None,
    pixel: Pixel | None = None,
    limit: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[int], None] | None = None,
    on_pixel: Callable[[Pixel], None] | None = None,
    on_pixel_error: Callable[[Pixel, Exception], None] | None = None,
    time_limit: float | None = None,
) -> SendSummary:
    """Send every due conversion (or up to ``limit``) within the accounts' budgets.

    Accounts take turns, one batch each (rounds.py): a large backlog does not hold up
    the others, nor does a slow or stopped account. While requests are in flight (on
    helper threads, HTTP only) the next batches are claimed here; on PostgreSQL the
    outcomes of accepted batches are written meanwhile by a writer thread on its own
    connection (rounds.py), and leases.py renews leases on another; every other database
    write stays on this thread.
    ``on_pixel`` is called before each batch is claimed; ``on_pixel_error(pixel, exc)``
    when a pixel's batch fails (the run goes on without that pixel; without it the run
    stops and raises). After ``time_limit`` seconds nothing more is claimed (the
    ``--loop`` worker's passes end so that newly due pixels join the turns).
    """
    summary = SendSummary()
    # Rows rescheduled during this run (after a transient failure) wait for the next run.
    started = clock.now()
    recover_expired_leases(started)
    # Inside a caller's transaction nobody else sees the claims: nothing to renew.
    renewing = not connection.in_atomic_block
    clients: dict[int, XAdsClient | None] = {}

    def open_batch(target: Pixel, wanted: int) -> BatchSender | None:
        """The pixel's next batch, claimed within the budget and built; None when it has
        nothing more due; AccountStopped when its account cannot send in this run."""
        if target.pk not in clients:
            clients[target.pk] = _client(target, summary)
        client = clients[target.pk]
        if client is None:
            raise AccountStopped("the account's secrets cannot be read")
        # The budget's reservation and the claim commit together (one transaction).
        claimed = claim(target, wanted, due_by=started, within_budget=True)
        if claimed.wait_until is not None:
            summary.budget_exhausted[target.account.account_id] = claimed.wait_until
            if not claimed.rows:
                raise AccountStopped("budget used up")
        if not claimed.rows:
            return None
        leases.hold(claimed.token)
        # Built on the helper thread that sends it (BatchSender.transmit).
        return BatchSender(client, target, claimed, summary)

    try:
        with LeaseKeeper(renewing=renewing) as leases:
            Rounds(
                _sendable_pixels(account, pixel, started),
                open_batch,
                leases=leases,
                batch_size=batch_size(),
                limit=limit,
                should_stop=should_stop,
                on_progress=on_progress,
                on_pixel=on_pixel,
                on_pixel_error=on_pixel_error,
                time_limit=time_limit,
                # A second connection writes outcomes while this one claims (PostgreSQL;
                # it would not see claims made inside a caller's transaction).
                write_behind=renewing and connection.vendor == "postgresql",
            ).run()
    finally:
        for client in clients.values():
            if client is not None:
                client.close()
    summary.pending_left = pending_count(account, pixel)
    return summary
