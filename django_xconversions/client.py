"""XAdsClient: the X Ads API over one pooled requests Session.

Authentication is OAuth 1.0a user context (HMAC-SHA1, requests-oauthlib) or, for the
conversions endpoint, a pixel's ``X-Pixel-Token``. JSON bodies go with ``json=`` so only
the method, URL, query and oauth_* parameters are signed, as X requires; tag create and
update take their parameters in the query string. Non-2xx answers raise the typed errors of
errors.py carrying X's message. Request bodies hold hashed identifiers and are never logged;
neither are tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth1

from django_xconversions import errors
from django_xconversions.conf import xsettings
from django_xconversions.errors import APIErrorDetail, ImproperlyConfiguredAccount
from django_xconversions.payload import MAX_EVENTS_PER_REQUEST, MSG_COUNT_LIMIT
from django_xconversions.ratelimit import RateLimit, parse_rate_limit, parse_retry_after

logger = logging.getLogger("django_xconversions.client")

POOL_SIZE = 10
PAGE_SIZE_MAX = 1000


@dataclass(frozen=True)
class APIResponse:
    data: Any
    status: int
    rate_limit: RateLimit | None
    body: Mapping[str, Any]


@dataclass(frozen=True)
class ConversionsResult:
    conversions_processed: int
    debug_id: str | None
    rate_limit: RateLimit | None


def _query_value(value: Any) -> Any:
    # X expects lower-case booleans in query strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class XAdsClient:
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
        # None means "read XCONVERSIONS at call time", so settings changes are seen.
        self._consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self._access_token = access_token
        self._access_token_secret = access_token_secret
        self._pixel_token = pixel_token
        self._base_url = base_url
        self._api_version = api_version
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self.session = session or self._new_session()
        self.last_rate_limit: RateLimit | None = None

    def __repr__(self) -> str:
        return f"<XAdsClient {self.base_url} v{self.api_version}>"

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> XAdsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- configuration read at call time ------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self._base_url or xsettings.API_BASE_URL).rstrip("/")

    @property
    def api_version(self) -> str:
        return str(self._api_version or xsettings.API_VERSION)

    @property
    def timeout(self) -> tuple[float, float]:
        return (
            float(self._connect_timeout or xsettings.CONNECT_TIMEOUT),
            float(self._read_timeout or xsettings.READ_TIMEOUT),
        )

    def _oauth(self) -> OAuth1:
        consumer_key = self._consumer_key or xsettings.CONSUMER_KEY
        consumer_secret = self._consumer_secret or xsettings.CONSUMER_SECRET
        missing = [
            name
            for name, value in (
                ('XCONVERSIONS["CONSUMER_KEY"]', consumer_key),
                ('XCONVERSIONS["CONSUMER_SECRET"]', consumer_secret),
                ("the account's access token", self._access_token),
                ("the account's access token secret", self._access_token_secret),
            )
            if not value
        ]
        if missing:
            raise ImproperlyConfiguredAccount(
                f"OAuth 1.0a needs {', '.join(missing)} (or a pixel token to send conversions)."
            )
        return OAuth1(
            consumer_key,
            client_secret=consumer_secret,
            resource_owner_key=self._access_token,
            resource_owner_secret=self._access_token_secret,
            signature_method="HMAC-SHA1",
        )

    # -- transport ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base_url}/{self.api_version}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        pixel_token: str | None = None,
    ) -> APIResponse:
        headers = {"User-Agent": str(xsettings.USER_AGENT)}
        auth: OAuth1 | None = None
        if pixel_token:
            headers["X-Pixel-Token"] = pixel_token
        else:
            auth = self._oauth()
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        url = self.url(path)
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=query or None,
                json=json_body,
                headers=headers,
                auth=auth,
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            raise errors.RequestTimeout(
                f"No answer from X within {self.timeout[1]:g} s ({method} {urlsplit(url).path})"
            ) from exc
        except requests.RequestException as exc:
            raise errors.TransportError(
                f"Could not reach X ({method} {urlsplit(url).path}): {type(exc).__name__}"
            ) from exc
        duration = time.monotonic() - started
        logger.debug(
            "%s %s -> %s in %.3fs", method, urlsplit(url).path, response.status_code, duration
        )
        return self._handle(response)

    def _handle(self, response: requests.Response) -> APIResponse:
        rate_limit = parse_rate_limit(response.headers)
        self.last_rate_limit = rate_limit
        warning = response.headers.get("x-api-warn")
        if warning:
            logger.warning("X API warning for %s: %s", urlsplit(response.url).path, warning)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok:
            body = body if isinstance(body, dict) else {}
            return APIResponse(body.get("data"), response.status_code, rate_limit, body)
        raise self._error(response, body, rate_limit)

    @staticmethod
    def _error(
        response: requests.Response, body: Any, rate_limit: RateLimit | None
    ) -> errors.XAdsError:
        status = response.status_code
        details = tuple(
            APIErrorDetail(
                code=str(item.get("code") or ""),
                message=str(item.get("message") or ""),
                parameter=item.get("parameter"),
            )
            for item in (body.get("errors") or [] if isinstance(body, dict) else [])
            if isinstance(item, dict)
        )
        first = details[0] if details else None
        message = first.message if first else f"HTTP {status} from X (non-JSON body)"
        kwargs: dict[str, Any] = {
            "status": status,
            "code": first.code if first else None,
            "parameter": first.parameter if first else None,
            "errors": details,
            "response": response,
            "retry_after": parse_retry_after(response.headers.get("retry-after")),
            "rate_limit": rate_limit,
        }
        cls = errors.error_class_for_status(status)
        if cls is errors.RateLimited:
            return errors.RateLimited(
                message, reset_at=rate_limit.reset_at if rate_limit else None, **kwargs
            )
        return cls(message, **kwargs)

    def _paged(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = self.request("GET", path, params={**params, "cursor": cursor})
            yield from page.data or []
            cursor = page.body.get("next_cursor")
            if not cursor:
                return

    # -- endpoints ---------------------------------------------------------------------------

    def send_conversions(
        self, pixel_id: str, conversions: list[dict[str, Any]]
    ) -> ConversionsResult:
        """POST measurement/conversions/:pixel_id with 1 to 500 events."""
        if len(conversions) > MAX_EVENTS_PER_REQUEST:
            raise ValueError(MSG_COUNT_LIMIT)
        result = self.request(
            "POST",
            f"measurement/conversions/{pixel_id}",
            json_body={"conversions": conversions},
            pixel_token=self._pixel_token,
        )
        data = result.data or {}
        return ConversionsResult(
            conversions_processed=int(data.get("conversions_processed", 0)),
            debug_id=data.get("debug_id"),
            rate_limit=result.rate_limit,
        )

    def iter_web_event_tags(
        self,
        account_id: str,
        *,
        with_deleted: bool = False,
        count: int = PAGE_SIZE_MAX,
        web_event_tag_ids: list[str] | None = None,
        sort_by: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        params = {
            "count": count,
            "with_deleted": with_deleted,
            "sort_by": sort_by,
            "web_event_tag_ids": ",".join(web_event_tag_ids) if web_event_tag_ids else None,
        }
        return self._paged(f"accounts/{account_id}/web_event_tags", params)

    def get_web_event_tag(
        self, account_id: str, tag_id: str, *, with_deleted: bool = False
    ) -> dict[str, Any]:
        path = f"accounts/{account_id}/web_event_tags/{tag_id}"
        data: dict[str, Any] = self.request("GET", path, params={"with_deleted": with_deleted}).data
        return data

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
        data: dict[str, Any] = self.request(
            "POST", f"accounts/{account_id}/web_event_tags", params=params
        ).data
        return data

    def update_web_event_tag(self, account_id: str, tag_id: str, **changes: Any) -> dict[str, Any]:
        """PUT only the given fields (X leaves the others as they are)."""
        path = f"accounts/{account_id}/web_event_tags/{tag_id}"
        data: dict[str, Any] = self.request("PUT", path, params=changes).data
        return data

    def delete_web_event_tag(self, account_id: str, tag_id: str) -> dict[str, Any]:
        path = f"accounts/{account_id}/web_event_tags/{tag_id}"
        data: dict[str, Any] = self.request("DELETE", path).data
        return data

    def iter_accounts(self, *, count: int = PAGE_SIZE_MAX) -> Iterator[dict[str, Any]]:
        return self._paged("accounts", {"count": count})

    def authenticated_user_access(self, account_id: str) -> dict[str, Any]:
        """The token's user id and permissions on the account."""
        path = f"accounts/{account_id}/authenticated_user_access"
        data: dict[str, Any] = self.request("GET", path).data
        return data
