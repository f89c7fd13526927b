"""Reading X's rate-limit and retry-after headers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

ACCOUNT_PREFIX = "x-account-rate-limit-"
USER_PREFIX = "x-rate-limit-"


@dataclass(frozen=True)
class RateLimit:
    """One rate-limit scope as X reported it; ``reset_at`` is in epoch seconds."""

    limit: int | None
    remaining: int | None
    reset_at: float | None
    scope: str  # "account" or "user"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _scope(headers: Mapping[str, str], prefix: str, scope: str) -> RateLimit | None:
    limit = _int(headers.get(prefix + "limit"))
    remaining = _int(headers.get(prefix + "remaining"))
    reset = _int(headers.get(prefix + "reset"))
    if limit is None and remaining is None and reset is None:
        return None
    return RateLimit(limit, remaining, float(reset) if reset is not None else None, scope)


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """The account-level limit when X sent it (it is the one that binds), else user-level.

    ``headers`` must look names up case-insensitively (requests' headers do).
    """
    return _scope(headers, ACCOUNT_PREFIX, "account") or _scope(headers, USER_PREFIX, "user")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))
