"""XAdsClient over real HTTP on 127.0.0.1 against the emulator, plus header parsing.

A few answers the emulator never gives (an HTML 404, a redirect, a repeated cursor) come
from a canned Session handed to the client, the same way a caller may hand in its own.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import override_settings
from requests.structures import CaseInsensitiveDict

from django_xconversions import errors
from django_xconversions.client import PAGE_SIZE_MAX, EventJSON, XAdsClient
from django_xconversions.emulator import EmulatorServer
from django_xconversions.errors import ImproperlyConfiguredAccount
from django_xconversions.ratelimit import (
    RateLimit,
    parse_rate_limit,
    parse_retry_after,
    rate_limited_until,
)

from .conftest import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    ACCOUNT_ID,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    PIXEL_ID,
    USER_ID,
)

PIXEL_TOKEN = "px-token-0f9e8d7c6b5a"
# SHA-256 of test-email@test.com (X's test vector): request bodies must never be logged.
HASHED_EMAIL = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"
NOT_AUTHENTICATED = "This request is not properly authenticated"


def conversion(event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "conversion_time": "2022-02-18T01:14:00.603Z",
        "event_id": event_id,
        "identifiers": [{"hashed_email": HASHED_EMAIL}],
        "conversion_id": "order-1",
        **fields,
    }


@pytest.fixture
def xads_client(emulator: EmulatorServer) -> Iterator[XAdsClient]:
    with XAdsClient(access_token=ACCESS_TOKEN, access_token_secret=ACCESS_TOKEN_SECRET) as c:
        yield c


@pytest.fixture
def event_id(emulator: EmulatorServer) -> str:
    return str(emulator.add_tag(ACCOUNT_ID, name="Purchase", type="PURCHASE")["website_tag_id"])


class CannedSession(requests.Session):
    """Answers each request with the next canned response and records what was asked."""

    def __init__(self, *responses: requests.Response) -> None:
        super().__init__()
        self.responses = list(responses)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = False

    def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls.append((str(method), str(url), kwargs))
        return self.responses.pop(0)

    def close(self) -> None:
        self.closed = True
        super().close()


def canned(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    is_text = isinstance(body, str)
    response._content = body.encode() if is_text else json.dumps(body).encode()
    content_type = "text/html" if is_text else "application/json"
    response.headers = CaseInsensitiveDict({"content-type": content_type, **(headers or {})})
    return response


def canned_client(*responses: requests.Response) -> tuple[XAdsClient, CannedSession]:
    session = CannedSession(*responses)
    client = XAdsClient(
        consumer_key="k",
        consumer_secret="s",
        access_token="t",
        access_token_secret="ts",
        base_url="https://ads-api.example",
        session=session,
    )
    return client, session


# -- authentication ------------------------------------------------------------------------


def test_signed_request_is_accepted(
    xads_client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    result = xads_client.send_conversions(PIXEL_ID, [conversion(event_id)])
    assert result.conversions_processed == 1 and result.debug_id
    assert [r["conversion"]["conversion_id"] for r in emulator.received] == ["order-1"]
    sent = emulator.requests[-1]
    assert sent["auth"] == "oauth" and sent["status"] == 200
    # JSON body (so it is not part of the signature), never a form body.
    assert sent["content_type"].startswith("application/json") and sent["body_length"] > 0


def test_wrong_consumer_secret_is_unauthorized(emulator: EmulatorServer, event_id: str) -> None:
    client = XAdsClient(
        consumer_secret="not-the-secret",
        access_token=ACCESS_TOKEN,
        access_token_secret=ACCESS_TOKEN_SECRET,
    )
    with pytest.raises(errors.Unauthorized) as info:
        client.send_conversions(PIXEL_ID, [conversion(event_id)])
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED_ACCESS"
    assert str(info.value) == f"{NOT_AUTHENTICATED} (HTTP 401, UNAUTHORIZED_ACCESS)"
    assert emulator.received == []


def test_pixel_token_replaces_oauth_for_conversions_only(
    emulator: EmulatorServer, event_id: str
) -> None:
    emulator.add_pixel(ACCOUNT_ID, "p1x3l", pixel_token=PIXEL_TOKEN)
    client = XAdsClient(
        access_token=ACCESS_TOKEN, access_token_secret=ACCESS_TOKEN_SECRET, pixel_token=PIXEL_TOKEN
    )
    assert client.send_conversions("p1x3l", [conversion(event_id)]).conversions_processed == 1
    assert emulator.requests[-1]["auth"] == "pixel_token"
    # Everything but conversions still needs OAuth.
    assert client.authenticated_user_access(ACCOUNT_ID)["permissions"] == ["ACCOUNT_ADMIN"]
    assert emulator.requests[-1]["auth"] == "oauth"
    # A pixel token alone is enough to send, and a wrong one is refused.
    assert XAdsClient(pixel_token=PIXEL_TOKEN).send_conversions("p1x3l", [conversion(event_id)])
    with pytest.raises(errors.Unauthorized, match=NOT_AUTHENTICATED):
        XAdsClient(pixel_token="wrong").send_conversions("p1x3l", [conversion(event_id)])


def test_missing_credentials_are_named_before_any_request(
    settings: Any, emulator: EmulatorServer, event_id: str
) -> None:
    with pytest.raises(ImproperlyConfiguredAccount) as info:
        XAdsClient().send_conversions(PIXEL_ID, [conversion(event_id)])
    assert str(info.value) == (
        "access_token and access_token_secret (or a pixel token) are required to send conversions"
    )
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "CONSUMER_SECRET": ""}
    tokens_only = XAdsClient(access_token=ACCESS_TOKEN, access_token_secret=ACCESS_TOKEN_SECRET)
    with pytest.raises(ImproperlyConfiguredAccount) as info:
        tokens_only.authenticated_user_access(ACCOUNT_ID)
    assert str(info.value) == (
        f'XCONVERSIONS["CONSUMER_SECRET"] is required to call '
        f"GET /12/accounts/{ACCOUNT_ID}/authenticated_user_access"
    )
    assert emulator.requests == []


# -- errors --------------------------------------------------------------------------------


def test_bad_request_shows_x_messages(xads_client: XAdsClient, event_id: str) -> None:
    events = [
        conversion(event_id, identifiers=[{"hashed_email": "abc"}]),
        conversion(event_id, identifiers=[{"hashed_email": "def"}]),
    ]
    with pytest.raises(errors.BadRequest) as info:
        xads_client.send_conversions(PIXEL_ID, events)
    exc = info.value
    assert (exc.status, exc.code, exc.parameter) == (400, "INVALID_PARAMETER", "hashed_email")
    assert exc.message == "hashed_email (abc) is not a valid SHA-256 hash"
    assert [e.message for e in exc.errors] == [
        "hashed_email (abc) is not a valid SHA-256 hash",
        "hashed_email (def) is not a valid SHA-256 hash",
    ]
    assert str(exc).startswith("hashed_email (abc) is not a valid SHA-256 hash; hashed_email (def)")
    assert exc.rate_limit is not None and exc.rate_limit.scope == "account"


def test_501_events_are_refused_before_any_request(
    xads_client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    with pytest.raises(ValueError, match=r"^Conversion count limit is 500$"):
        xads_client.send_conversions(PIXEL_ID, [conversion(event_id)] * 501)
    with pytest.raises(ValueError):
        xads_client.send_conversions(PIXEL_ID, [])
    assert emulator.requests == []
    full = xads_client.send_conversions(PIXEL_ID, [conversion(event_id)] * 500)
    assert full.conversions_processed


def test_non_json_error_body_is_decided_by_status() -> None:
    client, _ = canned_client(canned(404, "<html><body>Sorry, that page does not exist</body>"))
    with pytest.raises(errors.NotFound) as info:
        client.authenticated_user_access(ACCOUNT_ID)
    assert info.value.message == "HTTP 404 from X (non-JSON body)"
    assert info.value.code is None and info.value.errors == ()
    assert "Sorry" in info.value.body


def test_redirects_are_not_followed() -> None:
    moved = canned(301, "", {"location": "https://ads-api.x.com/12/accounts"})
    client, session = canned_client(moved)
    with pytest.raises(errors.XAdsError, match=r'point XCONVERSIONS\["API_BASE_URL"\]'):
        list(client.iter_accounts())
    assert session.calls[0][2]["allow_redirects"] is False


def test_429_is_rate_limited_until_the_reset(
    xads_client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    emulator.faults.rate_limit_reset_seconds = 30
    emulator.faults.script(["429"])
    before = time.time()
    with pytest.raises(errors.RateLimited) as info:
        xads_client.send_conversions(PIXEL_ID, [conversion(event_id)])
    exc = info.value
    assert exc.status == 429 and exc.code == "TOO_MANY_REQUESTS"
    assert exc.reset_at is not None and before + 28 <= exc.reset_at <= time.time() + 31
    assert exc.retry_after is not None and 27 <= exc.retry_after <= 31
    assert xads_client.last_rate_limit == exc.rate_limit and exc.rate_limit is not None
    assert exc.rate_limit.remaining == 0


def test_503_is_a_server_error_with_retry_after(
    xads_client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    emulator.faults.retry_after_seconds = 7
    emulator.faults.script(["503", "500"])
    with pytest.raises(errors.ServerError) as info:
        xads_client.send_conversions(PIXEL_ID, [conversion(event_id)])
    assert (info.value.status, info.value.retry_after) == (503, 7.0)
    assert info.value.code == "SERVICE_UNAVAILABLE"
    with pytest.raises(errors.ServerError) as info:
        xads_client.send_conversions(PIXEL_ID, [conversion(event_id)])
    assert (info.value.status, info.value.retry_after) == (500, None)


def test_timeout_is_request_timeout(emulator: EmulatorServer, event_id: str) -> None:
    emulator.faults.slow_seconds = 1.0
    emulator.faults.script(["timeout"])
    client = XAdsClient(
        access_token=ACCESS_TOKEN, access_token_secret=ACCESS_TOKEN_SECRET, read_timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(
        errors.RequestTimeout, match=r"No answer from 127\.0\.0\.1:\d+ within 0.3 s"
    ):
        client.send_conversions(PIXEL_ID, [conversion(event_id)])
    assert time.monotonic() - started < 0.9


def test_reset_and_refused_connections_are_transport_errors(
    xads_client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    emulator.faults.script(["reset"])
    with pytest.raises(errors.TransportError) as info:
        xads_client.send_conversions(PIXEL_ID, [conversion(event_id)])
    assert not isinstance(info.value, errors.RequestTimeout)
    assert "reset" in str(info.value).lower() and "/measurement/conversions/" in str(info.value)
    # The pool drops the broken connection: the next call works.
    assert xads_client.send_conversions(PIXEL_ID, [conversion(event_id)]).conversions_processed == 1

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nobody = XAdsClient(
        access_token=ACCESS_TOKEN,
        access_token_secret=ACCESS_TOKEN_SECRET,
        base_url=f"http://127.0.0.1:{closed_port}",
    )
    with pytest.raises(errors.TransportError, match="Connection refused"):
        nobody.authenticated_user_access(ACCOUNT_ID)


# -- rate-limit headers --------------------------------------------------------------------


def test_account_level_rate_limit_wins(
    xads_client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    emulator.set_budget(1000, 60)
    result = xads_client.send_conversions(PIXEL_ID, [conversion(event_id)] * 3)
    assert emulator.requests[-1]["events"] == 3
    # The emulator sends both scopes here, as X does.
    assert result.rate_limit is not None and result.rate_limit.scope == "account"
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (1000, 997)
    assert xads_client.last_rate_limit == result.rate_limit
    xads_client.authenticated_user_access(ACCOUNT_ID)  # user-level headers only
    assert xads_client.last_rate_limit is not None and xads_client.last_rate_limit.scope == "user"


def test_rate_limit_parser() -> None:
    both = {
        "X-Rate-Limit-Limit": "450",
        "X-Rate-Limit-Remaining": "449",
        "X-Rate-Limit-Reset": "1700000900",
        "x-account-rate-limit-limit": "60000",
        "x-account-rate-limit-remaining": "12",
        "x-account-rate-limit-reset": "1700000500",
    }
    assert parse_rate_limit(both) == RateLimit(60000, 12, 1700000500.0, "account")
    user_only = {k: v for k, v in both.items() if not k.startswith("x-account")}
    assert parse_rate_limit(user_only) == RateLimit(450, 449, 1700000900.0, "user")
    assert parse_rate_limit({"x-rate-limit-limit": "lots"}) is None
    assert parse_rate_limit({}) is None


def test_rate_limited_until_waits_for_the_used_up_scope() -> None:
    user_spent = {
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": "2000",
        "x-account-rate-limit-remaining": "40",
        "x-account-rate-limit-reset": "1500",
    }
    assert rate_limited_until(user_spent, now=1000) == 2000
    neither = {**user_spent, "x-rate-limit-remaining": "3"}
    assert rate_limited_until(neither, now=1000) == 1500  # the account scope binds
    assert rate_limited_until({**neither, "Retry-After": "900"}, now=1000) == 1900
    assert rate_limited_until({"retry-after": "5"}, now=1000) == 1005
    assert rate_limited_until({}, now=1000) is None


def test_retry_after_parser() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=500.0) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after("-3") is None
    assert parse_retry_after(None) is None


# -- logging -------------------------------------------------------------------------------


def test_api_warn_is_logged_and_no_secret_ever_is(
    emulator: EmulatorServer, event_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_pixel(ACCOUNT_ID, "p1x3l", pixel_token=PIXEL_TOKEN)
    caplog.set_level(logging.DEBUG)  # every logger, third-party ones included
    oauth = XAdsClient(
        access_token=ACCESS_TOKEN, access_token_secret=ACCESS_TOKEN_SECRET, api_version="11"
    )
    oauth.send_conversions(PIXEL_ID, [conversion(event_id)])
    oauth.create_web_event_tag(
        ACCOUNT_ID,
        name="Lead",
        type="SIGN_UP",
        click_window=30,
        view_through_window=1,
        retargeting_enabled=True,
    )
    XAdsClient(pixel_token=PIXEL_TOKEN).send_conversions("p1x3l", [conversion(event_id)])

    ours = [r for r in caplog.records if r.name == "django_xconversions.client"]
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "Version 11 of the Ads API" in warnings[0]
    assert any(
        r.levelno == logging.DEBUG
        and r.getMessage().startswith(f"POST /11/measurement/conversions/{PIXEL_ID} -> 200 in ")
        for r in ours
    )
    logged = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    for secret in (
        CONSUMER_SECRET,
        ACCESS_TOKEN,
        ACCESS_TOKEN_SECRET,
        PIXEL_TOKEN,
        HASHED_EMAIL,
        "oauth_signature",
    ):
        assert secret not in logged


# -- web event tags and accounts ----------------------------------------------------------


def test_paging_2500_tags_takes_exactly_3_requests(
    xads_client: XAdsClient, emulator: EmulatorServer
) -> None:
    created = {emulator.add_tag(ACCOUNT_ID, name=f"Tag {n}")["id"] for n in range(2500)}
    seen = [tag["id"] for tag in xads_client.iter_web_event_tags(ACCOUNT_ID, count=1000)]
    assert len(seen) == 2500 and set(seen) == created
    pages = emulator.requests
    assert len(pages) == 3
    assert all(p["path"] == f"/12/accounts/{ACCOUNT_ID}/web_event_tags" for p in pages)
    assert all(p["query"]["count"] == "1000" for p in pages)
    cursors = [p["query"].get("cursor") for p in pages]
    assert cursors[0] is None and cursors[1] and cursors[2] and cursors[1] != cursors[2]
    assert all(p["query"]["with_deleted"] == "false" for p in pages)


def test_paging_stops_on_a_repeated_cursor() -> None:
    page = {"data": [{"id": "a"}], "next_cursor": "c1", "request": {"params": {}}}
    client, session = canned_client(canned(200, page), canned(200, page))
    with pytest.raises(errors.XAdsError, match="same cursor twice"):
        list(client.iter_web_event_tags(ACCOUNT_ID))
    assert session.calls[1][2]["params"]["cursor"] == "c1"
    with pytest.raises(ValueError):
        client.iter_web_event_tags(ACCOUNT_ID, count=PAGE_SIZE_MAX + 1)


def test_tag_writes_go_through_the_query_string(
    xads_client: XAdsClient, emulator: EmulatorServer
) -> None:
    tag = xads_client.create_web_event_tag(
        ACCOUNT_ID,
        name="Lead",
        type="SIGN_UP",
        click_window=30,
        view_through_window=1,
        retargeting_enabled=False,
    )
    created = emulator.requests[-1]
    assert created["method"] == "POST" and created["body_length"] == 0
    assert "form" not in created["content_type"]
    assert created["query"] == {
        "name": "Lead",
        "type": "SIGN_UP",
        "click_window": "30",
        "view_through_window": "1",
        "retargeting_enabled": "false",
    }

    updated = xads_client.update_web_event_tag(ACCOUNT_ID, tag["id"], retargeting_enabled=True)
    put = emulator.requests[-1]
    assert put["method"] == "PUT" and put["body_length"] == 0
    assert put["query"] == {"retargeting_enabled": "true"}  # only what was given
    assert updated["retargeting_enabled"] is True and updated["click_window"] == 30

    assert xads_client.delete_web_event_tag(ACCOUNT_ID, tag["id"])["deleted"] is True
    assert emulator.requests[-1]["method"] == "DELETE"
    with pytest.raises(errors.NotFound):
        xads_client.get_web_event_tag(ACCOUNT_ID, tag["id"])
    deleted = xads_client.get_web_event_tag(ACCOUNT_ID, tag["id"], with_deleted=True)
    assert deleted["deleted"] is True
    assert emulator.requests[-1]["query"] == {"with_deleted": "true"}


def test_tag_validation_errors_carry_x_message(xads_client: XAdsClient) -> None:
    with pytest.raises(errors.BadRequest) as info:
        xads_client.create_web_event_tag(
            ACCOUNT_ID,
            name="x",
            type="PURCHASE",
            click_window=1,
            view_through_window=7,
            retargeting_enabled=True,
        )
    assert info.value.message == "view_through_window must be less than or equal to click_window"


def test_accounts_and_user_access(xads_client: XAdsClient) -> None:
    assert xads_client.authenticated_user_access(ACCOUNT_ID) == {
        "user_id": USER_ID,
        "permissions": ["ACCOUNT_ADMIN"],
    }
    assert [a["id"] for a in xads_client.iter_accounts()] == [ACCOUNT_ID]
    with pytest.raises(errors.NotFound, match="does not have access to account 18ce00000"):
        xads_client.authenticated_user_access("18ce00000")


# -- configuration and connections --------------------------------------------------------


def test_base_url_and_version_are_read_at_call_time(
    settings: Any, xads_client: XAdsClient, emulator: EmulatorServer
) -> None:
    with EmulatorServer() as other:
        other.add_app(CONSUMER_KEY, CONSUMER_SECRET)
        other.add_user(USER_ID, ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
        other.add_account(ACCOUNT_ID, users={USER_ID: ["AD_MANAGER"]})
        moved = {**settings.XCONVERSIONS, "API_BASE_URL": other.url, "API_VERSION": "11"}
        with override_settings(XCONVERSIONS=moved):
            # Signed for the new URL, too: the other emulator accepts it.
            access = xads_client.authenticated_user_access(ACCOUNT_ID)
            assert access["permissions"] == ["AD_MANAGER"]
            assert [r["path"] for r in other.requests] == [
                f"/11/accounts/{ACCOUNT_ID}/authenticated_user_access"
            ]
        assert emulator.requests == []
        xads_client.authenticated_user_access(ACCOUNT_ID)  # back to the settings of the fixture
        assert emulator.requests[-1]["path"].startswith("/12/")


def test_explicit_arguments_win_over_settings(emulator: EmulatorServer, settings: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_BASE_URL": "http://127.0.0.1:9"}
    client = XAdsClient(
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        access_token=ACCESS_TOKEN,
        access_token_secret=ACCESS_TOKEN_SECRET,
        base_url=emulator.url + "/",
        api_version="12",
    )
    assert client.authenticated_user_access(ACCOUNT_ID)["permissions"] == ["ACCOUNT_ADMIN"]


def test_a_misspelt_transport_option_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'read_timout'"):
        XAdsClient(pixel_token=PIXEL_TOKEN, read_timout=1.0)  # type: ignore[call-arg]


def test_one_pooled_connection_serves_every_call(
    xads_client: XAdsClient, emulator: EmulatorServer, event_id: str
) -> None:
    xads_client.authenticated_user_access(ACCOUNT_ID)
    xads_client.send_conversions(PIXEL_ID, [conversion(event_id)])
    list(xads_client.iter_web_event_tags(ACCOUNT_ID))
    adapter = xads_client.session.get_adapter(emulator.url)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    # The pool container refuses plain iteration; keys() is its thread-safe snapshot.
    pools = [adapter.poolmanager.pools[key] for key in adapter.poolmanager.pools.keys()]  # noqa: SIM118
    assert [(p.num_connections, p.num_requests) for p in pools] == [(1, 3)]


def test_a_session_handed_in_is_used_and_left_open() -> None:
    body = {"data": {"user_id": "1", "permissions": ["AD_MANAGER"]}, "request": {}}
    client, session = canned_client(canned(200, body))
    with client:
        assert client.authenticated_user_access("acc")["permissions"] == ["AD_MANAGER"]
    method, url, kwargs = session.calls[0]
    assert (method, url) == (
        "GET",
        "https://ads-api.example/12/accounts/acc/authenticated_user_access",
    )
    assert kwargs["timeout"] == (5.0, 30.0) and kwargs.get("data") is None
    assert not session.closed


HOSTILE_EVENT = {
    "conversion_time": "2022-02-18T01:14:00.603Z",
    "event_id": "o87ne",
    "identifiers": [
        {"twclid": 'a"b\\c'},
        {"ip_address": "::1", "user_agent": "\u00e9\u202e\x00\n"},
    ],
    "conversion_id": "\U0001f600" * 64 + "\ud800",
    "value": "99999999999999.9999",
    "description": "</script>'\t" * 100,
    "contents": [{"content_price": 1e308, "num_items": 2**62, "content_name": None}],
}


def test_a_json_body_is_sent_compact_as_json_before_signing() -> None:
    client, session = canned_client(canned(200, {"data": {"conversions_processed": 1}}))
    client.send_conversions("px1", [HOSTILE_EVENT])
    _, _, kwargs = session.calls[0]
    # The content type is set before requests-oauthlib signs: a body without it would be
    # signed as a form.
    assert kwargs["headers"]["Content-Type"] == "application/json"
    body = kwargs["data"]
    assert isinstance(body, bytes) and body.isascii() and b", " not in body[:40]
    # What requests' json= sent before, value for value.
    assert json.loads(body) == json.loads(json.dumps({"conversions": [HOSTILE_EVENT]}))


def test_events_written_as_json_text_go_in_as_they_are(
    xads_client: XAdsClient, emulator: EmulatorServer, event_id: str
) -> None:
    first, second = conversion(event_id, conversion_id="o-1"), conversion(event_id)
    text = EventJSON(json.dumps(first, separators=(",", ":")))
    # Signed and accepted as any JSON body is; a dict beside the text is serialised.
    assert xads_client.send_conversions(PIXEL_ID, [text, second]).conversions_processed == 2
    assert emulator.requests[-1]["auth"] == "oauth"
    client, session = canned_client(canned(200, {"data": {"conversions_processed": 2}}))
    client.send_conversions("px1", [text, second])
    _, _, kwargs = session.calls[0]
    assert kwargs["headers"]["Content-Type"] == "application/json"
    assert json.loads(kwargs["data"]) == {"conversions": [first, second]}
    assert kwargs["data"].startswith(b'{"conversions":[' + text.encode() + b",")


def test_a_body_json_cannot_carry_is_refused_as_requests_refuses_it() -> None:
    client, session = canned_client(canned(200, {"data": {}}))
    with pytest.raises(errors.TransportError, match="InvalidJSONError"):
        client.request("POST", "anything", json_body={"price": float("nan")})
    assert session.calls == []
