"""Fault injection for the conversions endpoint: scripted or random failures."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable

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
        # A slow response sleeps this long before it is processed, like a slow server.
        self.slow_seconds = 2.0
        # retry-after sent with 503s, and how far in the future a 429's reset lies.
        self.retry_after_seconds = 1
        self.rate_limit_reset_seconds = 2

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
        if sum(rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        with self._lock:
            self._rates = {k: v for k, v in rates.items() if v > 0}
            self._random = random.Random(seed)  # noqa: S311

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
