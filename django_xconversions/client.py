"""XAdsClient: the X Ads API over one pooled requests Session.

Authentication is OAuth 1.0a user context (HMAC-SHA1, requests-oauthlib) or, for the
conversions endpoint, a pixel's ``X-Pixel-Token``. JSON bodies go with ``json=`` so only
the method, URL, query and oauth_* parameters are signed, as X requires; tag create and
update take their parameters in the query string. Non-2xx answers raise the typed errors of
errors.py carrying X's message.

Request bodies hold hashed identifiers and are never logged; neither are tokens, secrets
or the Authorization header. Only method, path, status and duration are logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests_oauthlib import OAuth1

from django_xconversions import errors
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.errors import APIErrorDetail, ImproperlyConfiguredAccount
from django_xconversions.payload import MAX_EVENTS_PER_REQUEST, MSG_COUNT_LIMIT
from django_xconversions.ratelimit import (
    RateLimit,
    parse_rate_limit,
    parse_retry_after,
    rate_limited_until,
)

__all__ = [
    "PAGE_SIZE_MAX",
    "APIResponse",
    "ConversionsResult",
    "OAuth1Signer",
    "RateLimit",
    "XAdsClient",
]

logger = logging.getLogger("django_xconversions.client")

# Connections kept per host: enough for the threads of one worker sharing a client.
POOL_SIZE = 10
# X's maximum ``count`` for collections, and of ``web_event_tag_ids`` per request.
PAGE_SIZE_MAX = 1000
TAG_IDS_MAX = 200


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


@dataclass(frozen=True)
class ConversionsResult:
    conversions_processed: int
    debug_id: str | None
    rate_limit: RateLimit | None


# -- keeping tokens and bodies out of third-party debug logs -------------------------------

# requests-oauthlib logs the signed headers (with oauth_token) and the body (hashed PII) at
# DEBUG, and oauthlib the signature base string. Their records are dropped while this
# client signs; records from anyone else's OAuth code in the process are left alone.
_SIGNING_LOGGERS = ("requests_oauthlib.oauth1_auth", "oauthlib.oauth1.rfc5849")


class _WhileSigning(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._local.active = True
        try:
            yield
        finally:
            self._local.active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self._local, "active", False)


_quiet_signing = _WhileSigning()
for _name in _SIGNING_LOGGERS:
    logging.getLogger(_name).addFilter(_quiet_signing)


class OAuth1Signer(AuthBase):
    """Signs a request with a requests-oauthlib ``OAuth1``, the signing libraries' debug
    logs (which print tokens) muted; the client and the Connect with X flow both use it."""

    def __init__(self, oauth: Any) -> None:
        self._oauth = oauth

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        with _quiet_signing.active():
            signed: requests.PreparedRequest = self._oauth(r)
        return signed


_OAuth1 = OAuth1Signer  # the former private name, kept for existing imports


# -- helpers -------------------------------------------------------------------------------


def _query_value(value: Any) -> Any:
    # X expects lower-case booleans in query strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _query(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: _query_value(v) for k, v in (params or {}).items() if v is not None}


def _enumerate(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _json_or_none(response: requests.Response) -> Any:
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


def _error_for(response: requests.Response, rate_limit: RateLimit | None) -> errors.XAdsError:
    body = _json_or_none(response)
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
        now = time.time()
        reset_at = rate_limited_until(response.headers, now)
        if retry_after is None and reset_at is not None:
            retry_after = max(0.0, reset_at - now)
        return errors.RateLimited(message, reset_at=reset_at, retry_after=retry_after, **kwargs)
    return cls(message, retry_after=retry_after, **kwargs)


def _why(exc: BaseException) -> str:
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


def _transport_error(
    exc: requests.RequestException, method: str, url: str, path: str, timeout: tuple[float, float]
) -> errors.TransportError:
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
    return errors.TransportError(f"Could not reach {host}: {_why(exc)} ({where})")


# -- the client ----------------------------------------------------------------------------


class XAdsClient:
    """One set of credentials against the X Ads API.

    Arguments left as None are read from ``XCONVERSIONS`` on every call, so settings
    changed later (tests, ``override_settings``) are seen without a new client. Reuse one
    client for many calls: its Session keeps connections open.
    """

    def __init__(
        self,
        *,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        access_token: str | None = None,
        access_token_secret: str | None = None,
        pixel_token: str | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self._access_token = access_token
        self._access_token_secret = access_token_secret
        self._pixel_token = pixel_token
        self._base_url = base_url
        self._api_version = api_version
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # A session handed in belongs to the caller, who closes it.
        self._owns_session = session is None
        self.session = session if session is not None else self._new_session()
        self.last_rate_limit: RateLimit | None = None

    def __repr__(self) -> str:
        auth = "pixel token" if self._pixel_token else "OAuth 1.0a"
        return f"<XAdsClient {self.base_url}/{self.api_version} ({auth})>"

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # max_retries=0: urllib3 must never resend a POST on its own (a conversion sent
        # twice); retrying is the delivery engine's decision.
        adapter = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> XAdsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- configuration, read at call time ------------------------------------------------

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
            float(connect if connect is not None else xsettings.CONNECT_TIMEOUT),
            float(read if read is not None else xsettings.READ_TIMEOUT),
        )

    @property
    def uses_pixel_token(self) -> bool:
        return bool(self._pixel_token)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{self.api_version}/{path.lstrip('/')}"

    def _oauth(self, purpose: str, *, pixel_token_would_do: bool = False) -> OAuth1Signer:
        consumer_key = self._consumer_key or xsettings.CONSUMER_KEY
        consumer_secret = self._consumer_secret or xsettings.CONSUMER_SECRET
        missing = [
            setting_path(name)
            for name, value in (
                ("CONSUMER_KEY", consumer_key),
                ("CONSUMER_SECRET", consumer_secret),
            )
            if not value
        ]
        if not (self._access_token and self._access_token_secret):
            missing.append("access_token and access_token_secret")
        if missing:
            alternative = " (or a pixel token)" if pixel_token_would_do else ""
            verb = "is" if len(missing) == 1 and " and " not in missing[0] else "are"
            raise ImproperlyConfiguredAccount(
                f"{_enumerate(missing)}{alternative} {verb} required to {purpose}"
            )
        return OAuth1Signer(
            OAuth1(
                consumer_key,
                client_secret=consumer_secret,
                resource_owner_key=self._access_token,
                resource_owner_secret=self._access_token_secret,
                signature_method="HMAC-SHA1",
                signature_type="AUTH_HEADER",
            )
        )

    # -- transport -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> APIResponse:
        """Any Ads API call, OAuth-signed. ``path`` is relative to the version."""
        auth = self._oauth(f"call {method} /{self.api_version}/{path.lstrip('/')}")
        return self._send(method, path, params=params, json_body=json_body, auth=auth)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        auth: AuthBase | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> APIResponse:
        url = self.url(path)
        logged_path = urlsplit(url).path
        timeout = self.timeout
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=_query(params) or None,
                json=json_body,  # never data=: a form body would be signed and break X
                headers={
                    "User-Agent": str(xsettings.USER_AGENT),
                    "Accept": "application/json",
                    **(headers or {}),
                },
                auth=auth,
                timeout=timeout,
                # A redirected POST would come back as a GET; X's host moves are settings.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            elapsed = time.monotonic() - started
            logger.debug("%s %s failed after %.3fs: %s", method, logged_path, elapsed, _why(exc))
            raise _transport_error(exc, method, url, logged_path, timeout) from exc
        elapsed = time.monotonic() - started
        logger.debug("%s %s -> %s in %.3fs", method, logged_path, response.status_code, elapsed)
        return self._handle(method, logged_path, response)

    def _handle(self, method: str, path: str, response: requests.Response) -> APIResponse:
        rate_limit = parse_rate_limit(response.headers)
        self.last_rate_limit = rate_limit
        warning = response.headers.get("x-api-warn")
        if warning:
            logger.warning("X API warning for %s %s: %s", method, path, warning)
        if not 200 <= response.status_code < 300:
            raise _error_for(response, rate_limit)
        body = _json_or_none(response)
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

    def _paged(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = self.request("GET", path, params={**params, "cursor": cursor})
            yield from page.data or []
            if page.next_cursor is None:
                return
            if page.next_cursor == cursor:
                # Asking again would return the same page forever.
                raise errors.XAdsError(f"X returned the same cursor twice for GET {path}")
            cursor = page.next_cursor

    # -- conversions ---------------------------------------------------------------------

    def send_conversions(
        self, pixel_id: str, conversions: Sequence[Mapping[str, Any]]
    ) -> ConversionsResult:
        """POST measurement/conversions/:pixel_id with 1 to 500 events (all or nothing)."""
        if len(conversions) > MAX_EVENTS_PER_REQUEST:
            raise ValueError(MSG_COUNT_LIMIT)
        if not conversions:
            raise ValueError("At least one conversion is required")
        path = f"measurement/conversions/{_segment(pixel_id)}"
        auth: AuthBase | None = None
        headers: dict[str, str] = {}
        if self._pixel_token:
            headers["X-Pixel-Token"] = self._pixel_token
        else:
            auth = self._oauth("send conversions", pixel_token_would_do=True)
        result = self._send(
            "POST",
            path,
            json_body={"conversions": [dict(c) for c in conversions]},
            auth=auth,
            headers=headers,
        )
        data = result.data if isinstance(result.data, dict) else {}
        return ConversionsResult(
            conversions_processed=int(data.get("conversions_processed") or 0),
            debug_id=result.debug_id,
            rate_limit=result.rate_limit,
        )

    # -- web event tags ------------------------------------------------------------------

    @staticmethod
    def _tags_path(account_id: str, tag_id: str | None = None) -> str:
        path = f"accounts/{_segment(account_id)}/web_event_tags"
        return f"{path}/{_segment(tag_id)}" if tag_id is not None else path

    def iter_web_event_tags(
        self,
        account_id: str,
        *,
        with_deleted: bool = False,
        count: int = PAGE_SIZE_MAX,
        web_event_tag_ids: Sequence[str] | None = None,
        sort_by: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every tag of the account, following ``next_cursor`` page by page."""
        if not 1 <= count <= PAGE_SIZE_MAX:
            raise ValueError(f"count must be between 1 and {PAGE_SIZE_MAX}")
        if web_event_tag_ids is not None and len(web_event_tag_ids) > TAG_IDS_MAX:
            raise ValueError(f"At most {TAG_IDS_MAX} web_event_tag_ids per request")
        params = {
            "count": count,
            "with_deleted": with_deleted,
            "sort_by": sort_by,
            "web_event_tag_ids": ",".join(web_event_tag_ids) if web_event_tag_ids else None,
        }
        return self._paged(self._tags_path(account_id), params)

    def get_web_event_tag(
        self, account_id: str, tag_id: str, *, with_deleted: bool = False
    ) -> dict[str, Any]:
        path = self._tags_path(account_id, tag_id)
        return self._object(self.request("GET", path, params={"with_deleted": with_deleted}))

    def create_web_event_tag(
        self,
        account_id: str,
        *,
        name: str,
        type: str,
        click_window: int,
        view_through_window: int,
        retargeting_enabled: bool,
    ) -> dict[str, Any]:
        params = {
            "name": name,
            "type": type,
            "click_window": click_window,
            "view_through_window": view_through_window,
            "retargeting_enabled": retargeting_enabled,
        }
        # X takes tag parameters in the query string, not in a body.
        return self._object(self.request("POST", self._tags_path(account_id), params=params))

    def update_web_event_tag(self, account_id: str, tag_id: str, **changes: Any) -> dict[str, Any]:
        """PUT only the given fields (X leaves the others as they are)."""
        if not any(v is not None for v in changes.values()):
            raise ValueError("update_web_event_tag needs at least one field to change")
        path = self._tags_path(account_id, tag_id)
        return self._object(self.request("PUT", path, params=changes))

    def delete_web_event_tag(self, account_id: str, tag_id: str) -> dict[str, Any]:
        """Returns the tag with ``"deleted": true``."""
        return self._object(self.request("DELETE", self._tags_path(account_id, tag_id)))

    # -- accounts ------------------------------------------------------------------------

    def iter_accounts(self, *, count: int = PAGE_SIZE_MAX) -> Iterator[dict[str, Any]]:
        """Every ads account the access token's user can reach."""
        if not 1 <= count <= PAGE_SIZE_MAX:
            raise ValueError(f"count must be between 1 and {PAGE_SIZE_MAX}")
        return self._paged("accounts", {"count": count})

    def authenticated_user_access(self, account_id: str) -> dict[str, Any]:
        """``{"user_id": ..., "permissions": [...]}`` of the token's user on the account."""
        path = f"accounts/{_segment(account_id)}/authenticated_user_access"
        return self._object(self.request("GET", path))

    @staticmethod
    def _object(response: APIResponse) -> dict[str, Any]:
        return dict(response.data) if isinstance(response.data, dict) else {}
