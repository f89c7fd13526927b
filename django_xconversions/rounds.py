"""Sharing the senders fairly between accounts: which pixel's batch goes next, and a
small number of requests in flight at once.

- **One batch per turn.** Each turn gives one batch to the account that has taken the
  fewest events from its budget in the current window (``AdAccount.budget_used``, the
  counter every worker updates), ties drawn at random; within an account its pixels take
  turns. With equal backlogs that is round-robin (every pixel gets its n-th batch before
  any gets its n+2-th), and it stays round-robin across any number of workers, since they
  all read the same counters: no account's backlog starves the others.
- **No head-of-line blocking.** Up to ``MAX_IN_FLIGHT`` requests are in flight, each of
  another account. A slow account holds one of them while the others go on; a paused,
  rate-limited or budget-spent account drops out of the run.
- **The engine's rules per account hold as before.** An account has at most one request
  in flight; its next batch is claimed and built meanwhile, and leaves once the previous
  answer is known and accepted. If X said stop, the next batch is released unsent. Every
  database write stays on the calling thread; the helper threads only do HTTP.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from django.db.models import Case, F, IntegerField, Value, When
from django.utils import timezone

from django_xconversions.batch import AccountStopped
from django_xconversions.models import AdAccount, Pixel
from django_xconversions.outages import is_transient

if TYPE_CHECKING:
    from django_xconversions.batch import BatchSender, Transmission
    from django_xconversions.leases import LeaseKeeper

# Requests in flight at once, each of a different account.
MAX_IN_FLIGHT = 4

# Claims, budgets and builds the next batch of a pixel (wanting that many events): the
# batch, None when the pixel has nothing more to send now, or AccountStopped.
OpenBatch = Callable[[Pixel, int], "BatchSender | None"]
PixelError = Callable[[Pixel, Exception], None]


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
        max_in_flight: int = MAX_IN_FLIGHT,
        rng: random.Random | None = None,
    ) -> None:
        self.open_batch = open_batch
        self.leases = leases
        self.batch_size = batch_size
        self.remaining: float = math.inf if limit is None else limit
        self.should_stop = should_stop
        self.on_progress = on_progress
        self.on_pixel = on_pixel
        self.on_pixel_error = on_pixel_error
        self.max_in_flight = max(1, max_in_flight)
        # Past it nothing more is claimed; what was claimed is still sent.
        self.deadline = math.inf if time_limit is None else time.monotonic() + time_limit
        self.rng = rng or random.Random()  # noqa: S311 (tie-breaking, not crypto)
        # Each account's pixels with work left, the next one first.
        self.turns: dict[int, deque[Pixel]] = {}
        for pixel in pixels:
            self.turns.setdefault(pixel.account_id, deque()).append(pixel)
        self.in_flight: dict[int, tuple[BatchSender, Future[Transmission | None]]] = {}
        # Built and claimed, waiting for a free slot or for their account's answer.
        self.ready: deque[BatchSender] = deque()
        self.error: Exception | None = None
        self._closing = False

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> None:
        """Send until every pixel is done, ``limit`` is reached, ``time_limit`` seconds
        have passed (what was claimed is still sent) or ``should_stop`` (what was
        claimed but not sent is released); what is in flight is always written. Without
        ``on_pixel_error`` the first error of a pixel ends the run (after that) and is
        raised; database outages are raised at once."""
        with ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix="xconversions-send"
        ) as pool:
            self.pool = pool
            while not self.should_stop() and self.error is None:
                self._collect(block=False)
                account = self._next_account()
                if account is not None:
                    self._prepare(account)
                    self._dispatch()
                elif self._time_is_up():
                    # Batches waiting for their account's answer (a slow account's) are
                    # released, not waited for; the others still go.
                    for sender in [s for s in self.ready if s.account.pk in self.in_flight]:
                        self._release(sender)
                    self.deadline = -math.inf
                elif self.in_flight:
                    self._collect(block=True)
                elif self.ready:  # past the time limit: what was claimed still goes
                    self._dispatch()
                else:
                    break
            self._closing = True
            while self.in_flight:
                self._collect(block=True)
            for sender in list(self.ready):
                self._release(sender)
        if self.error is not None:
            raise self.error

    def _time_is_up(self) -> bool:
        """True once, when the time limit has just passed."""
        return self.deadline != -math.inf and time.monotonic() >= self.deadline

    def _next_account(self) -> int | None:
        """Whose batch is claimed next: the least served account that can take one."""
        if (
            self.remaining <= 0
            or len(self.ready) >= self.max_in_flight
            or time.monotonic() >= self.deadline
        ):
            return None
        waiting = {sender.account.pk for sender in self.ready}
        candidates = [pk for pk in self.turns if pk not in waiting]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        now = timezone.now()
        used = Case(
            When(budget_window_ends_at__gt=now, then=F("budget_used")),
            default=Value(0),
            output_field=IntegerField(),
        )
        served = dict(
            AdAccount.objects.filter(pk__in=candidates)
            .annotate(used=used)
            .values_list("pk", "used")
        )
        least = min(served.get(pk, 0) for pk in candidates)
        return self.rng.choice([pk for pk in candidates if served.get(pk, 0) == least])

    def _prepare(self, account: int) -> None:
        pixels = self.turns[account]
        target = pixels.popleft()
        wanted = int(min(self.batch_size, self.remaining))
        if self.on_pixel is not None:
            self.on_pixel(target)
        try:
            sender = self.open_batch(target, wanted)
        except AccountStopped:
            self._stop_account(account)
            return
        except Exception as exc:
            self._pixel_failed(target, exc)
            sender = None
        else:
            # A short batch: the pixel has nothing more due now (or its budget ran short).
            if sender is not None and len(sender.rows) >= wanted:
                pixels.append(target)
        if not pixels:
            self.turns.pop(account, None)
        if sender is not None:
            self.remaining -= len(sender.rows)
            self.ready.append(sender)

    def _dispatch(self) -> None:
        """Send the ready batches whose account has nothing in flight, while slots last."""
        if self._closing:
            return
        for sender in list(self.ready):
            if len(self.in_flight) >= self.max_in_flight:
                return
            account = sender.account.pk
            if account not in self.in_flight:
                self.ready.remove(sender)
                self.in_flight[account] = (sender, self.pool.submit(sender.transmit))

    def _collect(self, *, block: bool) -> None:
        """Write the outcomes of answered requests (waiting for one if ``block``)."""
        if not self.in_flight:
            return
        futures = [future for _, future in self.in_flight.values()]
        if block:
            wait(futures, return_when=FIRST_COMPLETED)
        for account, (sender, future) in list(self.in_flight.items()):
            if not future.done():
                continue
            del self.in_flight[account]
            try:
                transmission = future.result()
            except Exception as exc:  # a bug on the helper thread: the rows' lease runs out
                self.leases.release(sender.token)
                self._pixel_failed(sender.pixel, exc)
                continue
            if transmission is None or transmission.accepted:
                # The account's next batch leaves now; these outcomes are written meanwhile.
                self._dispatch()
                self._complete(sender, transmission)
            else:
                self._complete(sender, transmission)
                self._dispatch()

    def _complete(self, sender: BatchSender, transmission: Transmission | None) -> None:
        try:
            sender.complete(transmission)
        except Exception as exc:
            self._pixel_failed(sender.pixel, exc)
        finally:
            self.leases.release(sender.token)
        if self.on_progress is not None:
            self.on_progress(len(sender.rows))
        if sender.account_stopped:
            self._stop_account(sender.account.pk)

    # -- accounts and pixels that drop out ---------------------------------------------------

    def _stop_account(self, account: int) -> None:
        """Nothing more for this account in this run; its claimed batches go back."""
        self.turns.pop(account, None)
        for sender in [s for s in self.ready if s.account.pk == account]:
            self._release(sender)

    def _release(self, sender: BatchSender) -> None:
        self.ready.remove(sender)
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
