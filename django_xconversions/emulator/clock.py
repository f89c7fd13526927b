"""A clock tests move by hand, for ``EmulatorServer(clock=...)``."""

from __future__ import annotations

import threading
import time


class ManualClock:
    """Epoch seconds that start at the real time and move only when ``advance`` says so.

    ``EmulatorServer(clock=ManualClock())``: a rate-limit window or a request token then
    expires when the test advances the clock, never while it waits.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            return self._now
