"""The time the engine goes by: when leases run out, budgets and X's rate limits reopen,
retries fall due.

Every such "is it time yet" reads this module rather than the system clock, so a test
moves time forward (``with clock.use(source): ...``) instead of waiting for it to pass.
"""

from __future__ import annotations

import datetime as dt
import time as system_time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from django.conf import settings


class Source(Protocol):
    """Where the time comes from."""

    def time(self) -> float:
        """Seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds that never go back, for measuring intervals."""


class SystemClock:
    """The operating system's clocks."""

    def time(self) -> float:
        return system_time.time()

    def monotonic(self) -> float:
        return system_time.monotonic()


_source: Source = SystemClock()


def time() -> float:
    """Seconds since the epoch."""
    return _source.time()


def monotonic() -> float:
    """Seconds for measuring intervals (never goes back)."""
    return _source.monotonic()


def now() -> dt.datetime:
    """What ``django.utils.timezone.now()`` returns, at this clock's time: aware UTC with
    USE_TZ, naive local time without."""
    if settings.USE_TZ:
        return dt.datetime.fromtimestamp(_source.time(), tz=dt.timezone.utc)
    return dt.datetime.fromtimestamp(_source.time())


@contextmanager
def use(source: Source) -> Iterator[Source]:
    """Read the time from ``source`` inside the block (for every thread)."""
    global _source
    previous, _source = _source, source
    try:
        yield source
    finally:
        _source = previous
