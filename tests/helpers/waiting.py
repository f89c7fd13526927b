"""Waiting for something another thread or process does: poll a condition with a deadline.

Nothing else in the tests sleeps. A test waiting for time itself to pass (a lease, a
rate-limit window, a retry) moves the clock instead (``clock`` fixture, ShiftedClock).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Often enough that a test ends soon after its condition holds; seldom enough that the
# polling costs the machine nothing.
POLL_SECONDS = 0.02


Message = str | Callable[[], str]


def _text(message: Message) -> str:
    return message() if callable(message) else message


def wait_until(condition: Callable[[], object], timeout: float, message: Message) -> float:
    """Poll ``condition()`` until it is true; the seconds that took. Fails with ``message``
    (or what ``message()`` says then) when ``timeout`` seconds pass first. ``condition``
    may itself assert (a process exiting early, say): that failure is raised at once."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"{_text(message)} (waited {timeout:g} s)")
        time.sleep(POLL_SECONDS)


def holds_for(condition: Callable[[], object], seconds: float, message: Message) -> None:
    """Check ``condition()`` keeps holding for ``seconds`` (a process that must survive a
    fault meanwhile); fails with ``message`` as soon as it does not."""
    deadline = time.monotonic() + seconds
    while True:
        assert condition(), _text(message)
        if time.monotonic() >= deadline:
            return
        time.sleep(POLL_SECONDS)
