"""One pooled requests Session talking to X: URLs, timeouts, logging, rate-limit headers.

Sends what it is given and never retries (urllib3's retries are off: a POST resent on its
own would send conversions twice; retrying is the delivery engine's decision). Non-2xx
answers and failed connections raise through error_mapping.py. Only method, path, status
and duration are logged: never bodies (hashed identifiers), tokens or headers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from django_xconversions.client.error_mapping import (
    error_for,
    json_or_none,
    transport_error,
    why,
)
from django_xconversions.conf import xsettings
from django_xconversions.ratelimit import RateLimit, parse_rate_limit

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["APIResponse", "EventJSON", "Transport", "TransportOptions", "json_text"]

# The name the README documents for the client's request log.
logger = logging.getLogger("django_xconversions.client")

# Connections kept per host: enough for the threads of one worker sharing a client.
POOL_SIZE = 10


@dataclass(frozen=True)
class APIResponse:
    """A 2xx answer: ``data`` of X's envelope, plus what the headers said."""

    data: Any
    status: int
    rate_limit: RateLimit | None
    debug_id: str | None
    headers: Mapping[str, str] = field(repr=False)
    body: Mapping[str, Any] = field(repr=False)  # the whole envelope (request, next_cursor)

    @property
    def next_cursor(self) -> str | None:
        cursor = self.body.get("next_cursor")
        return str(cursor) if cursor else None


def _query_value(value: Any) -> Any:
    # X expects lower-case booleans in query strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _query(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: _query_value(v) for k, v in (params or {}).items() if v is not None}


class EventJSON(str):
    """The JSON text of one conversion event, written already (the sender writes it
    straight from a claimed row): ``send_conversions`` puts it in the body as it is."""

    __slots__ = ()


def json_text(value: Any) -> bytes:
    """``value`` as the JSON body of a request: compact (a batch of 500 rich events is
    5% smaller, and quicker to write and to read), ASCII, with NaN and infinities refused
    as requests' own ``json=`` refuses them (InvalidJSONError, a RequestException)."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")
    except ValueError as exc:
        raise requests.exceptions.InvalidJSONError(exc) from exc


def new_session() -> requests.Session:
    session = requests.Session()
    # max_retries=0: urllib3 must never resend a POST on its own (a conversion sent twice).
    adapter = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class TransportOptions(TypedDict, total=False):
    """Where and how long to talk to X. Each one left out (or None) is read from
    ``XCONVERSIONS`` at every call, so ``override_settings`` is seen without a new
    transport. A session handed in belongs to the caller, who closes it."""

    base_url: str | None
    api_version: str | None
    connect_timeout: float | None
    read_timeout: float | None
    session: requests.Session | None


class Transport:
    """Sends requests to X with the given ``TransportOptions``."""

    def __init__(self, **options: Unpack[TransportOptions]) -> None:
        unknown = sorted(set(options) - TransportOptions.__optional_keys__)
        if unknown:
            # As Python says it of a misspelt keyword: a typo must not pass unnoticed.
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        self._base_url = options.get("base_url")
        self._api_version = options.get("api_version")
        self._connect_timeout = options.get("connect_timeout")
        self._read_timeout = options.get("read_timeout")
        session = options.get("session")
        self._owns_session = session is None
        self.session = session if session is not None else new_session()
        # What the last answer's headers said about the rate limits (None: nothing).
        self.last_rate_limit: RateLimit | None = None

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    @property
    def base_url(self) -> str:
        value = self._base_url if self._base_url is not None else xsettings.API_BASE_URL
        return str(value).rstrip("/")

    @property
    def api_version(self) -> str:
        value = self._api_version if self._api_version is not None else xsettings.API_VERSION
        return str(value).strip("/")

    @property
    def timeout(self) -> tuple[float, float]:
        connect = self._connect_timeout
        read = self._read_timeout
        return (
            connect if connect is not None else xsettings.CONNECT_TIMEOUT,
            read if read is not None else xsettings.READ_TIMEOUT,
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}/{self.api_version}/{path.lstrip('/')}"

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        auth: AuthBase | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> APIResponse:
        """One request to ``path`` (relative to the version); the 2xx answer, or a raise.
        The JSON body is ``json_body`` serialised, or ``body``, JSON text written already."""
        if json_body is not None and body is not None:
            raise ValueError("json_body or body, not both")
        url = self.url(path)
        logged_path = urlsplit(url).path
        timeout = self.timeout
        started = time.monotonic()
        try:
            if json_body is not None:
                body = json_text(json_body)
            response = self.session.request(
                method,
                url,
                params=_query(params) or None,
                data=body,
                headers={
                    "User-Agent": xsettings.USER_AGENT,
                    "Accept": "application/json",
                    # Set before signing: a body without it would be signed as a form,
                    # which breaks X's signature check.
                    **({} if body is None else {"Content-Type": "application/json"}),
                    **(headers or {}),
                },
                auth=auth,
                timeout=timeout,
                # A redirected POST would come back as a GET; X's host moves are settings.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            elapsed = time.monotonic() - started
            logger.debug("%s %s failed after %.3fs: %s", method, logged_path, elapsed, why(exc))
            raise transport_error(exc, method, url, logged_path, timeout) from exc
        elapsed = time.monotonic() - started
        logger.debug("%s %s -> %s in %.3fs", method, logged_path, response.status_code, elapsed)
        return self._answer(method, logged_path, response)

    def _answer(self, method: str, path: str, response: requests.Response) -> APIResponse:
        rate_limit = parse_rate_limit(response.headers)
        self.last_rate_limit = rate_limit
        warning = response.headers.get("x-api-warn")
        if warning:
            logger.warning("X API warning for %s %s: %s", method, path, warning)
        if not 200 <= response.status_code < 300:
            raise error_for(response, rate_limit)
        body = json_or_none(response)
        body = body if isinstance(body, dict) else {}
        data = body.get("data")
        debug_id = data.get("debug_id") if isinstance(data, dict) else None
        return APIResponse(
            data=data,
            status=response.status_code,
            rate_limit=rate_limit,
            debug_id=str(debug_id) if debug_id else None,
            headers=response.headers,
            body=body,
        )
