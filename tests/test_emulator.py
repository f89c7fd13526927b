"""The X Ads API emulator over real HTTP on 127.0.0.1: X's documented behaviour, exactly.

Plain pytest: the emulator is free of Django and so are these tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests_oauthlib import OAuth1

from django_xconversions.emulator import EmulatorServer, FaultPlan, ManualClock, demo_world
from django_xconversions.emulator.__main__ import build, parse_args
from tests.helpers import wait_until
from tests.helpers.emulated_x import (
    ACCOUNT_ID,
    AUTH,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    HASH,
    PIXEL_ID,
    PIXEL_TOKEN,
    TOKEN,
    TOKEN_SECRET,
    UNAUTHORIZED,
    USER_ID,
    conversions_url,
    event,
    post,
    received_ids,
    tags_url,
)
from tests.x_messages import DOCUMENTED_400


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    server = EmulatorServer(host="127.0.0.1", port=0)
    server.add_app(CONSUMER_KEY, CONSUMER_SECRET)
    server.add_user(USER_ID, TOKEN, TOKEN_SECRET, screen_name="shop")
    server.add_account(ACCOUNT_ID, name="Shop", users={USER_ID: ["ACCOUNT_ADMIN"]})
    server.add_pixel(ACCOUNT_ID, PIXEL_ID, pixel_token=PIXEL_TOKEN)
    with server:
        yield server


@pytest.fixture
def event_id(emu: EmulatorServer) -> str:
    return str(emu.add_tag(ACCOUNT_ID, name="Purchase", type="PURCHASE")["website_tag_id"])


# -- OAuth 1.0a -------------------------------------------------------------------------------


def test_correct_signature_is_accepted(emu: EmulatorServer) -> None:
    response = requests.get(f"{emu.url}/12/accounts", auth=AUTH, timeout=5)
    assert response.status_code == 200
    assert [a["id"] for a in response.json()["data"]] == [ACCOUNT_ID]
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "auth",
    [
        OAuth1(CONSUMER_KEY, "wrong-consumer-secret", TOKEN, TOKEN_SECRET),
        OAuth1(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, "wrong-token-secret"),
        OAuth1("unknown-consumer", CONSUMER_SECRET, TOKEN, TOKEN_SECRET),
        OAuth1(CONSUMER_KEY, CONSUMER_SECRET, "unknown-token", TOKEN_SECRET),
        OAuth1(CONSUMER_KEY, CONSUMER_SECRET),  # no token: user context is required
        OAuth1(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET, timestamp="1000000000"),
        None,
    ],
    ids=["consumer-secret", "token-secret", "consumer", "token", "no-token", "stale", "none"],
)
def test_bad_credentials_are_401(emu: EmulatorServer, auth: OAuth1 | None) -> None:
    response = requests.get(f"{emu.url}/12/accounts", auth=auth, timeout=5)
    assert response.status_code == 401
    assert response.json()["errors"] == [UNAUTHORIZED]


def test_timestamp_within_300_seconds_is_accepted(emu: EmulatorServer) -> None:
    skewed = str(int(time.time()) - 250)
    auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET, timestamp=skewed)
    assert requests.get(f"{emu.url}/12/accounts", auth=auth, timeout=5).status_code == 200


def test_replayed_nonce_is_refused(emu: EmulatorServer) -> None:
    prepared = requests.Request("GET", f"{emu.url}/12/accounts", auth=AUTH).prepare()
    with requests.Session() as session:
        assert session.send(prepared, timeout=5).status_code == 200
        replay = session.send(prepared, timeout=5)
    assert replay.status_code == 401 and replay.json()["errors"] == [UNAUTHORIZED]


def test_json_body_is_not_signed_but_the_query_is(emu: EmulatorServer, event_id: str) -> None:
    prepared = requests.Request(
        "POST", conversions_url(emu), json={"conversions": [event(event_id)]}, auth=AUTH
    ).prepare()
    body = json.dumps({"conversions": [event(event_id, conversion_id="changed")]}).encode()
    prepared.body, prepared.headers["Content-Length"] = body, str(len(body))
    with requests.Session() as session:
        assert session.send(prepared, timeout=5).status_code == 200
    assert received_ids(emu) == ["changed"]

    prepared = requests.Request("GET", tags_url(emu), params={"count": "5"}, auth=AUTH).prepare()
    prepared.url = str(prepared.url).replace("count=5", "count=6")
    with requests.Session() as session:
        assert session.send(prepared, timeout=5).status_code == 401


def test_form_body_is_part_of_the_signature(emu: EmulatorServer) -> None:
    prepared = requests.Request("POST", tags_url(emu), data={"name": "a"}, auth=AUTH).prepare()
    prepared.body, prepared.headers["Content-Length"] = "name=b", "6"
    with requests.Session() as session:
        assert session.send(prepared, timeout=5).status_code == 401


# -- pixel token and access -------------------------------------------------------------------


def test_pixel_token_is_accepted_and_a_wrong_one_is_401(emu: EmulatorServer, event_id: str) -> None:
    ok = post(emu, [event(event_id)], auth=None, headers={"X-Pixel-Token": PIXEL_TOKEN})
    assert ok.status_code == 200
    wrong = post(emu, [event(event_id)], auth=None, headers={"X-Pixel-Token": "nope"})
    assert wrong.status_code == 401 and wrong.json()["errors"] == [UNAUTHORIZED]
    assert post(emu, [event(event_id)], auth=None).status_code == 401
    assert [r["auth"] for r in emu.requests] == ["pixel_token", None, None]
    assert len(emu.received) == 1


def test_pixel_token_does_not_open_tag_management(emu: EmulatorServer) -> None:
    for url in (tags_url(emu), f"{emu.url}/12/accounts"):
        response = requests.get(url, headers={"X-Pixel-Token": PIXEL_TOKEN}, timeout=5)
        assert response.status_code == 401


def test_user_without_access_gets_x_no_access_message(emu: EmulatorServer, event_id: str) -> None:
    emu.add_user("42", "analyst-token", "analyst-secret")
    emu.add_user("43", "stranger-token", "stranger-secret")
    emu.add_account("18ceother", users={"42": ["ANALYST"]})
    emu.world.accounts[ACCOUNT_ID].users["42"] = ["ANALYST", "CAMPAIGN_ANALYST"]
    users = [("42", "analyst-token", "analyst-secret"), ("43", "stranger-token", "stranger-secret")]
    for user_id, token, secret in users:
        auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, token, secret)
        response = post(emu, [event(event_id)], auth=auth)
        assert response.status_code == 404
        assert response.json()["errors"] == [
            {
                "code": "NOT_FOUND",
                "message": f"User {user_id} does not have access to account {ACCOUNT_ID}. "
                f"Type 'sn {user_id}' to get the handle of the user. Use 'twurl accounts' and "
                "'twurl set default <username>' to change the user you're using.",
                "parameter": None,
            }
        ]
        # Written on the wire as X writes it.
        assert "\\u003Cusername\\u003E" in response.text
    assert emu.received == []


def test_authenticated_user_access(emu: EmulatorServer) -> None:
    url = f"{emu.url}/12/accounts/{ACCOUNT_ID}/authenticated_user_access"
    response = requests.get(url, auth=AUTH, timeout=5)
    assert response.status_code == 200
    assert response.json() == {
        "data": {"user_id": USER_ID, "permissions": ["ACCOUNT_ADMIN"]},
        "request": {"params": {"account_id": ACCOUNT_ID}},
    }
    other = requests.get(url.replace(ACCOUNT_ID, "18cenope"), auth=AUTH, timeout=5)
    assert other.status_code == 404 and other.json()["errors"][0]["code"] == "NOT_FOUND"


# -- conversions: X's documented messages -----------------------------------------------------


@pytest.mark.parametrize(("overrides", "message", "parameter"), DOCUMENTED_400)
def test_documented_400_messages(
    emu: EmulatorServer, event_id: str, overrides: dict[str, Any], message: str, parameter: str
) -> None:
    response = post(emu, [{**event(event_id), **overrides}])
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"code": "INVALID_PARAMETER", "message": message, "parameter": parameter}],
        "request": {"params": {"account_id": ACCOUNT_ID}},
    }
    assert emu.received == []


def test_missing_event_id_key(emu: EmulatorServer, event_id: str) -> None:
    bare = event(event_id)
    del bare["event_id"]
    assert post(emu, [bare]).json()["errors"] == [
        {"code": "INVALID_PARAMETER", "message": "Event ID was not found", "parameter": "event_id"}
    ]


def test_conversion_count_limit_is_500(emu: EmulatorServer, event_id: str) -> None:
    response = post(emu, [event(event_id, conversion_id=str(n)) for n in range(501)])
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "code": "INVALID_PARAMETER",
            "message": "Conversion count limit is 500",
            "parameter": "conversions",
        }
    ]
    assert post(emu, [event(event_id, conversion_id=str(n)) for n in range(500)]).ok


def test_the_pixel_itself_is_not_a_single_event_tag(emu: EmulatorServer) -> None:
    # X's example: POST .../conversions/o6dkt with "event_id": "o6dkt".
    response = post(emu, [event(PIXEL_ID)])
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "code": "INVALID_PARAMETER",
            "message": f"event_id ({PIXEL_ID}) is not a single event tag (SET)",
            "parameter": "event_id",
        }
    ]


def test_unknown_event_is_404_with_both_errors(emu: EmulatorServer) -> None:
    # X's example: "event_id": "abc" answers NOT_FOUND and INVALID_PARAMETER, in that order.
    response = post(emu, [event("abc")])
    assert response.status_code == 404
    assert response.json() == {
        "errors": [
            {
                "code": "NOT_FOUND",
                "message": "event_id (abc) does not belong to provided account",
                "parameter": "event_id",
            },
            {
                "code": "INVALID_PARAMETER",
                "message": "event_id (abc) is not a single event tag (SET)",
                "parameter": "event_id",
            },
        ],
        "request": {"params": {"account_id": ACCOUNT_ID}},
    }


def test_event_of_another_account_does_not_belong(emu: EmulatorServer) -> None:
    emu.add_account("18ceother")
    foreign = emu.add_tag("18ceother", name="Theirs")["website_tag_id"]
    response = post(emu, [event(foreign)])
    assert response.status_code == 404
    assert response.json()["errors"] == [
        {
            "code": "NOT_FOUND",
            "message": f"event_id ({foreign}) does not belong to provided account",
            "parameter": "event_id",
        }
    ]


def test_missing_conversions_is_missing_parameter(emu: EmulatorServer) -> None:
    response = requests.post(conversions_url(emu), json={"events": []}, auth=AUTH, timeout=5)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "code": "MISSING_PARAMETER",
            "message": '"conversions" is missing',
            "parameter": "conversions",
        }
    ]


def test_unknown_pixel_is_404(emu: EmulatorServer, event_id: str) -> None:
    response = post(emu, [event(event_id)], pixel="zzzzz")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "NOT_FOUND"


# -- conversions: rules X documents without a message (wording inferred) ----------------------

INFERRED_400 = [
    ({"number_items": 0}, "number_items must be a positive number greater than zero"),
    ({"number_items": "3"}, "number_items must be a positive number greater than zero"),
    ({"price_currency": "XYZ"}, "price_currency (XYZ) is not a valid ISO-4217 currency code"),
    ({"price_currency": "usd"}, "price_currency (usd) is not a valid ISO-4217 currency code"),
    ({"value": "twenty"}, "value (twenty) is not a valid number"),
    ({"contents": [{"content_price": "100"}]}, "content_price (100) is not a valid number"),
    (
        {"contents": [{"num_items": 1.5}]},
        "num_items must be a positive number greater than zero",
    ),
    (
        {"identifiers": [{"twclid": "x", "ip_address": "999.1.1.1"}]},
        "ip_address (999.1.1.1) is not a valid IP address",
    ),
    (  # Arabic-Indic digits are digits to a regex's \d, not to an address parser
        {"identifiers": [{"twclid": "x", "ip_address": "\u0661.1.1.1"}]},
        "ip_address (\u0661.1.1.1) is not a valid IP address",
    ),
    (
        {"contents": [{"price": 1}]},
        "Expected one of [content_group_id, content_id, content_name, content_price, "
        'content_type, num_items], got "price" for contents',
    ),
    ({"conversion_time": "2022-13-45T01:14:00.603Z"}, "Expected Time in"),
]


@pytest.mark.parametrize(("overrides", "message"), INFERRED_400)
def test_strict_rules_reject(
    emu: EmulatorServer, event_id: str, overrides: dict[str, Any], message: str
) -> None:
    response = post(emu, [{**event(event_id), **overrides}])
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == "INVALID_PARAMETER" and error["message"].startswith(message)
    assert emu.received == []


def test_full_documented_example_is_accepted(emu: EmulatorServer, event_id: str) -> None:
    full = event(
        event_id,
        identifiers=[
            {"twclid": "23opevjt88psuo13lu8d020qkn"},
            {"hashed_email": HASH},
            {"hashed_phone_number": HASH},
            {"ip_address": "1.0.0.0", "user_agent": "Mozilla/5.0"},
        ],
        value="20.00",
        number_items=3,
        price_currency="JPY",
        description="Pet supply purchases",
        contents=[
            {
                "content_id": "1",
                "content_name": "Blankets",
                "content_type": "Pet supplies",
                "content_price": 100.99,
                "num_items": 1,
                "content_group_id": "123",
            }
        ],
    )
    response = post(emu, [full, event(event_id, conversion_id="c2", value=12.5)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request"] == {"params": {"account_id": ACCOUNT_ID}}
    assert body["data"]["conversions_processed"] == 2
    assert len(body["data"]["debug_id"]) == 36
    [first, _] = emu.received
    assert first["conversion"] == full
    assert first["debug_id"] == body["data"]["debug_id"]
    assert (first["pixel_id"], first["account_id"], first["event_id"]) == (
        PIXEL_ID,
        ACCOUNT_ID,
        event_id,
    )


def test_event_id_in_both_forms(emu: EmulatorServer, event_id: str) -> None:
    prefixed = f"tw-{PIXEL_ID}-{event_id}"
    assert post(emu, [event(event_id), event(prefixed, conversion_id="c2")]).status_code == 200
    assert [r["event_id"] for r in emu.received] == [event_id, prefixed]
    # The prefix must name this pixel.
    assert post(emu, [event(f"tw-other-{event_id}")]).status_code == 404


def test_ip_alone_is_refused_ip_with_user_agent_is_enough(
    emu: EmulatorServer, event_id: str
) -> None:
    alone = post(emu, [event(event_id, identifiers=[{"ip_address": "8.25.197.25"}])])
    assert alone.json()["errors"][0]["message"] == "At least one user identifier must be provided"
    together = [{"ip_address": "2001:db8::1", "user_agent": "Mozilla/5.0"}]
    apart = [{"ip_address": "8.25.197.25"}, {"user_agent": "Mozilla/5.0"}]
    assert post(emu, [event(event_id, identifiers=together)]).status_code == 200
    assert post(emu, [event(event_id, identifiers=apart)]).status_code == 200


def test_all_or_nothing_with_deduplicated_errors(emu: EmulatorServer, event_id: str) -> None:
    events = [
        event(event_id, conversion_id="a"),
        event(event_id, conversion_id="b", identifiers=[{"twclid": ""}]),
        event(event_id, conversion_id="c", identifiers=[{"twclid": ""}]),
        event(event_id, conversion_id="d", conversion_time="yesterday"),
    ]
    response = post(emu, events)
    assert response.status_code == 400
    assert [e["parameter"] for e in response.json()["errors"]] == ["", "conversion_time"]
    assert emu.received == []
    assert post(emu, [event(event_id)]).status_code == 200


def test_reject_event_ids_rejects_whole_batches(emu: EmulatorServer, event_id: str) -> None:
    emu.reject_event_ids("bad")
    response = post(emu, [event(event_id, conversion_id=n) for n in ("a", "bad", "c")])
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "code": "INVALID_PARAMETER",
            "message": "hashed_email (rejected) is not a valid SHA-256 hash",
            "parameter": "hashed_email",
        }
    ]
    assert post(emu, [event(event_id, conversion_id=n) for n in ("a", "c")]).status_code == 200
    assert received_ids(emu) == ["a", "c"]


def test_accepted_event_marks_its_tag_tracking(emu: EmulatorServer, event_id: str) -> None:
    tag_id = next(t.id for t in emu.world.accounts[ACCOUNT_ID].tags.values())
    before = requests.get(tags_url(emu, tag_id), auth=AUTH, timeout=5).json()["data"]
    assert (before["status"], before["last_tracked_at"]) == ("UNVERIFIED", None)
    assert post(emu, [event(event_id)]).status_code == 200
    after = requests.get(tags_url(emu, tag_id), auth=AUTH, timeout=5).json()["data"]
    assert after["status"] == "TRACKING" and after["last_tracked_at"].endswith("Z")


def test_tag_bound_to_a_pixel_is_not_reachable_through_another(emu: EmulatorServer) -> None:
    emu.add_pixel(ACCOUNT_ID, "p2", pixel_token="t2")
    bound = emu.add_tag(ACCOUNT_ID, name="Bound", pixel_id="p2")["website_tag_id"]
    assert post(emu, [event(bound)]).status_code == 404
    assert post(emu, [event(bound)], pixel="p2").status_code == 200


# -- rate limits and versions -----------------------------------------------------------------


def test_budget_headers_429_then_a_new_window(emu: EmulatorServer, event_id: str) -> None:
    emu.clock = clock = ManualClock()
    emu.set_budget(5, 1.0)
    first = post(emu, [event(event_id, conversion_id=str(n)) for n in range(3)])
    assert first.status_code == 200
    assert first.headers["x-account-rate-limit-limit"] == "5"
    assert first.headers["x-account-rate-limit-remaining"] == "2"
    assert int(first.headers["x-rate-limit-remaining"]) < int(first.headers["x-rate-limit-limit"])
    assert int(first.headers["x-rate-limit-reset"]) > clock()
    second = post(emu, [event(event_id, conversion_id="x")])
    assert second.headers["x-account-rate-limit-remaining"] == "1"
    refused = post(emu, [event(event_id, conversion_id=str(n)) for n in range(2)])
    assert refused.status_code == 429
    assert refused.json()["errors"] == [
        {"code": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded", "parameter": None}
    ]
    reset = int(refused.headers["x-account-rate-limit-reset"])
    assert clock() < reset <= clock() + 2
    assert received_ids(emu) == ["0", "1", "2", "x"]
    clock.advance(reset - clock() + 0.05)
    again = post(emu, [event(event_id, conversion_id="late")])
    assert again.status_code == 200 and again.headers["x-account-rate-limit-remaining"] == "4"


def test_concurrent_requests_share_the_budget_exactly(emu: EmulatorServer, event_id: str) -> None:
    emu.set_budget(1000, 60)
    statuses: list[int] = []

    def sender(worker: int) -> None:
        with requests.Session() as session:
            for n in range(10):
                events = [event(event_id, conversion_id=f"{worker}-{n}-{i}") for i in range(50)]
                response = session.post(
                    conversions_url(emu), json={"conversions": events}, auth=AUTH, timeout=10
                )
                statuses.append(response.status_code)

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [200, 429] and statuses.count(200) == 20
    assert len(set(received_ids(emu))) == len(emu.received) == 1000


def test_version_headers(emu: EmulatorServer, event_id: str) -> None:
    current = post(emu, [event(event_id)])
    assert current.headers["x-current-api-version"] == "12"
    assert "x-api-warn" not in current.headers
    old = requests.post(
        conversions_url(emu, version=11),
        json={"conversions": [event(event_id)]},
        auth=AUTH,
        timeout=5,
    )
    assert old.status_code == 200 and "11" in old.headers["x-api-warn"]
    assert emu.requests[-1]["version"] == "11"
    missing = requests.get(f"{emu.url}/12/nothing/here", auth=AUTH, timeout=5)
    assert missing.headers["x-current-api-version"] == "12"


def test_unknown_routes(emu: EmulatorServer) -> None:
    for method, url in (
        ("GET", f"{emu.url}/12/nothing/here"),
        ("GET", conversions_url(emu)),  # known path, wrong method
        ("PATCH", tags_url(emu)),
    ):
        response = requests.request(method, url, auth=AUTH, timeout=5)
        assert response.status_code == 404
        assert response.json()["errors"] == [
            {
                "code": "ROUTE_NOT_FOUND",
                "message": "The requested resource could not be found",
                "parameter": None,
            }
        ]


# -- web event tags ---------------------------------------------------------------------------

CREATE = {
    "name": "web event tag",
    "type": "SITE_VISIT",
    "click_window": "7",
    "view_through_window": "7",
    "retargeting_enabled": "false",
}


def test_tag_create_update_delete(emu: EmulatorServer) -> None:
    created = requests.post(tags_url(emu), params=CREATE, auth=AUTH, timeout=5)
    assert created.status_code == 200, created.text
    tag = created.json()["data"]
    assert created.json()["request"]["params"] == {
        "name": "web event tag",
        "view_through_window": 7,
        "click_window": 7,
        "retargeting_enabled": False,
        "account_id": ACCOUNT_ID,
        "type": "SITE_VISIT",
    }
    assert set(tag) == {
        "name",
        "view_through_window",
        "click_window",
        "embed_code",
        "id",
        "retargeting_enabled",
        "last_tracked_at",
        "status",
        "type",
        "website_tag_id",
        "deleted",
    }
    assert (tag["status"], tag["deleted"], tag["last_tracked_at"]) == ("UNVERIFIED", False, None)
    assert len(tag["id"]) == 5 and tag["id"].isalnum() and tag["id"].islower()
    assert f"txn_id={tag['website_tag_id']}" in tag["embed_code"]

    updated = requests.put(
        tags_url(emu, tag["id"]), params={"type": "DOWNLOAD"}, auth=AUTH, timeout=5
    )
    assert updated.status_code == 200
    assert {**tag, "type": "DOWNLOAD"} == updated.json()["data"]
    assert updated.json()["request"]["params"] == {
        "web_event_tag_id": tag["id"],
        "type": "DOWNLOAD",
        "account_id": ACCOUNT_ID,
    }
    # Checked against the merged values: click_window 1 < view_through_window 7.
    narrowed = requests.put(
        tags_url(emu, tag["id"]), params={"click_window": 1}, auth=AUTH, timeout=5
    )
    assert narrowed.status_code == 400
    assert narrowed.json()["errors"] == [
        {
            "code": "INVALID_PARAMETER",
            "message": "view_through_window must be less than or equal to click_window",
            "parameter": "view_through_window",
        }
    ]

    deleted = requests.delete(tags_url(emu, tag["id"]), auth=AUTH, timeout=5)
    assert deleted.status_code == 200 and deleted.json()["data"]["deleted"] is True
    gone = requests.get(tags_url(emu, tag["id"]), auth=AUTH, timeout=5)
    assert gone.status_code == 404
    assert gone.json()["errors"][0]["code"] == "WEB_EVENT_TAG_NOT_FOUND"
    kept = requests.get(
        tags_url(emu, tag["id"]), params={"with_deleted": "true"}, auth=AUTH, timeout=5
    )
    assert kept.status_code == 200 and kept.json()["data"]["deleted"] is True
    listed = requests.get(tags_url(emu), auth=AUTH, timeout=5).json()["data"]
    assert listed == []
    everything = requests.get(tags_url(emu), params={"with_deleted": "true"}, auth=AUTH, timeout=5)
    assert [t["id"] for t in everything.json()["data"]] == [tag["id"]]
    assert requests.delete(tags_url(emu, tag["id"]), auth=AUTH, timeout=5).status_code == 404


def test_tag_creation_validation(emu: EmulatorServer) -> None:
    missing = requests.post(tags_url(emu), params={"name": "x"}, auth=AUTH, timeout=5)
    assert missing.status_code == 400
    assert missing.json()["errors"] == [
        {"code": "MISSING_PARAMETER", "message": f'"{name}" is missing', "parameter": name}
        for name in ("click_window", "retargeting_enabled", "type", "view_through_window")
    ]
    cases = [
        ({"type": "LEAD"}, "type", "ADDED_PAYMENT_INFO, ADD_TO_CART"),
        ({"click_window": "3"}, "click_window", "[1, 7, 14, 30]"),
        ({"view_through_window": "2"}, "view_through_window", "[0, 1, 7, 14, 30]"),
        ({"retargeting_enabled": "yes"}, "retargeting_enabled", "Boolean"),
        (
            {"click_window": "1", "view_through_window": "7"},
            "view_through_window",
            "less than or equal to click_window",
        ),
    ]
    for overrides, parameter, text in cases:
        response = requests.post(
            tags_url(emu), params={**CREATE, **overrides}, auth=AUTH, timeout=5
        )
        assert response.status_code == 400
        [error] = response.json()["errors"]
        assert error["code"] == "INVALID_PARAMETER" and error["parameter"] == parameter
        assert text in error["message"] and parameter in error["message"]
    assert emu.world.accounts[ACCOUNT_ID].tags == {}


def test_paging_2500_tags_with_count_1000(emu: EmulatorServer) -> None:
    created = {emu.add_tag(ACCOUNT_ID, name=f"Tag {n}")["id"] for n in range(2500)}
    emu.reset_records()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"count": "1000", **({"cursor": cursor} if cursor else {})}
        page = requests.get(tags_url(emu), params=params, auth=AUTH, timeout=10).json()
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(emu.requests) == 3
    assert len(seen) == len(set(seen)) == 2500 and set(seen) == created


def test_list_parameters(emu: EmulatorServer) -> None:
    ids = [emu.add_tag(ACCOUNT_ID, name=name)["id"] for name in ("b", "a", "c")]
    default = requests.get(tags_url(emu), auth=AUTH, timeout=5).json()
    assert [t["id"] for t in default["data"]] == ids  # created_at-asc
    by_name = requests.get(tags_url(emu), params={"sort_by": "name-desc"}, auth=AUTH, timeout=5)
    assert [t["name"] for t in by_name.json()["data"]] == ["c", "b", "a"]
    chosen = requests.get(
        tags_url(emu), params={"web_event_tag_ids": f"{ids[0]},{ids[2]}"}, auth=AUTH, timeout=5
    ).json()
    assert [t["id"] for t in chosen["data"]] == [ids[0], ids[2]]
    assert chosen["request"]["params"]["web_event_tag_ids"] == [ids[0], ids[2]]
    total = requests.get(
        tags_url(emu), params={"with_total_count": "true"}, auth=AUTH, timeout=5
    ).json()
    assert total["total_count"] == 3
    for params, parameter in (
        ({"count": "0"}, "count"),
        ({"count": "1001"}, "count"),
        ({"count": "many"}, "count"),
        ({"cursor": "!!"}, "cursor"),
        ({"web_event_tag_ids": ",".join(f"id{n}" for n in range(201))}, "web_event_tag_ids"),
        ({"sort_by": "color-asc"}, "sort_by"),
        ({"with_deleted": "maybe"}, "with_deleted"),
    ):
        response = requests.get(tags_url(emu), params=params, auth=AUTH, timeout=5)
        assert response.status_code == 400, params
        [error] = response.json()["errors"]
        assert error["code"] == "INVALID_PARAMETER" and error["parameter"] == parameter
        assert parameter in error["message"]


# -- faults -----------------------------------------------------------------------------------


def test_scripted_faults_then_ok(emu: EmulatorServer, event_id: str) -> None:
    emu.faults.slow_seconds = 0.6
    emu.faults.retry_after_seconds = 3
    emu.faults.script(["500", "503", "429", "timeout", "reset", "ok"])

    failed = post(emu, [event(event_id, conversion_id="500")])
    assert failed.status_code == 500
    assert failed.json() == {
        "errors": [{"code": "INTERNAL_ERROR", "message": "Internal error", "parameter": None}],
        "request": {"params": {}},
    }
    unavailable = post(emu, [event(event_id, conversion_id="503")])
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "3"
    assert unavailable.json()["errors"][0]["code"] == "SERVICE_UNAVAILABLE"
    limited = post(emu, [event(event_id, conversion_id="429")])
    assert limited.status_code == 429
    assert limited.json()["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    reset_at = int(limited.headers["x-account-rate-limit-reset"])
    assert time.time() < reset_at <= time.time() + 3
    assert limited.headers["x-account-rate-limit-remaining"] == "0"

    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        post(emu, [event(event_id, conversion_id="slow")], timeout=0.2)
    assert time.monotonic() - started < 0.5
    # Processed on arrival: the client gave up on a batch X accepted.
    assert received_ids(emu) == ["slow"]
    with pytest.raises(requests.ConnectionError):
        post(emu, [event(event_id, conversion_id="reset")])
    assert post(emu, [event(event_id, conversion_id="ok")]).status_code == 200
    assert received_ids(emu) == ["slow", "ok"]
    assert [r["status"] for r in emu.requests] == [500, 503, 429, 200, None, 200]
    assert [r["events"] for r in emu.requests] == [1] * 6


def test_slow_before_processing_and_stop_drops_the_request() -> None:
    server = EmulatorServer().start()
    server.add_app(CONSUMER_KEY, CONSUMER_SECRET)
    server.add_user(USER_ID, TOKEN, TOKEN_SECRET)
    server.add_account(ACCOUNT_ID, users={USER_ID: ["AD_MANAGER"]})
    server.add_pixel(ACCOUNT_ID, PIXEL_ID)
    tag = server.add_tag(ACCOUNT_ID, name="Purchase")["website_tag_id"]
    server.faults.slow_before_processing = True
    server.faults.slow_seconds = 0.4
    server.faults.script(["timeout", "timeout"])
    with pytest.raises(requests.Timeout):
        post(server, [event(tag, conversion_id="late")], timeout=0.1)
    assert server.received == []  # still waiting
    wait_until(lambda: received_ids(server) == ["late"], 5, "never processed after the wait")

    server.faults.slow_seconds = 30
    with contextlib.suppress(requests.RequestException):
        post(server, [event(tag, conversion_id="never")], timeout=0.2)
    server.stop()
    assert received_ids(server) == ["late"]


def test_fault_rates_are_reproducible_with_a_seed(emu: EmulatorServer, event_id: str) -> None:
    def run() -> list[int]:
        emu.faults.set_rates(error_500=0.3, error_503=0.2, rate_limit=0.1, seed=1234)
        with requests.Session() as session:
            return [
                session.post(
                    conversions_url(emu), json={"conversions": [event(event_id)]}, auth=AUTH
                ).status_code
                for _ in range(30)
            ]

    first = run()
    assert first == run()
    assert {200, 500, 503, 429} <= set(first)
    plan = FaultPlan()
    plan.set_rates(timeout=0.5, reset=0.5, seed=9)
    assert set(plan.next() for _ in range(40)) == {"timeout", "reset"}
    with pytest.raises(ValueError, match="add up"):
        plan.set_rates(error_500=0.8, error_503=0.3)
    with pytest.raises(ValueError, match="unknown faults"):
        plan.script(["502"])


def test_faults_hit_other_endpoints_only_when_asked(emu: EmulatorServer) -> None:
    emu.faults.script(["500"])
    assert requests.get(tags_url(emu), auth=AUTH, timeout=5).status_code == 200
    emu.faults.all_endpoints = True
    assert requests.get(tags_url(emu), auth=AUTH, timeout=5).status_code == 500
    emu.faults.script(["500"])
    assert requests.get(f"{emu.url}/_emulator/stats", timeout=5).status_code == 200


def test_stop_returns_promptly_while_a_request_sleeps(emu: EmulatorServer, event_id: str) -> None:
    emu.faults.slow_seconds = 30
    emu.faults.script(["timeout"])
    idle = requests.Session()
    assert idle.get(f"{emu.url}/12/accounts", auth=AUTH, timeout=5).ok  # a kept-alive socket

    def client() -> None:
        with contextlib.suppress(requests.RequestException):
            post(emu, [event(event_id)], timeout=60)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    wait_until(lambda: emu.requests[1:], 5, "the slow request never arrived")
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 2
    thread.join(timeout=2)
    assert not thread.is_alive(), "the sleeping request kept its client waiting"
    idle.close()


# -- emulator-only endpoints and the command line ---------------------------------------------


def test_inspection_endpoints(emu: EmulatorServer, event_id: str) -> None:
    post(emu, [event(event_id, conversion_id="a"), event(event_id, conversion_id="b")])
    post(emu, [event(event_id, conversion_id="a")])
    answer = requests.get(f"{emu.url}/_emulator/received", params={"since": 1}, timeout=5)
    received = answer.json()
    assert [r["conversion"]["conversion_id"] for r in received["data"]] == ["b", "a"]
    assert received["total"] == 3
    stats = requests.get(f"{emu.url}/_emulator/stats", timeout=5).json()["data"]
    assert stats["received"] == 3 and stats["duplicates"] == 1
    # The stats request itself is logged after it answers.
    assert (stats["requests"], stats["events_sent"], stats["by_status"]) == (3, 3, {"200": 3})
    assert requests.post(f"{emu.url}/_emulator/reset", timeout=5).ok
    assert emu.received == [] and len(emu.requests) == 1  # the reset itself is logged


def test_config_file_seeds_a_world(tmp_path: Any) -> None:
    world = {
        "apps": [{"consumer_key": "k", "consumer_secret": "s"}],
        "users": [{"user_id": "1", "access_token": "t", "access_token_secret": "ts"}],
        "accounts": [{"account_id": "acc1", "users": {"1": ["AD_MANAGER"]}}],
        "pixels": [{"account_id": "acc1", "pixel_id": "px1", "pixel_token": "ptk"}],
        "tags": [{"account_id": "acc1", "name": "Lead", "type": "SIGN_UP", "id": "t0001"}],
        "budget": {"events": 10, "window_seconds": 60},
        "faults": {"script": ["503"], "retry_after_seconds": 4},
    }
    config = tmp_path / "seed.json"
    config.write_text(json.dumps(world))
    server = build(parse_args(["--port", "0", "--config", str(config)]))
    assert server.world.budget_events == 10
    assert server.world.pixels["px1"].pixel_token == "ptk"
    assert server.world.accounts["acc1"].tags["t0001"].type == "SIGN_UP"
    assert server.faults.next() == "503" and server.faults.retry_after_seconds == 4


def test_package_imports_no_django() -> None:
    code = (
        "import sys, django_xconversions.emulator, django_xconversions.emulator.__main__;"
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')];"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0  # noqa: S603


def test_command_line_demo_starts_and_answers() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.Popen(
        [sys.executable, "-m", "django_xconversions.emulator", "--port", "0", "--demo", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        world = demo_world()
        assert json.loads(process.stdout.readline()) == world
        app, user = world["apps"][0], world["users"][0]
        auth = OAuth1(
            app["consumer_key"],
            app["consumer_secret"],
            user["access_token"],
            user["access_token_secret"],
        )
        tags = requests.get(f"{url}/12/accounts/18ce54d4x5t/web_event_tags", auth=auth, timeout=5)
        purchase = next(t for t in tags.json()["data"] if t["type"] == "PURCHASE")
        assert {t["type"] for t in tags.json()["data"]} == {"PURCHASE", "SIGN_UP"}
        sent = requests.post(
            f"{url}/12/measurement/conversions/o8z6j",
            json={"conversions": [event(purchase["website_tag_id"])]},
            headers={"X-Pixel-Token": world["accounts"][0]["pixels"][0]["pixel_token"]},
            timeout=5,
        )
        assert sent.status_code == 200
        received = requests.get(f"{url}/_emulator/received", timeout=5).json()["data"]
        assert [r["conversion"]["conversion_id"] for r in received] == ["c1"]
    finally:
        process.terminate()
        assert process.wait(10) == 0
