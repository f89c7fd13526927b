"""XAdsClient: the X Ads API endpoints the product calls, with one account's credentials.

Conversions go with the pixel's ``X-Pixel-Token`` when the client has one, else OAuth
1.0a user context; everything else needs OAuth. Tag create and update take their
parameters in the query string, as X wants. Sending is transport.py's job.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import requests
from requests.auth import AuthBase

from django_xconversions import errors
from django_xconversions.client.signing import OAuth1Signer, hmac_sha1_signer
from django_xconversions.client.transport import (
    APIResponse,
    EventJSON,
    Transport,
    TransportOptions,
    json_text,
)
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.errors import ImproperlyConfiguredAccount
from django_xconversions.payload import MAX_EVENTS_PER_REQUEST, MSG_COUNT_LIMIT
from django_xconversions.ratelimit import RateLimit

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["PAGE_SIZE_MAX", "TAG_IDS_MAX", "ConversionsResult", "XAdsClient"]

# X's maximum ``count`` for collections, and of ``web_event_tag_ids`` per request.
PAGE_SIZE_MAX = 1000
TAG_IDS_MAX = 200


@dataclass(frozen=True)
class ConversionsResult:
    conversions_processed: int
    debug_id: str | None
    rate_limit: RateLimit | None


def _enumerate(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _object(response: APIResponse) -> dict[str, Any]:
    return dict(response.data) if isinstance(response.data, dict) else {}


def _conversions_body(conversions: Sequence[Mapping[str, Any] | EventJSON]) -> bytes:
    """The request's JSON: events given as dicts serialised (a dict needs no copy), events
    given as EventJSON put in as they are."""
    if not any(isinstance(c, EventJSON) for c in conversions):
        return json_text({"conversions": [_as_dict(c) for c in conversions]})
    events = ",".join(
        c if isinstance(c, EventJSON) else json_text(_as_dict(c)).decode() for c in conversions
    )
    return f'{{"conversions":[{events}]}}'.encode()


def _as_dict(event: Mapping[str, Any] | EventJSON) -> dict[str, Any]:
    return event if isinstance(event, dict) else dict(cast("Mapping[str, Any]", event))


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
        **transport: Unpack[TransportOptions],
    ) -> None:
        self._consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self._access_token = access_token
        self._access_token_secret = access_token_secret
        self._pixel_token = pixel_token
        self.transport = Transport(**transport)

    def __repr__(self) -> str:
        auth = "pixel token" if self._pixel_token else "OAuth 1.0a"
        return f"<XAdsClient {self.base_url}/{self.api_version} ({auth})>"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> XAdsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what the transport knows, read at call time --------------------------------------

    @property
    def session(self) -> requests.Session:
        return self.transport.session

    @property
    def last_rate_limit(self) -> RateLimit | None:
        return self.transport.last_rate_limit

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    @property
    def api_version(self) -> str:
        return self.transport.api_version

    @property
    def timeout(self) -> tuple[float, float]:
        return self.transport.timeout

    @property
    def uses_pixel_token(self) -> bool:
        return bool(self._pixel_token)

    def url(self, path: str) -> str:
        return self.transport.url(path)

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
        access_token, token_secret = self._access_token, self._access_token_secret
        if access_token and token_secret and not missing:
            return hmac_sha1_signer(consumer_key, consumer_secret, access_token, token_secret)
        if not (access_token and token_secret):
            missing.append("access_token and access_token_secret")
        alternative = " (or a pixel token)" if pixel_token_would_do else ""
        verb = "is" if len(missing) == 1 and " and " not in missing[0] else "are"
        raise ImproperlyConfiguredAccount(
            f"{_enumerate(missing)}{alternative} {verb} required to {purpose}"
        )

    # -- any call --------------------------------------------------------------------------

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
        return self.transport.send(method, path, params=params, json_body=json_body, auth=auth)

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

    # -- conversions -----------------------------------------------------------------------

    def send_conversions(
        self, pixel_id: str, conversions: Sequence[Mapping[str, Any] | EventJSON]
    ) -> ConversionsResult:
        """POST measurement/conversions/:pixel_id with 1 to 500 events (all or nothing),
        each a dict or its JSON text (EventJSON)."""
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
        result = self.transport.send(
            "POST", path, body=_conversions_body(conversions), auth=auth, headers=headers
        )
        data = result.data if isinstance(result.data, dict) else {}
        return ConversionsResult(
            conversions_processed=int(data.get("conversions_processed") or 0),
            debug_id=result.debug_id,
            rate_limit=result.rate_limit,
        )

    # -- web event tags --------------------------------------------------------------------

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
        return _object(self.request("GET", path, params={"with_deleted": with_deleted}))

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
        return _object(self.request("POST", self._tags_path(account_id), params=params))

    def update_web_event_tag(self, account_id: str, tag_id: str, **changes: Any) -> dict[str, Any]:
        """PUT only the given fields (X leaves the others as they are)."""
        if not any(v is not None for v in changes.values()):
            raise ValueError("update_web_event_tag needs at least one field to change")
        path = self._tags_path(account_id, tag_id)
        return _object(self.request("PUT", path, params=changes))

    def delete_web_event_tag(self, account_id: str, tag_id: str) -> dict[str, Any]:
        """Returns the tag with ``"deleted": true``."""
        return _object(self.request("DELETE", self._tags_path(account_id, tag_id)))

    # -- accounts --------------------------------------------------------------------------

    def iter_accounts(self, *, count: int = PAGE_SIZE_MAX) -> Iterator[dict[str, Any]]:
        """Every ads account the access token's user can reach."""
        if not 1 <= count <= PAGE_SIZE_MAX:
            raise ValueError(f"count must be between 1 and {PAGE_SIZE_MAX}")
        return self._paged("accounts", {"count": count})

    def authenticated_user_access(self, account_id: str) -> dict[str, Any]:
        """``{"user_id": ..., "permissions": [...]}`` of the token's user on the account."""
        path = f"accounts/{_segment(account_id)}/authenticated_user_access"
        return _object(self.request("GET", path))
