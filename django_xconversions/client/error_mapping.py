"""X's non-2xx answers and failed connections turned into the typed errors of errors.py.

Messages carry X's own words when its body has them, and never quote headers or bodies
otherwise (they may hold tokens or hashed identifiers).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from django_xconversions import clock, errors
from django_xconversions.conf import setting_path
from django_xconversions.errors import APIErrorDetail
from django_xconversions.ratelimit import RateLimit, parse_retry_after, rate_limited_until

__all__ = ["error_for", "json_or_none", "transport_error", "why"]


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_details(body: Any) -> tuple[APIErrorDetail, ...]:
    items = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return ()
    return tuple(
        APIErrorDetail(
            code=str(item.get("code") or ""),
            message=str(item.get("message") or item.get("code") or ""),
            parameter=str(item["parameter"]) if item.get("parameter") is not None else None,
        )
        for item in items
        if isinstance(item, dict)
    )


def _fallback_message(response: requests.Response, body: Any) -> str:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        return (
            f"HTTP {status} from X: redirected to {location}; "
            f"point {setting_path('API_BASE_URL')} at the new address"
        )
    if body is None:
        return f"HTTP {status} from X (non-JSON body)"
    return f"HTTP {status} from X (no error details)"


def error_for(response: requests.Response, rate_limit: RateLimit | None) -> errors.XAdsError:
    """The error a non-2xx answer raises: its class from the status, its message X's first."""
    body = json_or_none(response)
    details = _error_details(body)
    first = details[0] if details else None
    message = first.message if first else _fallback_message(response, body)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    cls = errors.error_class_for_status(response.status_code)
    kwargs: dict[str, Any] = {
        "status": response.status_code,
        "code": first.code if first else None,
        "parameter": first.parameter if first else None,
        "errors": details,
        "response": response,
        "rate_limit": rate_limit,
    }
    if cls is errors.RateLimited:
        now = clock.time()
        reset_at = rate_limited_until(response.headers, now)
        if retry_after is None and reset_at is not None:
            retry_after = max(0.0, reset_at - now)
        return errors.RateLimited(message, reset_at=reset_at, retry_after=retry_after, **kwargs)
    return cls(message, retry_after=retry_after, **kwargs)


def why(exc: BaseException) -> str:
    """What went wrong, from the innermost OS error (never str(exc): it may quote headers)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    reason = type(exc).__name__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            reason = current.strerror
        current = current.__cause__ or current.__context__
    return reason


def transport_error(
    exc: requests.RequestException, method: str, url: str, path: str, timeout: tuple[float, float]
) -> errors.TransportError:
    """The error a request that got no answer raises (timeouts name the limit that ran out)."""
    host = urlsplit(url).netloc or url
    where = f"{method} {path}"
    if isinstance(exc, requests.ConnectTimeout):
        return errors.RequestTimeout(
            f"Could not connect to {host} within {timeout[0]:g} s ({where})"
        )
    if isinstance(exc, requests.Timeout):
        return errors.RequestTimeout(f"No answer from {host} within {timeout[1]:g} s ({where})")
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return errors.TransportError(
            f"Invalid URL {url!r}: check {setting_path('API_BASE_URL')} ({where})"
        )
    return errors.TransportError(f"Could not reach {host}: {why(exc)} ({where})")
