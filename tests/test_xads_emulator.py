"""The emulator's fidelity to X's documented behaviour, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests
from requests_oauthlib import OAuth1

from django_xconversions import payload
from django_xconversions.emulator import DEMO_WORLD, EmulatorServer

from .conftest import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    ACCOUNT_ID,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    PIXEL_ID,
)

AUTH = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
HASH = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"


def post(
    emu: EmulatorServer, conversions: Any, pixel: str = PIXEL_ID, **kwargs: Any
) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    return requests.post(
        f"{emu.url}/12/measurement/conversions/{pixel}",
        json={"conversions": conversions},
        timeout=5,
        **kwargs,
    )


@pytest.fixture
def event_id(emulator: EmulatorServer) -> str:
    return str(emulator.add_tag(ACCOUNT_ID, name="Purchase")["website_tag_id"])


def good(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "conversion_time": "2022-02-18T01:14:00.603Z",
        "event_id": event_id,
        "identifiers": [{"twclid": "23opevjt88psuo13lu8d020qkn"}],
        "conversion_id": "c1",
        **overrides,
    }


# Each documented 400 case, checked against the emulator AND the client's local validation.
DOCUMENTED = [
    ({"identifiers": [{"twclid": ""}]}, "At least one user identifier must be provided", ""),
    (
        {"identifiers": [{"ip_address": "8.25.197.25"}]},
        "At least one user identifier must be provided",
        "",
    ),
    (
        {"identifiers": [{"hashed_email": "abc"}]},
        "hashed_email (abc) is not a valid SHA-256 hash",
        "hashed_email",
    ),
    (
        {"conversion_time": "2022-06-16T01:14:00.603"},
        'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "2022-06-16T01:14:00.603" '
        "for conversion_time",
        "conversion_time",
    ),
    ({"event_id": ""}, "Event ID was not found", "event_id"),
    (
        {"number_items": 0},
        "number_items must be a positive number greater than zero",
        "number_items",
    ),
    (
        {"price_currency": "XYZ"},
        "price_currency (XYZ) is not a valid ISO-4217 currency code",
        "price_currency",
    ),
    (
        {"contents": [{"content_price": "100"}]},
        "content_price (100) is not a valid number",
        "content_price",
    ),
]


@pytest.mark.parametrize(("overrides", "message", "parameter"), DOCUMENTED)
def test_emulator_and_local_validation_give_the_same_x_message(
    emulator: EmulatorServer, event_id: str, overrides: dict[str, Any], message: str, parameter: str
) -> None:
    event = {**good(event_id), **overrides}
    response = post(emulator, [event])
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": "INVALID_PARAMETER", "message": message, "parameter": parameter}
    ]
    assert [(v.message, v.parameter) for v in payload.validate(event)] == [(message, parameter)]
    assert emulator.received == []


def test_count_limit_message_both_sides(emulator: EmulatorServer, event_id: str) -> None:
    events = [good(event_id, conversion_id=str(n)) for n in range(501)]
    response = post(emulator, events)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "Conversion count limit is 500"
    assert [v.message for v in payload.validate_batch(events)] == ["Conversion count limit is 500"]


def test_event_of_another_account_is_404(emulator: EmulatorServer) -> None:
    emulator.add_account("18ceother", users={})
    foreign = emulator.add_tag("18ceother", name="Theirs")["website_tag_id"]
    response = post(emulator, [good(foreign)])
    assert response.status_code == 404
    assert response.json()["errors"] == [
        {
            "code": "NOT_FOUND",
            "message": f"event_id ({foreign}) does not belong to provided account",
            "parameter": "event_id",
        }
    ]


def test_pixel_id_as_event_id_is_not_a_single_event_tag(emulator: EmulatorServer) -> None:
    body = post(emulator, [good(PIXEL_ID)]).json()
    assert [e["message"] for e in body["errors"]] == [
        f"event_id ({PIXEL_ID}) does not belong to provided account",
        f"event_id ({PIXEL_ID}) is not a single event tag (SET)",
    ]


def test_success_envelope_and_both_event_id_forms(emulator: EmulatorServer, event_id: str) -> None:
    response = post(
        emulator, [good(event_id), good(f"tw-{PIXEL_ID}-{event_id}", conversion_id="c2")]
    )
    assert response.status_code == 200
    body = response.json()
    assert body["request"] == {"params": {"account_id": ACCOUNT_ID}}
    assert body["data"]["conversions_processed"] == 2 and len(body["data"]["debug_id"]) == 36
    assert [r["conversion"]["conversion_id"] for r in emulator.received] == ["c1", "c2"]
    assert response.headers["x-current-api-version"] == "12"


def test_ip_and_user_agent_together_are_enough(emulator: EmulatorServer, event_id: str) -> None:
    event = good(event_id, identifiers=[{"ip_address": "1.0.0.0", "user_agent": "Mozilla/5.0"}])
    assert post(emulator, [event]).status_code == 200


def test_all_or_nothing(emulator: EmulatorServer, event_id: str) -> None:
    events = [
        good(event_id, conversion_id="a"),
        good(event_id, identifiers=[{"hashed_email": "abc"}]),
        good(event_id),
    ]
    assert post(emulator, events).status_code == 400
    assert emulator.received == []


def test_replayed_nonce_is_refused(emulator: EmulatorServer) -> None:
    prepared = requests.Request("GET", f"{emulator.url}/12/accounts", auth=AUTH).prepare()
    with requests.Session() as session:
        assert session.send(prepared, timeout=5).status_code == 200
        replay = session.send(prepared, timeout=5)
    assert replay.status_code == 401
    assert replay.json()["errors"][0]["code"] == "UNAUTHORIZED_ACCESS"


def test_form_body_is_part_of_the_signature(emulator: EmulatorServer) -> None:
    # Signed as a form, then the form changed: the signature no longer matches.
    prepared = requests.Request(
        "POST",
        f"{emulator.url}/12/accounts/{ACCOUNT_ID}/web_event_tags",
        data={"name": "a"},
        auth=AUTH,
    ).prepare()
    prepared.body = "name=b"
    prepared.headers["Content-Length"] = "6"
    with requests.Session() as session:
        assert session.send(prepared, timeout=5).status_code == 401


def test_user_without_sending_permission_is_refused(
    emulator: EmulatorServer, event_id: str
) -> None:
    emulator.add_user("42", "analyst-token", "analyst-secret")
    emulator.world.accounts[ACCOUNT_ID].users["42"] = ["ANALYST"]
    response = post(
        emulator,
        [good(event_id)],
        auth=OAuth1(CONSUMER_KEY, CONSUMER_SECRET, "analyst-token", "analyst-secret"),
    )
    assert response.status_code == 403


def test_budget_headers_429_and_new_window(emulator: EmulatorServer, event_id: str) -> None:
    emulator.set_budget(5, 1.0)
    first = post(emulator, [good(event_id, conversion_id=str(n)) for n in range(3)])
    assert first.headers["x-account-rate-limit-limit"] == "5"
    assert first.headers["x-account-rate-limit-remaining"] == "2"
    refused = post(emulator, [good(event_id, conversion_id=str(n)) for n in range(3)])
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    reset = int(refused.headers["x-account-rate-limit-reset"])
    assert len(emulator.received) == 3
    time.sleep(max(0.0, reset - time.time()) + 0.05)
    assert post(emulator, [good(event_id, conversion_id="late")]).status_code == 200


def test_tag_validation_messages(emulator: EmulatorServer) -> None:
    url = f"{emulator.url}/12/accounts/{ACCOUNT_ID}/web_event_tags"
    missing = requests.post(url, params={"name": "x"}, auth=AUTH, timeout=5)
    assert missing.status_code == 400
    assert {e["parameter"] for e in missing.json()["errors"]} == {
        "click_window",
        "retargeting_enabled",
        "type",
        "view_through_window",
    }
    assert missing.json()["errors"][0]["code"] == "MISSING_PARAMETER"
    bad_type = requests.post(
        url,
        params={
            "name": "x",
            "type": "LEAD",
            "click_window": 7,
            "view_through_window": 1,
            "retargeting_enabled": "false",
        },
        auth=AUTH,
        timeout=5,
    )
    assert bad_type.json()["errors"][0]["parameter"] == "type"
    too_many = requests.get(url, params={"count": 1001}, auth=AUTH, timeout=5)
    assert too_many.status_code == 400 and too_many.json()["errors"][0]["parameter"] == "count"


def test_unknown_route(emulator: EmulatorServer) -> None:
    response = requests.get(f"{emulator.url}/12/nothing/here", auth=AUTH, timeout=5)
    assert response.status_code == 404
    assert response.json()["errors"][0] == {
        "code": "ROUTE_NOT_FOUND",
        "message": "The requested resource could not be found",
        "parameter": None,
    }


def test_scripted_faults_then_ok(emulator: EmulatorServer, event_id: str) -> None:
    emulator.faults.slow_seconds = 0.5
    emulator.faults.script(["500", "503", "timeout", "reset", "ok"])
    assert post(emulator, [good(event_id)]).status_code == 500
    unavailable = post(emulator, [good(event_id)])
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "1"
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{emulator.url}/12/measurement/conversions/{PIXEL_ID}",
            json={"conversions": [good(event_id, conversion_id="slow")]},
            auth=AUTH,
            timeout=0.2,
        )
    with pytest.raises(requests.ConnectionError):
        post(emulator, [good(event_id, conversion_id="reset")])
    assert post(emulator, [good(event_id, conversion_id="ok")]).status_code == 200
    time.sleep(0.5)
    # The slow request was processed after the client gave up; the reset one never was.
    assert [r["conversion"]["conversion_id"] for r in emulator.received] == ["slow", "ok"]


def test_fault_rates_are_reproducible_with_a_seed(emulator: EmulatorServer) -> None:
    def draw() -> list[str]:
        emulator.faults.set_rates(error_500=0.3, rate_limit=0.2, seed=7)
        return [emulator.faults.next() for _ in range(50)]

    first = draw()
    assert first == draw() and {"500", "429", "ok"} <= set(first)


def test_stop_returns_promptly_while_a_request_sleeps(
    event_id: str, emulator: EmulatorServer
) -> None:
    emulator.faults.slow_seconds = 30
    emulator.faults.script(["timeout"])

    def client() -> None:
        with contextlib.suppress(requests.RequestException):
            post(emulator, [good(event_id)])

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 3


def test_command_line_demo_world_answers() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "django_xconversions.emulator", "--port", "0", "--demo"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        app, user = DEMO_WORLD["apps"][0], DEMO_WORLD["users"][0]
        auth = OAuth1(
            app["consumer_key"],
            app["consumer_secret"],
            user["access_token"],
            user["access_token_secret"],
        )
        tags = requests.get(
            f"{url}/12/accounts/18ce54d4x5t/web_event_tags", auth=auth, timeout=5
        ).json()
        assert {t["type"] for t in tags["data"]} == {"PURCHASE", "SIGN_UP"}
        stats = requests.get(f"{url}/_emulator/stats", timeout=5).json()["data"]
        assert stats["requests"] == 1
        assert json.loads(process.stdout.readline()) == DEMO_WORLD
    finally:
        process.terminate()
        assert process.wait(10) == 0
