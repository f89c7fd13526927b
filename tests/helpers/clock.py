"""A clock a test moves forward instead of waiting for time to pass."""

from __future__ import annotations

import datetime as dt
import threading
import time


class ShiftedClock:
    """The real time plus a shift that ``advance`` adds to; it never goes back.

    The ``clock`` fixture installs one as the product's clock (django_xconversions.clock)
    and, through the ``emulator`` fixture, as the emulated X's: a lease runs out, X's
    rate-limit window reopens or a retry falls due the moment a test advances it. Time
    still flows as usual meanwhile, so HTTP timeouts and threads behave as in production.
    The client signs its requests with the real time and the emulator refuses OAuth
    timestamps five minutes off its own: keep the shift under that where requests are
    signed afterwards.
    """

    def __init__(self) -> None:
        self.shift = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return time.time() + self.shift

    def monotonic(self) -> float:
        return time.monotonic() + self.shift

    def __call__(self) -> float:
        """Epoch seconds: the emulator's clock (``EmulatorServer(clock=...)``)."""
        return self.time()

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"a clock does not go back (advance by {seconds})")
        with self._lock:
            self.shift += seconds

    def advance_past(self, moment: dt.datetime) -> None:
        """Move forward until ``moment`` (an aware datetime) has just passed."""
        self.advance(max(0.0, moment.timestamp() - self.time()) + 0.001)
