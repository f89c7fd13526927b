"""The current request's identifiers and consent, for track() and signal receivers.

TwclidMiddleware sets a ``RequestContext`` in a context variable for the duration of each
request (sync and async views alike), so a model's post_save receiver can tell which
click, IP address and user agent the order came from without being handed the request.

Everything is read lazily: a request that never records a conversion never reads the
session (no database query) and never calls the consent check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from functools import cached_property
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.module_loading import import_string

from django_xconversions import identifiers
from django_xconversions.conf import xsettings

logger = logging.getLogger("django_xconversions.capture")

SESSION_KEY = "xconversions_twclid"
QUERY_PARAMETER = "twclid"

_current: ContextVar[RequestContext | None] = ContextVar("xconversions_request", default=None)


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the header your proxy sets when CLIENT_IP_HEADER names it.

    With a comma-separated header (X-Forwarded-For), entries on the right were appended by
    your own proxies: the client is TRUSTED_PROXY_COUNT entries from the right. Entries
    further left are whatever the client sent and are never used.
    """
    header = xsettings.CLIENT_IP_HEADER
    raw = request.META.get(header) if header else request.META.get("REMOTE_ADDR")
    if not raw:
        return None
    entries = [part.strip() for part in str(raw).split(",") if part.strip()]
    if not entries:
        return None
    hops = xsettings.TRUSTED_PROXY_COUNT if header else 1
    candidate = entries[-hops] if len(entries) >= hops else entries[0]
    try:
        return identifiers.normalize_ip(candidate)
    except ValidationError:
        return None


def valid_twclid(raw: Any) -> str | None:
    """The click id if it is well formed, else None (logged at debug, never stored)."""
    if not raw:
        return None
    try:
        return identifiers.normalize_twclid(raw)
    except ValidationError:
        logger.debug("Ignored a malformed twclid (%d characters).", len(str(raw)))
        return None


def _consent_check() -> Callable[[HttpRequest], bool] | None:
    path = xsettings.CONSENT_CHECK
    if not path:
        return None
    check: Callable[[HttpRequest], bool] = import_string(path) if isinstance(path, str) else path
    return check


class RequestContext:
    """Identifiers and consent of one request, each worked out on first use."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    @cached_property
    def refusal(self) -> str:
        """Why tracking is refused for this request ("" when it is not)."""
        if xsettings.HONOR_GPC and self.request.META.get("HTTP_SEC_GPC", "").strip() == "1":
            return "No consent: the browser sent Sec-GPC: 1 (Global Privacy Control)."
        check = _consent_check()
        if check is not None and not check(self.request):
            return f"No consent: {xsettings.CONSENT_CHECK} refused."
        return ""

    @property
    def consent(self) -> bool:
        return not self.refusal

    @cached_property
    def url_twclid(self) -> str | None:
        return valid_twclid(self.request.GET.get(QUERY_PARAMETER))

    @cached_property
    def twclid(self) -> str | None:
        """This request's click id, else the last one captured within TWCLID_TTL."""
        if not self.consent:
            return None
        return self.url_twclid or stored_twclid(self.request)

    @cached_property
    def ip_address(self) -> str | None:
        return client_ip(self.request)

    @cached_property
    def user_agent(self) -> str | None:
        agent = self.request.META.get("HTTP_USER_AGENT")
        return identifiers.normalize_user_agent(storable(str(agent))) if agent else None


def storable(header: str) -> str:
    """A header value without what no database column takes (NUL, lone surrogates):
    a visitor's odd user agent must not make their conversion invalid."""
    return header.replace("\x00", "").encode("utf-8", "ignore").decode("utf-8")


def stored_twclid(request: HttpRequest, now: float | None = None) -> str | None:
    session = getattr(request, "session", None)
    stored = session.get(SESSION_KEY) if session is not None else None
    if not isinstance(stored, dict):
        return None
    captured_at = stored.get("at")
    if not isinstance(captured_at, int | float):
        return None
    if (now or time.time()) - captured_at > xsettings.TWCLID_TTL:
        return None  # older than X's attribution window: no longer this click's
    return valid_twclid(stored.get("twclid"))


def remember_twclid(request: HttpRequest, twclid: str, now: float | None = None) -> None:
    """Store the click id in the session with its capture time (the last click wins)."""
    session = getattr(request, "session", None)
    if session is not None:
        session[SESSION_KEY] = {"twclid": twclid, "at": now or time.time()}


def for_request(request: HttpRequest) -> RequestContext:
    """The context of ``request``: the one the middleware set for it, or a new one."""
    active = _current.get()
    if active is not None and active.request is request:
        return active
    cached = getattr(request, "_xconversions_context", None)
    if isinstance(cached, RequestContext):
        return cached
    context = RequestContext(request)
    request._xconversions_context = context  # type: ignore[attr-defined]
    return context


def current() -> RequestContext | None:
    """The context of the request being handled on this thread or task, if any."""
    return _current.get()


def enter(request_context: RequestContext) -> Token[RequestContext | None]:
    """Make ``request_context`` current (the middleware; leave() undoes it)."""
    request_context.request._xconversions_context = request_context  # type: ignore[attr-defined]
    return _current.set(request_context)


def leave(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


@contextmanager
def detached() -> Iterator[None]:
    """No request context: for code acting for someone else (the REST API records
    conversions of visitors, not of the server calling it)."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def activate(request: HttpRequest) -> Iterator[RequestContext]:
    context = for_request(request)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
