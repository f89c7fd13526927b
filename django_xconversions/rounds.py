"""Sharing the senders fairly between accounts: which pixel's batch goes next, and a
small number of requests in flight at once.

- **One batch per turn.** Each turn gives one batch to the account that has taken the
  fewest events from its budget in the current window (``AdAccount.budget_used``, the
  counter every worker updates), ties drawn at random; within an account its pixels take
  turns. The pick and the reservation are one step: the least-served account's row is
  taken ``FOR UPDATE SKIP LOCKED`` in the claim's own transaction, and only while its
  count is still the lowest, so a second worker picking at the same moment takes the next
  account. With equal backlogs that is round-robin (every pixel gets its n-th batch before
  any gets its n+2-th) across any number of workers: no account's backlog starves the
  others. On SQLite the claim's transaction (BEGIN IMMEDIATE) already serialises it.
- **No head-of-line blocking.** Up to ``MAX_IN_FLIGHT`` requests are in flight, each of
  another account. A slow account holds one of them while the others go on; a paused,
  rate-limited or budget-spent account drops out of the run.
- **Stop means stop, across workers.** An account has at most one request in flight, in
  all workers together (on PostgreSQL a session advisory lock per account, held from the
  request until its outcome is written; a worker keeps it while its own next batch of
  that account follows an accepted one). Its next batch is claimed and built meanwhile,
  and leaves once the previous answer is known and accepted; a worker taking the account
  over first re-reads its state, so a batch another worker prepared is released unsent
  once X has said stop (401, 403, a pausing 404, 429). The helper threads only do HTTP.
- **Outcomes written behind (PostgreSQL).** An accepted batch's outcome is written by
  one writer thread on a connection of its own while this thread claims the next batch:
  the two statements run side by side in the database instead of one after the other.
  The account is let go, its lease released and progress reported here, once the
  outcome is committed; before an answer that is not an acceptance (a 429, a refusal)
  is handled, every outcome being written is waited for, so X's last word is written
  last. On SQLite (one writer) and inside a caller's transaction (a second connection
  would not see the claims) every write stays on the calling thread.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Case, F, IntegerField, Q, Value, When

from django_xconversions import budget, clock
from django_xconversions.batch import AccountStopped
from django_xconversions.engine_types import SendSummary
from django_xconversions.models import AdAccount, Pixel
from django_xconversions.outages import is_transient

if TYPE_CHECKING:
    from django_xconversions.batch import BatchSender, Transmission
    from django_xconversions.leases import LeaseKeeper

# Requests in flight at once, each of a different account.
MAX_IN_FLIGHT = 4
# How long to wait before trying again when the next step is another worker's to take
# (the least-served accounts are being claimed, or an account's request is in flight).
RETRY_SECONDS = 0.02

# Claims, budgets and builds the next batch of a pixel (wanting that many events): the
# batch, None when the pixel has nothing more to send now, or AccountStopped.
OpenBatch = Callable[[Pixel, int], "BatchSender | None"]
PixelError = Callable[[Pixel, Exception], None]


def _served() -> Case:
    """Events an account has taken from its budget in the current window."""
    return Case(
        When(budget_window_ends_at__gt=clock.now(), then=F("budget_used")),
        default=Value(0),
        output_field=IntegerField(),
    )


def _sendable(now: dt.datetime) -> Q:
    return Q(status=AdAccount.Status.ACTIVE) & (
        Q(rate_limited_until__isnull=True) | Q(rate_limited_until__lte=now)
    )


class Busy(Exception):
    """The next step is another worker's right now: try again in a moment."""


