"""Fault injection: scripted or random failures of the conversions endpoint (or of all),
and the conversions endpoint's other adjustable behaviour (latency, 404 wording).

What each fault does (see api.py):
  "500"             500 INTERNAL_ERROR
  "503"             503 SERVICE_UNAVAILABLE with retry-after: retry_after_seconds
  "429"             429 TOO_MANY_REQUESTS, rate-limit resets rate_limit_reset_seconds ahead
  "401"             401 UNAUTHORIZED_ACCESS "This request is not properly authenticated"
                    (what wrong or revoked credentials get)
  "403"             403 ACCOUNT_LOCKED_OUT: the account has no Ads API access
  "403_client_app"  403 UNAUTHORIZED_CLIENT_APPLICATION with the reference's message
                    ("The client application with id <> making this request does not have
                    access to X Ads API. ...")
  "timeout"         the answer comes slow_seconds late; the request is processed on arrival
                    (or, with slow_before_processing, after the wait), so a client that gives
                    up earlier may leave an accepted batch behind: the duplicate case
  "reset"           the connection is closed with a TCP RST and nothing is processed
  "ok"              normal behaviour
A refused request (any fault but "ok" and "timeout") is not processed: nothing is received.

Options besides the faults (attributes, or keys of ``configure`` and of the "faults" object
of ``--config``):
  only_pixels         list of pixel ids, or None (all): faults hit only conversions requests
                      for these pixels. Other requests are answered normally and neither
                      consume the script nor draw from the rates, so one account can be
                      refused while another's conversions flow.
  delay_seconds       every conversions answer (refusals included, resets excepted) is held
                      back this long; the request is processed on arrival. Added to a
                      "timeout" fault's slow_seconds. Stopping the emulator cuts the wait.
  not_found_wording   how a 404 names an event id that is not the account's:
                      "parenthesized" (default, the reference's JSON example)
                          event_id (abc) does not belong to provided account
                      "plain" (the reference's error table)
                          event_id abc does not belong to provided account
                      one NOT_FOUND error per unknown event id of the batch either way.
  slow_seconds, retry_after_seconds, rate_limit_reset_seconds, slow_before_processing,
  all_endpoints       see FaultPlan.__init__.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

FAULTS = ("ok", "500", "503", "timeout", "reset", "429", "401", "403", "403_client_app")
NOT_FOUND_WORDINGS = ("parenthesized", "plain")
# set_rates keyword -> the fault it draws.
RATE_NAMES = {
    "error_500": "500",
    "error_503": "503",
    "timeout": "timeout",
    "reset": "reset",
    "rate_limit": "429",
    "error_401": "401",
    "error_403": "403",
    "error_403_client_app": "403_client_app",
}
_NUMBERS = ("slow_seconds", "retry_after_seconds", "rate_limit_reset_seconds", "delay_seconds")
_FLAGS = ("slow_before_processing", "all_endpoints")


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
        self._only_pixels: frozenset[str] | None = None
        self._not_found_wording = "parenthesized"
        self._delay_seconds = 0.0
        # How late a "timeout" fault answers.
        self.slow_seconds = 2.0
        # retry-after sent with 503s, and how far in the future a 429's reset lies.
        self.retry_after_seconds = 1
        self.rate_limit_reset_seconds = 2
        # Sleep first and process after (a server slow before it commits); a request still
        # waiting when the emulator stops is then never processed.
        self.slow_before_processing = False
        # Faults hit the conversions endpoint only, unless this is set (and only_pixels is
        # not: other endpoints name no pixel).
        self.all_endpoints = False

    # -- options -----------------------------------------------------------------------------

    @property
    def only_pixels(self) -> frozenset[str] | None:
        """Pixel ids whose conversions requests meet faults; None: every request."""
        return self._only_pixels

    @only_pixels.setter
    def only_pixels(self, pixel_ids: Iterable[str] | None) -> None:
        if isinstance(pixel_ids, str):
            raise ValueError("only_pixels must be a list of pixel ids, not one string")
        self._only_pixels = None if pixel_ids is None else frozenset(map(str, pixel_ids))

    @property
    def not_found_wording(self) -> str:
        return self._not_found_wording

    @not_found_wording.setter
    def not_found_wording(self, wording: str) -> None:
        if wording not in NOT_FOUND_WORDINGS:
            raise ValueError(
                f"not_found_wording must be one of {NOT_FOUND_WORDINGS}, got {wording!r}"
            )
        self._not_found_wording = wording

    @property
    def delay_seconds(self) -> float:
        """How late every conversions answer arrives (processed on arrival)."""
        return self._delay_seconds

    @delay_seconds.setter
    def delay_seconds(self, seconds: float) -> None:
        seconds = float(seconds)
        if not seconds >= 0:  # also refuses NaN
            raise ValueError(f"delay_seconds must be >= 0, got {seconds}")
        self._delay_seconds = seconds

    # -- faults ------------------------------------------------------------------------------

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
        error_401: float = 0.0,
        error_403: float = 0.0,
        error_403_client_app: float = 0.0,
        seed: int = 0,
    ) -> None:
        given = {
            "error_500": error_500,
            "error_503": error_503,
            "timeout": timeout,
            "reset": reset,
            "rate_limit": rate_limit,
            "error_401": error_401,
            "error_403": error_403,
            "error_403_client_app": error_403_client_app,
        }
        rates = {RATE_NAMES[name]: float(rate) for name, rate in given.items()}
        if any(not rate >= 0 for rate in rates.values()) or sum(rates.values()) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        with self._lock:
            self._rates = {k: v for k, v in rates.items() if v > 0}
            self._random = random.Random(seed)  # noqa: S311

    def configure(self, options: Mapping[str, Any]) -> None:
        """Apply a JSON-like description (the "faults" object of ``--config``): "script",
        the set_rates arguments (error_500, error_503, timeout, reset, rate_limit,
        error_401, error_403, error_403_client_app, seed), "only_pixels",
        "delay_seconds", "not_found_wording", "slow_seconds", "retry_after_seconds",
        "rate_limit_reset_seconds", "slow_before_processing" and "all_endpoints"."""
        settings = dict(options)
        known = {"script", "only_pixels", "not_found_wording", "seed", *RATE_NAMES}
        unknown = sorted(set(settings) - known - set(_NUMBERS) - set(_FLAGS))
        if unknown:
            everything = sorted(known | set(_NUMBERS) | set(_FLAGS))
            raise ValueError(f"unknown fault options {unknown}; known: {everything}")
        for name in _NUMBERS:
            if name in settings:
                setattr(self, name, type(getattr(self, name))(settings.pop(name)))
        for name in _FLAGS:
            if name in settings:
                setattr(self, name, bool(settings.pop(name)))
        if "only_pixels" in settings:
            self.only_pixels = settings.pop("only_pixels")
        if "not_found_wording" in settings:
            self.not_found_wording = settings.pop("not_found_wording")
        if "script" in settings:
            self.script(settings.pop("script"))
        if settings:
            self.set_rates(**settings)

    def clear(self) -> None:
        """Forget the script and the rates (the options stay)."""
        with self._lock:
            self._script.clear()
            self._rates = {}

    def applies_to(self, pixel_id: str | None) -> bool:
        """Whether a request for ``pixel_id`` (None: a route naming no pixel) meets faults."""
        only = self._only_pixels
        return only is None or (pixel_id is not None and pixel_id in only)

    def next(self, pixel_id: str | None = None) -> str:
        """The fault the next request for ``pixel_id`` meets; requests outside only_pixels
        get "ok" and leave the script and the random draws untouched."""
        if not self.applies_to(pixel_id):
            return "ok"
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
