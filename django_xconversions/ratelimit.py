"""Reading X's rate-limit and Retry-After headers.

X reports two scopes: ``x-rate-limit-*`` for the user (token) and ``x-account-rate-limit-*``
for the ads account. The account scope is the one that binds when X sends it, so it wins.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from django_xconversions import clock

ACCOUNT_PREFIX = "x-account-rate-limit-"
USER_PREFIX = "x-rate-limit-"


@dataclass(frozen=True)
class RateLimit:
    """One rate-limit scope as X reported it; ``reset_at`` is in epoch seconds."""

    limit: int | None
    remaining: int | None
    reset_at: float | None
    scope: str  # "account" or "user"

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    # requests' headers are case-insensitive, a plain dict is not: compare lower-cased.
    return {str(k).lower(): v for k, v in headers.items()}


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _int(value: str | None) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _scope(headers: Mapping[str, str], prefix: str, scope: str) -> RateLimit | None:
    limit = _int(headers.get(prefix + "limit"))
    remaining = _int(headers.get(prefix + "remaining"))
    reset_at = _number(headers.get(prefix + "reset"))
    if limit is None and remaining is None and reset_at is None:
        return None
    return RateLimit(limit, remaining, reset_at, scope)


def parse_rate_limits(headers: Mapping[str, str]) -> tuple[RateLimit, ...]:
    """Every scope X reported, the account scope first."""
    lowered = _lower(headers)
    scopes = (_scope(lowered, ACCOUNT_PREFIX, "account"), _scope(lowered, USER_PREFIX, "user"))
    return tuple(scope for scope in scopes if scope is not None)


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """The account-level limit when X sent it (it is the one that binds), else user-level."""
    scopes = parse_rate_limits(headers)
    return scopes[0] if scopes else None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value or not value.strip():
        return None
    seconds = _number(value.strip())
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - (clock.time() if now is None else now))


def rate_limited_until(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """When a 429 is over (epoch seconds), never earlier than any hint X gave.

    The scope that is used up decides (waiting for the other scope's reset would only be
    waited out once and then hit again); with no used-up scope the binding one does. A
    Retry-After, when present, can only push the time later.
    """
    now = clock.time() if now is None else now
    scopes = parse_rate_limits(headers)
    exhausted = [s.reset_at for s in scopes if s.exhausted and s.reset_at is not None]
    candidates = exhausted or [s.reset_at for s in scopes[:1] if s.reset_at is not None]
    retry_after = parse_retry_after(_lower(headers).get("retry-after"), now)
    if retry_after is not None:
        candidates.append(now + retry_after)
    return max(candidates) if candidates else None