class AccountGate:
    """At most one request in flight per account, across workers.

    On PostgreSQL a session advisory lock per account is taken before a request leaves
    and released once its outcome is written (it dies with the worker's connection).
    Taking it over, a worker re-reads the account's state: whoever held it wrote its
    outcome (a pause, a rate limit) before letting go, so that state is X's last word.
    A worker kept out holds the account's waiting lock (shared) until it gets its turn;
    the holder's next reservation sees it (``budget.others_waiting``) and lets go.
    Elsewhere (SQLite: one writer, usually one worker) only the state is re-read.
    """

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.waiting: set[int] = set()
        self.locking = connection.vendor == "postgresql"

    def enter(self, account: int) -> bool:
        """True: this worker may send for ``account`` now; False: X said stop (or an admin
        paused it); Busy: another worker's request for it is in flight."""
        if account in self.held:
            return True  # this worker's previous request of it was accepted
        if self.locking:
            key = budget.lock_key(account)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_lock(%s::int4, %s::int4)", [budget.SENDING_LOCK, key]
                )
                if not cursor.fetchone()[0]:
                    if account not in self.waiting:
                        cursor.execute(
                            "SELECT pg_try_advisory_lock_shared(%s::int4, %s::int4)",
                            [budget.WAITING_LOCK, key],
                        )
                        if cursor.fetchone()[0]:
                            self.waiting.add(account)
                    raise Busy
            self._stop_waiting(account)
        # Read after the lock is ours: the previous holder's outcome is committed.
        if AdAccount.objects.filter(_sendable(clock.now()), pk=account).exists():
            self.held.add(account)
            return True
        self._unlock(account)
        return False

    def leave(self, account: int) -> None:
        if account in self.held:
            self.held.discard(account)
            self._unlock(account)

    def give_up(self, account: int) -> None:
        """No longer waiting to send for ``account`` (its batch went back)."""
        self._stop_waiting(account)

    def leave_all(self) -> None:
        for account in list(self.held):
            self.leave(account)
        for account in list(self.waiting):
            self._stop_waiting(account)

    def _stop_waiting(self, account: int) -> None:
        if account in self.waiting:
            self.waiting.discard(account)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock_shared(%s::int4, %s::int4)",
                    [budget.WAITING_LOCK, budget.lock_key(account)],
                )

    def _unlock(self, account: int) -> None:
        if self.locking:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s::int4, %s::int4)",
                    [budget.SENDING_LOCK, budget.lock_key(account)],
                )


def _write_outcome(sender: BatchSender, transmission: Transmission | None) -> None:
    """On the writer thread: a connection that failed is dropped, so that the outcomes
    queued behind this one are written on a fresh one."""
    try:
        sender.complete(transmission)
    except DatabaseError:
        connections.close_all()  # this thread's only
        raise


