"""Fault injection: scripted or random failures of the conversions endpoint (or of all).

What each fault does (see api.py):
  "500"      500 INTERNAL_ERROR
  "503"      503 SERVICE_UNAVAILABLE with retry-after: retry_after_seconds
  "429"      429 TOO_MANY_REQUESTS, rate-limit resets rate_limit_reset_seconds ahead
  "timeout"  the answer comes slow_seconds late; the request is processed on arrival (or,
             with slow_before_processing, after the wait), so a client that gives up
             earlier may leave an accepted batch behind: the duplicate case
  "reset"    the connection is closed with a TCP RST and nothing is processed
  "ok"       normal behaviour
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

FAULTS = ("ok", "500", "503", "timeout", "reset", "429")


class FaultPlan:
    """What the next conversions request meets.

    A script (consumed one fault per request) wins over rates. Rates draw from a seeded
    generator, so a run can be repeated exactly.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[str] = deque()
        self._rates: dict[str, float] = {}
        self._random = random.Random(0)  # noqa: S311 (test faults, not crypto)
        # How late a "timeout" fault answers.
        self.slow_seconds = 2.0
        # retry-after sent with 503s, and how far in the future a 429's reset lies.
        self.retry_after_seconds = 1
        self.rate_limit_reset_seconds = 2
        # Sleep first and process after (a server slow before it commits); a request still
        # waiting when the emulator stops is then never processed.
        self.slow_before_processing = False
        # Faults hit the conversions endpoint only, unless this is set.
        self.all_endpoints = False

    def script(self, faults: Iterable[str]) -> None:
        items = list(faults)
        unknown = sorted(set(items) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
        with self._lock:
            self._script.extend(items)

    def set_rates(
        self,
        *,
        error_500: float = 0.0,
        error_503: float = 0.0,
        timeout: float = 0.0,
        reset: float = 0.0,
        rate_limit: float = 0.0,
        seed: int = 0,
    ) -> None:
        rates = {
            "500": error_500,
            "503": error_503,
            "timeout": timeout,
            "reset": reset,
            "429": rate_limit,
        }
        if any(rate < 0 for rate in rates.values()) or sum(rates.values()) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        with self._lock:
            self._rates = {k: v for k, v in rates.items() if v > 0}
            self._random = random.Random(seed)  # noqa: S311

    def configure(self, options: Mapping[str, Any]) -> None:
        """Apply a JSON-like description: set_rates arguments plus "script",
        "slow_seconds", "retry_after_seconds", "rate_limit_reset_seconds",
        "slow_before_processing" and "all_endpoints"."""
        settings = dict(options)
        for name in ("slow_seconds", "retry_after_seconds", "rate_limit_reset_seconds"):
            if name in settings:
                setattr(self, name, type(getattr(self, name))(settings.pop(name)))
        for name in ("slow_before_processing", "all_endpoints"):
            if name in settings:
                setattr(self, name, bool(settings.pop(name)))
        if "script" in settings:
            self.script(settings.pop("script"))
        if settings:
            self.set_rates(**settings)

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self._rates = {}

    def next(self) -> str:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if not self._rates:
                return "ok"
            draw = self._random.random()
            for fault, rate in self._rates.items():
                if draw < rate:
                    return fault
                draw -= rate
            return "ok"
