"""XAdsClient against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from django_xconversions import errors
from django_xconversions.client import XAdsClient
from django_xconversions.emulator import EmulatorServer
from django_xconversions.errors import ImproperlyConfiguredAccount
from django_xconversions.ratelimit import parse_rate_limit, parse_retry_after

from .conftest import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, ACCOUNT_ID, PIXEL_ID, configure

TWCLID_EVENT = {
    "conversion_time": "2022-02-18T01:14:00.603Z",
    "identifiers": [{"twclid": "23opevjt88psuo13lu8d020qkn"}],
    "conversion_id": "c-1",
}


@pytest.fixture
def client(emulator: EmulatorServer) -> XAdsClient:
    return XAdsClient(access_token=ACCESS_TOKEN, access_token_secret=ACCESS_TOKEN_SECRET)


@pytest.fixture
def event_id(emulator: EmulatorServer) -> str:
    return str(emulator.add_tag(ACCOUNT_ID, name="Purchase", type="PURCHASE")["website_tag_id"])


def test_signed_request_is_accepted(
    client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    result = client.send_conversions(PIXEL_ID, [{**TWCLID_EVENT, "event_id": event_id}])
    assert result.conversions_processed == 1 and result.debug_id
    assert emulator.requests[-1]["auth"] == "oauth"
    assert emulator.requests[-1]["content_type"].startswith("application/json")


def test_wrong_consumer_secret_gets_401(settings: Any, client: XAdsClient, event_id: str) -> None:
    configure(settings, CONSUMER_SECRET="not-the-secret")
    with pytest.raises(errors.Unauthorized) as info:
        client.send_conversions(PIXEL_ID, [{**TWCLID_EVENT, "event_id": event_id}])
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED_ACCESS"
    assert "This request is not properly authenticated" in str(info.value)


def test_wrong_token_secret_gets_401(emulator: EmulatorServer, event_id: str) -> None:
    client = XAdsClient(access_token=ACCESS_TOKEN, access_token_secret="wrong")
    with pytest.raises(errors.Unauthorized):
        client.iter_accounts().__next__()


def test_pixel_token_header_is_used_for_conversions(
    emulator: EmulatorServer, event_id: str
) -> None:
    emulator.add_pixel(ACCOUNT_ID, "p1x3l", pixel_token="secret-pixel-token")
    client = XAdsClient(pixel_token="secret-pixel-token")
    assert client.send_conversions("p1x3l", [{**TWCLID_EVENT, "event_id": event_id}]).debug_id
    assert emulator.requests[-1]["auth"] == "pixel_token"
    with pytest.raises(errors.Unauthorized):
        XAdsClient(pixel_token="wrong").send_conversions(
            "p1x3l", [{**TWCLID_EVENT, "event_id": event_id}]
        )


def test_missing_credentials_are_named_before_any_request(emulator: EmulatorServer) -> None:
    with pytest.raises(ImproperlyConfiguredAccount, match="access token"):
        XAdsClient().send_conversions(PIXEL_ID, [TWCLID_EVENT])
    assert emulator.requests == []


def test_bad_request_str_shows_x_message(client: XAdsClient, event_id: str) -> None:
    event = {**TWCLID_EVENT, "event_id": event_id, "identifiers": [{"hashed_email": "abc"}]}
    with pytest.raises(errors.BadRequest) as info:
        client.send_conversions(PIXEL_ID, [event])
    assert info.value.message == "hashed_email (abc) is not a valid SHA-256 hash"
    assert info.value.parameter == "hashed_email" and info.value.code == "INVALID_PARAMETER"
    assert str(info.value).startswith("hashed_email (abc) is not a valid SHA-256 hash")
    assert info.value.body["errors"][0]["message"] == info.value.message


def test_501_events_refused_locally_before_any_request(
    client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    with pytest.raises(ValueError, match="Conversion count limit is 500"):
        client.send_conversions(PIXEL_ID, [{**TWCLID_EVENT, "event_id": event_id}] * 501)
    assert emulator.requests == []


def test_paging_2500_tags_with_count_1000_takes_exactly_3_requests(
    client: XAdsClient, emulator: EmulatorServer
) -> None:
    created = {emulator.add_tag(ACCOUNT_ID, name=f"Tag {n}")["id"] for n in range(2500)}
    emulator.reset_records()
    seen = [tag["id"] for tag in client.iter_web_event_tags(ACCOUNT_ID, count=1000)]
    assert len(seen) == 2500 and set(seen) == created
    pages = [r for r in emulator.requests if r["path"].endswith("/web_event_tags")]
    assert len(pages) == 3 and all(r["query"]["count"] == "1000" for r in pages)
    assert "cursor" not in pages[0]["query"] and pages[1]["query"]["cursor"]


def test_tag_crud_goes_through_the_query_string(
    client: XAdsClient, emulator: EmulatorServer
) -> None:
    tag = client.create_web_event_tag(
        ACCOUNT_ID,
        name="Lead",
        type="SIGN_UP",
        click_window=30,
        view_through_window=1,
        retargeting_enabled=False,
    )
    created = emulator.requests[-1]
    assert created["method"] == "POST" and created["body_length"] == 0
    assert (
        created["query"]["retargeting_enabled"] == "false" and created["query"]["type"] == "SIGN_UP"
    )
    updated = client.update_web_event_tag(ACCOUNT_ID, tag["id"], click_window=7)
    assert updated["click_window"] == 7 and updated["type"] == "SIGN_UP"
    assert emulator.requests[-1]["query"] == {"click_window": "7"}
    assert client.delete_web_event_tag(ACCOUNT_ID, tag["id"])["deleted"] is True
    with pytest.raises(errors.NotFound):
        client.get_web_event_tag(ACCOUNT_ID, tag["id"])
    assert client.get_web_event_tag(ACCOUNT_ID, tag["id"], with_deleted=True)["deleted"] is True


def test_invalid_window_combination_shows_x_message(client: XAdsClient) -> None:
    with pytest.raises(errors.BadRequest) as info:
        client.create_web_event_tag(
            ACCOUNT_ID,
            name="x",
            type="PURCHASE",
            click_window=1,
            view_through_window=7,
            retargeting_enabled=True,
        )
    assert info.value.message == "view_through_window must be less than or equal to click_window"


def test_authenticated_user_access_and_accounts(client: XAdsClient) -> None:
    access = client.authenticated_user_access(ACCOUNT_ID)
    assert access["permissions"] == ["ACCOUNT_ADMIN"]
    assert [a["id"] for a in client.iter_accounts()] == [ACCOUNT_ID]
    with pytest.raises(errors.NotFound, match="does not have access to account 18ce00000"):
        client.authenticated_user_access("18ce00000")


def test_rate_limit_headers_prefer_account_level(
    client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    emulator.set_budget(1000, 60)
    result = client.send_conversions(PIXEL_ID, [{**TWCLID_EVENT, "event_id": event_id}] * 3)
    assert result.rate_limit is not None and result.rate_limit.scope == "account"
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (1000, 997)
    user_only = parse_rate_limit(
        {"x-rate-limit-limit": "10", "x-rate-limit-remaining": "4", "x-rate-limit-reset": "99"}
    )
    assert user_only == type(user_only)(10, 4, 99.0, "user")


def test_429_carries_reset(client: XAdsClient, event_id: str, emulator: EmulatorServer) -> None:
    emulator.faults.script(["429"])
    with pytest.raises(errors.RateLimited) as info:
        client.send_conversions(PIXEL_ID, [{**TWCLID_EVENT, "event_id": event_id}])
    assert info.value.reset_at is not None and info.value.code == "TOO_MANY_REQUESTS"


def test_503_carries_retry_after(
    client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    emulator.faults.retry_after_seconds = 7
    emulator.faults.script(["503"])
    with pytest.raises(errors.ServerError) as info:
        client.send_conversions(PIXEL_ID, [{**TWCLID_EVENT, "event_id": event_id}])
    assert info.value.retry_after == 7.0 and info.value.status == 503


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0
    assert parse_retry_after("garbage") is None


def test_timeout_and_reset_are_transport_errors(
    settings: Any, client: XAdsClient, event_id: str, emulator: EmulatorServer
) -> None:
    configure(settings, READ_TIMEOUT=0.3)
    emulator.faults.slow_seconds = 1.0
    emulator.faults.script(["timeout", "reset"])
    event = [{**TWCLID_EVENT, "event_id": event_id}]
    with pytest.raises(errors.RequestTimeout):
        client.send_conversions(PIXEL_ID, event)
    with pytest.raises(errors.TransportError) as info:
        client.send_conversions(PIXEL_ID, event)
    assert not isinstance(info.value, errors.RequestTimeout)


def test_api_warn_logged_and_no_secret_ever_logged(
    settings: Any, client: XAdsClient, caplog: pytest.LogCaptureFixture, emulator: EmulatorServer
) -> None:
    configure(settings, API_VERSION="11")
    caplog.set_level(logging.DEBUG, logger="django_xconversions")
    client.authenticated_user_access(ACCOUNT_ID)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "Version 11" in warnings[0].getMessage()
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (ACCESS_TOKEN, ACCESS_TOKEN_SECRET, settings.XCONVERSIONS["CONSUMER_SECRET"]):
        assert secret not in text


def test_settings_are_read_at_call_time(
    settings: Any, client: XAdsClient, emulator: EmulatorServer
) -> None:
    other = EmulatorServer().start()
    try:
        configure(settings, API_BASE_URL=other.url)
        with pytest.raises(errors.Unauthorized):
            client.authenticated_user_access(ACCOUNT_ID)  # the other emulator knows no app
        assert len(other.requests) == 1 and emulator.requests == []
    finally:
        other.stop()