class Rounds:
    """One run over ``pixels``: turns, requests in flight, and the outcomes written."""

    def __init__(
        self,
        pixels: Iterable[Pixel],
        open_batch: OpenBatch,
        *,
        leases: LeaseKeeper,
        batch_size: int,
        limit: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[int], None] | None = None,
        on_pixel: Callable[[Pixel], None] | None = None,
        on_pixel_error: PixelError | None = None,
        time_limit: float | None = None,
        max_in_flight: int | None = None,
        rng: random.Random | None = None,
        write_behind: bool = False,
    ) -> None:
        self.open_batch = open_batch
        self.leases = leases
        self.batch_size = batch_size
        self.remaining: float = math.inf if limit is None else limit
        self.should_stop = should_stop
        self.on_progress = on_progress
        self.on_pixel = on_pixel
        self.on_pixel_error = on_pixel_error
        self.max_in_flight = max(1, MAX_IN_FLIGHT if max_in_flight is None else max_in_flight)
        # Past it nothing more is claimed; what was claimed is still sent.
        self.deadline = math.inf if time_limit is None else time.monotonic() + time_limit
        self.rng = rng or random.Random()  # noqa: S311 (tie-breaking, not crypto)
        # Each account's pixels with work left, the next one first.
        self.turns: dict[int, deque[Pixel]] = {}
        for pixel in pixels:
            self.turns.setdefault(pixel.account_id, deque()).append(pixel)
        self.in_flight: dict[int, tuple[BatchSender, Future[Transmission | None]]] = {}
        # Accepted batches whose outcome the writer thread is writing, oldest first, with
        # the run's summary their counts go to once written.
        self.write_behind = write_behind
        self.writing: deque[tuple[BatchSender, Future[None], SendSummary]] = deque()
        # Built and claimed, waiting for a free slot or for their account's answer.
        self.ready: deque[BatchSender] = deque()
        # Accounts whose ready batch waits for another worker's request to be answered.
        self.blocked: set[int] = set()
        # Accounts another worker waits to send for: let go after this answer, and leave
        # them alone a moment (until the time given) so that the other worker gets them.
        self.yielding: set[int] = set()
        self.cooling: dict[int, float] = {}
        self.gate = AccountGate()
        self.error: Exception | None = None
        self._closing = False

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> None:
        """Send until every pixel is done, ``limit`` is reached, ``time_limit`` seconds
        have passed (what was claimed is still sent) or ``should_stop`` (what was
        claimed but not sent is released); what is in flight is always written. Without
        ``on_pixel_error`` the first error of a pixel ends the run (after that) and is
        raised; database outages are raised at once."""
        try:
            with (
                ThreadPoolExecutor(
                    max_workers=self.max_in_flight, thread_name_prefix="xconversions-send"
                ) as pool,
                ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="xconversions-write"
                ) as writer,
            ):
                self.pool, self.writer = pool, writer
                try:
                    self._turns()
                    self._closing = True
                    while self.in_flight or self.writing:
                        self._collect(block=True)
                    for sender in list(self.ready):
                        self._release(sender)
                finally:
                    if self.write_behind:
                        # The writer's connection is its thread's own: closed before it ends.
                        writer.submit(connections.close_all)
        finally:
            with suppress(DatabaseError):  # a lost connection took its locks with it
                self.gate.leave_all()
        if self.error is not None:
            raise self.error

    def _turns(self) -> None:
        while not self.should_stop() and self.error is None:
            self._collect(block=False)
            try:
                claimed = self._claim_next()
            except Busy:
                claimed, busy = False, True
            else:
                busy = False
            self._dispatch()
            if claimed:
                continue
            if self._time_is_up():
                # Batches waiting for their account's answer (a slow account's, or
                # another worker's) are released, not waited for; the others still go.
                for sender in list(self.ready):
                    account = sender.account.pk
                    if account in self.in_flight or account in self.blocked:
                        self._release(sender)
                self.deadline = -math.inf
            elif self.in_flight or self.writing:
                waiting_on_others = busy or bool(self.blocked)
                self._collect(block=True, timeout=RETRY_SECONDS if waiting_on_others else None)
            elif busy or self.ready:
                time.sleep(RETRY_SECONDS)  # another worker's claim or request ends shortly
            else:
                break

    def _time_is_up(self) -> bool:
        """True once, when the time limit has just passed."""
        return self.deadline != -math.inf and time.monotonic() >= self.deadline

    def _claim_next(self) -> bool:
        """Claim the next batch of the least-served account, if one may be claimed now;
        True if the turns changed. Busy: the least-served accounts are being claimed by
        other workers."""
        if (
            self.remaining <= 0
            or len(self.ready) >= self.max_in_flight
            # Outcomes waiting for the writer hold their rows in memory: a writer that
            # falls behind slows the claims rather than letting the queue grow.
            or len(self.writing) >= self.max_in_flight
            or time.monotonic() >= self.deadline
        ):
            return False
        waiting = {sender.account.pk for sender in self.ready}
        if all(pk in waiting for pk in self.turns):
            return False
        gone: list[int] = []
        target = None
        try:
            # The pick, the budget's reservation and the claim commit together.
            with transaction.atomic():
                account = self._least_served(list(self.turns), waiting, gone)
                if account is None:
                    return bool(gone)
                pixels = self.turns[account]
                target = pixels.popleft()
                wanted = int(min(self.batch_size, self.remaining))
                if self.on_pixel is not None:
                    self.on_pixel(target)
                try:
                    sender = self.open_batch(target, wanted)
                except AccountStopped:
                    gone.append(account)
                    return True
                if budget.others_waiting(account):
                    self.yielding.add(account)
        except Busy:
            raise
        except Exception as exc:  # rolled back: nothing of this pixel was claimed
            if target is None:
                raise
            self._pixel_failed(target, exc)
            return True
        finally:
            for account in gone:
                self._stop_account(account)
        # A short batch: the pixel has nothing more due now (or its budget ran short).
        if sender is not None and len(sender.rows) >= wanted:
            pixels.append(target)
        if not pixels:
            self.turns.pop(account, None)
        if sender is not None:
            self.remaining -= len(sender.rows)
            self.ready.append(sender)
        return True

    def _least_served(
        self, candidates: list[int], waiting: set[int], gone: list[int]
    ) -> int | None:
        """The account whose batch is claimed next (its row locked until the claim
        commits, on PostgreSQL): one served no more than any other candidate not
        waiting here for an answer, as the database holds it now. Accounts that can no
        longer send are added to ``gone``."""
        if len(candidates) == 1:
            return None if candidates[0] in waiting else candidates[0]
        now = clock.now()
        served = dict(
            AdAccount.objects.filter(_sendable(now), pk__in=candidates)
            .annotate(served=_served())
            .values_list("pk", "served")
        )
        gone.extend(pk for pk in candidates if pk not in served)  # paused or rate limited
        # An account waiting here for its answer (a slow one's) is left out, so that it
        # holds up no other.
        ready = {pk: used for pk, used in served.items() if pk not in waiting}
        if not ready:
            return None
        least = min(ready.values())
        allowed = [pk for pk, used in ready.items() if used == least]
        if connection.vendor != "postgresql":
            return self.rng.choice(allowed)  # the transaction holds SQLite's write lock
        # Locked only if its count is still the lowest: a row another worker reserved for
        # since it was read fails the re-check, a row being reserved for is skipped.
        picked = list(
            AdAccount.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(_sendable(now), pk__in=allowed)
            .annotate(served=_served())
            .filter(served__lte=least)
            .order_by("?")
            .values_list("pk", flat=True)[:1]
        )
        if not picked:
            raise Busy
        return picked[0]

    def _dispatch(self) -> None:
        """Send the ready batches whose account has nothing in flight, here or in another
        worker, while slots last."""
        if self._closing:
            return
        self.blocked.clear()
        for sender in list(self.ready):
            if len(self.in_flight) >= self.max_in_flight:
                return
            account = sender.account.pk
            if account in self.in_flight or sender not in self.ready:
                continue
            if self.cooling.get(account, -math.inf) > time.monotonic() or (
                account in self.gate.held and account in self.yielding
            ):
                self.blocked.add(account)  # another worker's turn with this account
                continue
            try:
                may_send = self.gate.enter(account)
            except Busy:
                self.blocked.add(account)
                continue
            if not may_send:
                self._stop_account(account)  # X said stop to another worker: not one more
                continue
            self.ready.remove(sender)
            self.in_flight[account] = (sender, self.pool.submit(sender.transmit))

    def _collect(self, *, block: bool, timeout: float | None = None) -> None:
        """Write the outcomes of answered requests, and finish those the writer has
        written (waiting for one of either, up to ``timeout`` seconds, if ``block``)."""
        if not (self.in_flight or self.writing):
            return
        futures: list[Future[Any]] = [future for _, future in self.in_flight.values()]
        futures += [future for _, future, _ in self.writing]
        if block:
            wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        self._finish_written()
        for account, (sender, future) in list(self.in_flight.items()):
            if not future.done():
                continue
            del self.in_flight[account]
            try:
                transmission = future.result()
            except Exception as exc:  # a bug on the helper thread: the rows' lease runs out
                self.leases.release(sender.token)
                self._leave(account)
                self._pixel_failed(sender.pixel, exc)
                continue
            if transmission is None or transmission.accepted:
                # The account's next batch leaves now; these outcomes are written meanwhile.
                self._dispatch()
                if self.write_behind:
                    self._write_behind(sender, transmission)
                else:
                    self._complete(sender, transmission)
            else:
                # X's stop (or a refusal to isolate) is written after every earlier outcome.
                self._finish_written(wait_all=True)
                self._complete(sender, transmission)
                self._dispatch()

    def _complete(self, sender: BatchSender, transmission: Transmission | None) -> None:
        try:
            sender.complete(transmission)
        except BaseException as exc:
            self._finish(sender, exc)
        else:
            self._finish(sender, None)

    def _write_behind(self, sender: BatchSender, transmission: Transmission | None) -> None:
        """Hand an accepted batch's outcome to the writer thread. Its counts go to a
        summary of its own, added to the run's once written (on this thread)."""
        run_summary, sender.summary = sender.summary, SendSummary()
        written = self.writer.submit(_write_outcome, sender, transmission)
        self.writing.append((sender, written, run_summary))

    def _finish_written(self, *, wait_all: bool = False) -> None:
        """Finish the batches whose outcome the writer has committed, in order (all of
        them, waiting, if ``wait_all``)."""
        while self.writing and (wait_all or self.writing[0][1].done()):
            sender, future, run_summary = self.writing.popleft()
            error = future.exception()
            run_summary.merge(sender.summary)
            sender.summary = run_summary
            self._finish(sender, error)

    def _finish(self, sender: BatchSender, error: BaseException | None) -> None:
        """A batch's outcome is written (or failed to be): its lease ends, its account is
        let go, progress is reported."""
        account = sender.account.pk
        try:
            if error is not None:
                if not isinstance(error, Exception):
                    raise error
                self._pixel_failed(sender.pixel, error)
        finally:
            self.leases.release(sender.token)
            # The outcome (a pause, a rate limit) is written: the account is free again.
            self._leave(account)
        if self.on_progress is not None:
            self.on_progress(len(sender.rows))
        if sender.account_stopped:
            self._stop_account(account)

    def _leave(self, account: int) -> None:
        # Not while its next batch is in flight from here, or an outcome of it is still
        # being written.
        if account not in self.in_flight and not any(
            sender.account.pk == account for sender, _, _ in self.writing
        ):
            self.gate.leave(account)
            if account in self.yielding:
                self.yielding.discard(account)
                self.cooling[account] = time.monotonic() + 2 * RETRY_SECONDS

    # -- accounts and pixels that drop out ---------------------------------------------------

    def _stop_account(self, account: int) -> None:
        """Nothing more for this account in this run; its claimed batches go back."""
        self.turns.pop(account, None)
        for sender in [s for s in self.ready if s.account.pk == account]:
            self._release(sender)

    def _release(self, sender: BatchSender) -> None:
        self.ready.remove(sender)
        self.gate.give_up(sender.account.pk)
        try:
            sender.release()
        except Exception as exc:
            self._pixel_failed(sender.pixel, exc)
        finally:
            self.leases.release(sender.token)

    def _pixel_failed(self, pixel: Pixel, exc: Exception) -> None:
        """A pixel's work failed: outages end the run at once; anything else drops the
        pixel and is reported (or, without a handler, ends the run once it is tidy)."""
        if is_transient(exc):
            raise exc
        for pixels in self.turns.values():
            if pixel in pixels:
                pixels.remove(pixel)
        self.turns = {account: pixels for account, pixels in self.turns.items() if pixels}
        if self.on_pixel_error is not None:
            self.on_pixel_error(pixel, exc)
        elif self.error is None:
            self.error = exc
