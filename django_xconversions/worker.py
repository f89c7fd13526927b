"""The ``send_conversions --loop`` worker: run ``send_pending`` again and again until
SIGTERM/SIGINT, through database faults.

Each pass sends what is due, accounts taking turns (rounds.py). Between passes an idle
worker waits for the next committed conversion (wakeup.py: LISTEN/NOTIFY on PostgreSQL),
or LOOP_IDLE_SECONDS at most.

A lost connection, a server restart, SQLite's ``database is locked`` or a serialization
failure is an outage, not a reason to exit: the worker closes its connections, backs off
(with jitter, up to ``BACKOFF_MAX`` seconds) and tries again, logging once when the outage
starts and once when it ends. Rows it held when the fault hit go back to ``pending`` when
their lease expires. Any other error of a pixel is logged with its traceback and the
worker goes on with the other pixels, so one pixel's trouble does not stop the others.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections
from django.utils.translation import ngettext

from django_xconversions import delivery, routing
from django_xconversions.conf import xsettings
from django_xconversions.delivery import SendSummary
from django_xconversions.heartbeat import Heartbeat
from django_xconversions.models import AdAccount, Pixel
from django_xconversions.outages import TRANSIENT_ERRORS, is_transient
from django_xconversions.wakeup import Wakeup

__all__ = ["TRANSIENT_ERRORS", "Backoff", "Worker", "close_connections", "is_transient"]

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# A pass claims for this long at most, then the next one starts: pixels that became due
# meanwhile join the turns rather than wait for a long backlog to drain. (A pass ends by
# waiting for the requests in flight, a slow account's too: not much shorter.)
PASS_SECONDS = 30.0


def close_connections() -> None:
    """Drop every connection this thread opened; the next query opens a fresh one."""
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:
            conn.connection = None


@dataclass
class Backoff:
    """Exponential backoff with jitter: between half and all of FIRST * 2**n, capped."""

    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_MAX
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Outage:
    started: float
    attempts: int = 0


class Worker:
    """Drains due conversions until ``stop`` is set (or ``limit`` conversions are done)."""

    def __init__(
        self,
        *,
        stop: threading.Event,
        account: AdAccount | None = None,
        pixel: Pixel | None = None,
        limit: int | None = None,
        heartbeat: Heartbeat | None = None,
        backoff: Backoff | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.stop = stop
        self.account = account
        self.pixel = pixel
        self.limit = limit
        self.heartbeat = heartbeat
        self.backoff = backoff or Backoff()
        self.on_progress = on_progress
        self.wakeup = Wakeup(stop)
        self.totals = SendSummary()
        self.outage: Outage | None = None
        # The last error of each pixel, so a pixel failing the same way every run logs
        # its traceback once, then one line.
        self._last_error: dict[int, str] = {}

    def run(self) -> SendSummary:
        if self.heartbeat is not None:
            self.heartbeat.start()
        # Listening before the first pass: nothing committed during it goes unnoticed.
        self.wakeup.open()
        try:
            while not self.stop.is_set() and self._left() != 0:
                try:
                    processed = self._run_once()
                except Exception as exc:
                    if is_transient(exc):
                        self._database_away(exc)
                        continue
                    logger.exception("Sending run failed; trying again after a pause.")
                    processed = 0
                else:
                    self._database_back()
                if processed == 0:
                    self.wakeup.wait(xsettings.LOOP_IDLE_SECONDS)
        finally:
            self.wakeup.close()
            if self.heartbeat is not None:
                self.heartbeat.stop()
        self._count_pending_left()
        return self.totals

    def _left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.totals.processed)

    def _run_once(self) -> int:
        """One pass over the pixels with due conversions; how many were processed.

        Transient database errors propagate (the whole pass waits out the outage); any
        other error of a pixel is logged and the pass goes on with the other pixels.
        """
        # What was notified before this point is covered by this pass.
        self.wakeup.discard_pending()
        # Rows of a worker that died (or lost its database mid-batch) are due again once
        # their lease passes; taken back here since a pass only visits pixels with due rows.
        delivery.recover_expired_leases()
        # A capture racing a configuration fix in another process can stay held after
        # that fix's own routing ran: each pass routes what is routable now (one indexed
        # query when nothing is held).
        routing.route_held()
        failed: set[int] = set()

        def pixel_failed(pixel: Pixel, exc: Exception) -> None:
            failed.add(pixel.pk)
            self._pixel_failed(pixel, exc)

        try:
            summary = delivery.send_pending(
                account=self.account,
                pixel=self.pixel,
                limit=self._left(),
                should_stop=self.stop.is_set,
                on_progress=self.on_progress,
                on_pixel=self._working_on,
                on_pixel_error=pixel_failed,
                time_limit=PASS_SECONDS,
            )
        finally:
            if self.heartbeat is not None:
                self.heartbeat.current_pixel = ""
        # A pixel that went through again logs its traceback on its next failure.
        for pk in [pk for pk in self._last_error if pk not in failed]:
            del self._last_error[pk]
        self.totals.merge(summary)
        return summary.processed

    def _working_on(self, pixel: Pixel) -> None:
        if self.heartbeat is not None:
            self.heartbeat.current_pixel = pixel.pixel_id

    def _pixel_failed(self, pixel: Pixel, exc: Exception) -> None:
        signature = f"{type(exc).__name__}: {exc}"
        fields = {"account_id": pixel.account.account_id, "pixel_id": pixel.pixel_id}
        if self._last_error.get(pixel.pk) == signature:
            logger.error("Pixel %s still failing: %s", pixel.pixel_id, signature, extra=fields)
        else:
            logger.error(
                "Sending for pixel %s failed; going on with the next pixel.",
                pixel.pixel_id,
                exc_info=exc,
                extra=fields,
            )
        self._last_error[pixel.pk] = signature

    def _database_away(self, exc: BaseException) -> None:
        close_connections()
        if self.outage is None:
            self.outage = Outage(started=time.monotonic())
            logger.warning(
                "Database unavailable (%s: %s); retrying with backoff up to %.0f s.",
                type(exc).__name__,
                str(exc).strip(),
                self.backoff.cap,
            )
        self.outage.attempts += 1
        delay = self.backoff.next_delay()
        logger.debug("Database still unavailable (%s); next try in %.2f s.", exc, delay)
        self.stop.wait(delay)

    def _database_back(self) -> None:
        if self.outage is None:
            return
        attempts = self.outage.attempts
        logger.warning(
            "Database available again after %.1f s (%d failed %s).",
            time.monotonic() - self.outage.started,
            attempts,
            ngettext("attempt", "attempts", attempts),
        )
        self.outage = None
        self.backoff.reset()

    def _count_pending_left(self) -> None:
        try:
            self.totals.pending_left = delivery.pending_count(self.account, self.pixel)
        except Exception as exc:
            if not is_transient(exc):
                raise
            close_connections()
