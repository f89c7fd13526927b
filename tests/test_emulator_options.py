"""The emulator's adjustable behaviour over real HTTP: 404 wordings, 401/403 faults, faults
scoped to pixels, answer latency, the per-pixel request log and both documented
conversion_time forms. Django-free, like the emulator."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests_oauthlib import OAuth1

from django_xconversions.emulator import EmulatorServer, FaultPlan, ManualClock, seed
from django_xconversions.emulator.__main__ import build, parse_args
from tests.helpers.emulated_x import (
    ACCOUNT_ID,
    AUTH,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    PIXEL_ID,
    TOKEN,
    TOKEN_SECRET,
    UNAUTHORIZED,
    USER_ID,
    event,
    post,
    received_ids,
)
from tests.helpers.waiting import wait_until

OTHER_ACCOUNT, OTHER_PIXEL = "18ce55other", "p2zz9"
BAD_SIGNATURE = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, "wrong-token-secret")
NO_ACCESS = {
    "code": "ACCOUNT_LOCKED_OUT",
    "message": "This account is locked out and has no access to X Ads API",
    "parameter": None,
}
CLIENT_APP = {
    "code": "UNAUTHORIZED_CLIENT_APPLICATION",
    "message": "The client application with id <> making this request does not have access "
    "to X Ads API. Ensure your application has advertiser-api access. Use 'twurl accounts' "
    "and 'twurl set default <username> <key>' to change the application you're using.",
    "parameter": None,
}
TIME_MESSAGE = 'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "{}" for conversion_time'


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    """Two accounts of one user, one pixel each, one event tag each."""
    server = EmulatorServer(host="127.0.0.1", port=0)
    server.add_app(CONSUMER_KEY, CONSUMER_SECRET)
    server.add_user(USER_ID, TOKEN, TOKEN_SECRET, screen_name="shop")
    for account, pixel in ((ACCOUNT_ID, PIXEL_ID), (OTHER_ACCOUNT, OTHER_PIXEL)):
        server.add_account(account, users={USER_ID: ["ACCOUNT_ADMIN"]})
        server.add_pixel(account, pixel)
        server.add_tag(account, name="Purchase", website_tag_id=f"ev{pixel}")
    with server:
        yield server


def tag_of(pixel: str) -> str:
    return f"ev{pixel}"


def send(emu: EmulatorServer, pixel: str, *ids: str, **kwargs: Any) -> requests.Response:
    events = [event(tag_of(pixel), conversion_id=i) for i in ids]
    return post(emu, events, pixel=pixel, **kwargs)


def errors_of(response: requests.Response) -> list[dict[str, Any]]:
    return list(response.json()["errors"])


# -- 404 wording ------------------------------------------------------------------------------


def not_found(event_id: str, wording: str) -> dict[str, Any]:
    shown = event_id if wording == "plain" else f"({event_id})"
    return {
        "code": "NOT_FOUND",
        "message": f"event_id {shown} does not belong to provided account",
        "parameter": "event_id",
    }


def not_a_set(event_id: str) -> dict[str, Any]:
    return {
        "code": "INVALID_PARAMETER",
        "message": f"event_id ({event_id}) is not a single event tag (SET)",
        "parameter": "event_id",
    }


def test_404_is_parenthesized_by_default(emu: EmulatorServer) -> None:
    assert emu.faults.not_found_wording == "parenthesized"
    response = post(emu, [event("abc")])
    assert response.status_code == 404
    assert errors_of(response) == [not_found("abc", "parenthesized"), not_a_set("abc")]


@pytest.mark.parametrize("wording", ["parenthesized", "plain"])
def test_404_wording_names_each_unknown_event_once(emu: EmulatorServer, wording: str) -> None:
    emu.faults.not_found_wording = wording
    foreign = tag_of(OTHER_PIXEL)  # a real event tag, of the other account
    batch = [
        event(tag_of(PIXEL_ID), conversion_id="good"),
        event("abc", conversion_id="1"),
        event(foreign, conversion_id="2"),
        event("abc", conversion_id="3"),
        event("xyz9", conversion_id="4"),
    ]
    response = post(emu, batch)
    assert response.status_code == 404
    assert response.json() == {
        "errors": [
            not_found("abc", wording),
            not_a_set("abc"),
            not_found(foreign, wording),
            not_found("xyz9", wording),
            not_a_set("xyz9"),
        ],
        "request": {"params": {"account_id": ACCOUNT_ID}},
    }
    assert emu.received == []  # all or nothing


def test_plain_404_for_a_single_event_and_through_pixel_tokens_too(emu: EmulatorServer) -> None:
    emu.faults.not_found_wording = "plain"
    emu.world.pixels[PIXEL_ID].pixel_token = "ptk"
    response = post(emu, [event("abc")], auth=None, headers={"X-Pixel-Token": "ptk"})
    assert response.status_code == 404
    assert errors_of(response)[0]["message"] == "event_id abc does not belong to provided account"


def test_unknown_wording_is_refused() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError, match="not_found_wording must be one of"):
        plan.not_found_wording = "parentheses"
    with pytest.raises(ValueError, match="not_found_wording"):
        plan.configure({"not_found_wording": "bare"})
    assert plan.not_found_wording == "parenthesized"


# -- 401 and 403 faults -----------------------------------------------------------------------


def test_scripted_401_403_and_403_client_app(emu: EmulatorServer) -> None:
    emu.faults.script(["401", "403", "403_client_app"])
    unauthorized = send(emu, PIXEL_ID, "a", "b")
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {"errors": [UNAUTHORIZED], "request": {"params": {}}}
    forbidden = send(emu, PIXEL_ID, "c")
    assert forbidden.status_code == 403 and errors_of(forbidden) == [NO_ACCESS]
    client_app = send(emu, PIXEL_ID, "d")
    assert client_app.status_code == 403 and errors_of(client_app) == [CLIENT_APP]
    # On the wire as X writes it: < and > escaped.
    assert "set default \\u003Cusername\\u003E \\u003Ckey\\u003E" in client_app.text
    assert "with id \\u003C\\u003E making" in client_app.text
    assert emu.received == []  # a refused batch is not processed
    assert send(emu, PIXEL_ID, "e").status_code == 200
    assert received_ids(emu) == ["e"]
    log = emu.conversion_requests(PIXEL_ID)
    assert [(r["status"], r["events"]) for r in log] == [(401, 2), (403, 1), (403, 1), (200, 1)]


@pytest.mark.parametrize(
    ("rate", "status", "error"),
    [
        ("error_401", 401, UNAUTHORIZED),
        ("error_403", 403, NO_ACCESS),
        ("error_403_client_app", 403, CLIENT_APP),
    ],
)
def test_401_and_403_as_rates(
    emu: EmulatorServer, rate: str, status: int, error: dict[str, Any]
) -> None:
    emu.faults.configure({rate: 1.0})
    for n in range(3):
        response = send(emu, PIXEL_ID, str(n))
        assert response.status_code == status and errors_of(response) == [error]
    emu.faults.clear()
    assert send(emu, PIXEL_ID, "after").status_code == 200


def test_mixed_rates_are_reproducible(emu: EmulatorServer) -> None:
    def run() -> list[int]:
        emu.faults.set_rates(error_401=0.2, error_403=0.2, error_403_client_app=0.2, seed=5)
        return [send(emu, PIXEL_ID, str(n)).status_code for n in range(25)]

    first = run()
    assert first == run() and {200, 401, 403} <= set(first)
    emu.faults.set_rates(error_403=0.5, error_403_client_app=0.5, seed=1)
    seen = {errors_of(send(emu, PIXEL_ID, str(n)))[0]["code"] for n in range(20)}
    assert seen == {"ACCOUNT_LOCKED_OUT", "UNAUTHORIZED_CLIENT_APPLICATION"}


def test_rates_still_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="add up"):
        FaultPlan().set_rates(error_401=0.6, error_403_client_app=0.5)


# -- faults scoped to pixels ------------------------------------------------------------------


def test_only_pixels_refuses_one_account_while_the_other_flows(emu: EmulatorServer) -> None:
    emu.faults.only_pixels = [OTHER_PIXEL]
    emu.faults.script(["429", "401", "403"])
    statuses = [
        send(emu, PIXEL_ID, "a1").status_code,
        send(emu, OTHER_PIXEL, "b1").status_code,
        send(emu, PIXEL_ID, "a2").status_code,
        send(emu, OTHER_PIXEL, "b2").status_code,
        send(emu, PIXEL_ID, "a3").status_code,
        send(emu, OTHER_PIXEL, "b3").status_code,
        send(emu, OTHER_PIXEL, "b4").status_code,
    ]
    # The first pixel's requests consumed nothing: the script reached the other one whole.
    assert statuses == [200, 429, 200, 401, 200, 403, 200]
    assert received_ids(emu) == ["a1", "a2", "a3", "b4"]


def test_only_pixels_with_rates_and_the_429_headers(emu: EmulatorServer) -> None:
    emu.faults.only_pixels = [OTHER_PIXEL]
    emu.faults.rate_limit_reset_seconds = 30
    emu.faults.set_rates(rate_limit=1.0)
    for n in range(3):
        assert send(emu, PIXEL_ID, f"a{n}").status_code == 200
        limited = send(emu, OTHER_PIXEL, f"b{n}")
        assert limited.status_code == 429
        assert int(limited.headers["x-account-rate-limit-reset"]) >= time.time() + 28
    assert received_ids(emu) == ["a0", "a1", "a2"]
    emu.faults.only_pixels = None  # every pixel again
    assert send(emu, PIXEL_ID, "a3").status_code == 429


def test_only_pixels_keeps_other_endpoints_clear(emu: EmulatorServer) -> None:
    emu.faults.only_pixels = [OTHER_PIXEL]
    emu.faults.all_endpoints = True
    emu.faults.script(["500"])
    tags_url = f"{emu.url}/12/accounts/{OTHER_ACCOUNT}/web_event_tags"
    tags = requests.get(tags_url, auth=AUTH, timeout=5)
    assert tags.status_code == 200
    assert send(emu, OTHER_PIXEL, "b").status_code == 500  # the script was left for it


def test_only_pixels_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="list of pixel ids"):
        FaultPlan().configure({"only_pixels": "o8z6j"})


# -- latency ----------------------------------------------------------------------------------


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_delay_holds_every_answer_back_and_processes_on_arrival(emu: EmulatorServer) -> None:
    emu.faults.delay_seconds = 0.3
    response, took = timed(lambda: send(emu, PIXEL_ID, "slow"))
    assert response.status_code == 200 and 0.3 <= took < 3
    # Processed on arrival: a client that gives up at 0.1 s leaves an accepted batch.
    with pytest.raises(requests.Timeout):
        send(emu, PIXEL_ID, "gave-up", timeout=0.1)
    assert received_ids(emu) == ["slow", "gave-up"]
    # Refusals are late too, and other endpoints are not.
    emu.faults.script(["401"])
    refused, took = timed(lambda: send(emu, PIXEL_ID, "refused"))
    assert refused.status_code == 401 and took >= 0.3
    listing = requests.get(f"{emu.url}/12/accounts", auth=AUTH, timeout=5)
    assert listing.status_code == 200
    assert [r["delay"] for r in emu.requests if r["path"] == "/12/accounts"] == [0.0]
    assert [r["delay"] for r in emu.conversion_requests(PIXEL_ID)] == [0.3, 0.3, 0.3]


def test_delay_adds_to_a_timeout_fault(emu: EmulatorServer) -> None:
    emu.faults.delay_seconds = 0.2
    emu.faults.slow_seconds = 0.2
    emu.faults.script(["timeout"])
    response, took = timed(lambda: send(emu, PIXEL_ID, "x"))
    assert response.status_code == 200 and took >= 0.4


def test_stop_is_prompt_while_answers_are_delayed(emu: EmulatorServer) -> None:
    emu.faults.delay_seconds = 30
    failures: list[BaseException] = []

    def client() -> None:
        try:
            send(emu, PIXEL_ID, "held", timeout=60)
        except requests.RequestException as exc:
            failures.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    wait_until(lambda: emu.requests, 5, "the delayed request never reached the emulator")
    assert received_ids(emu) == ["held"]
    _, took = timed(emu.stop)
    thread.join(timeout=2)
    assert took < 2 and not thread.is_alive() and failures


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay_seconds must be >= 0"):
        FaultPlan().configure({"delay_seconds": -1})


# -- the per-pixel request log ----------------------------------------------------------------


def test_request_log_per_pixel_with_arrival_times(emu: EmulatorServer) -> None:
    before = time.monotonic()
    assert send(emu, PIXEL_ID, "a", "b").status_code == 200
    emu.faults.only_pixels = [OTHER_PIXEL]
    emu.faults.script(["401", "reset"])
    assert send(emu, OTHER_PIXEL, "c").status_code == 401
    middle = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        send(emu, OTHER_PIXEL, "d")
    assert send(emu, PIXEL_ID, "e").status_code == 200
    requests.get(f"{emu.url}/12/accounts", auth=AUTH, timeout=5)  # not a conversions request

    first = emu.conversion_requests(PIXEL_ID)
    assert [(r["status"], r["conversion_ids"]) for r in first] == [(200, ["a", "b"]), (200, ["e"])]
    other = emu.conversion_requests(OTHER_PIXEL)
    assert [(r["status"], r["conversion_ids"]) for r in other] == [(401, ["c"]), (None, ["d"])]
    everything = emu.conversion_requests()
    assert [r["pixel_id"] for r in everything] == [PIXEL_ID, OTHER_PIXEL, OTHER_PIXEL, PIXEL_ID]
    times = [r["monotonic"] for r in everything]
    assert before < times[0] and times == sorted(times) and times[-1] < time.monotonic()
    after_middle = emu.conversion_requests(OTHER_PIXEL, after=middle)
    assert [r["conversion_ids"] for r in after_middle] == [["d"]]
    assert emu.requests_per_pixel() == {PIXEL_ID: 2, OTHER_PIXEL: 2}
    assert emu.requests_per_pixel(after=middle) == {PIXEL_ID: 1, OTHER_PIXEL: 1}
    assert emu.requests_per_pixel(after=time.monotonic()) == {}


def test_request_log_keeps_unparseable_and_unknown_pixel_requests(emu: EmulatorServer) -> None:
    url = f"{emu.url}/12/measurement/conversions/{PIXEL_ID}"
    requests.post(url, data=b"{not json", auth=AUTH, timeout=5)
    send(emu, "zzzzz", "lost")
    assert [(r["status"], r["conversion_ids"]) for r in emu.conversion_requests(PIXEL_ID)] == [
        (400, [])
    ]
    [unknown] = emu.conversion_requests("zzzzz")
    assert unknown["status"] == 404 and unknown["conversion_ids"] == ["lost"]


def test_request_log_over_http(emu: EmulatorServer) -> None:
    send(emu, PIXEL_ID, "a")
    middle = time.monotonic()
    send(emu, OTHER_PIXEL, "b")
    send(emu, PIXEL_ID, "c")
    url = f"{emu.url}/_emulator/requests"
    everything = requests.get(url, timeout=5).json()["data"]
    assert [r["conversion_ids"] for r in everything] == [["a"], ["b"], ["c"]]
    late = requests.get(url, params={"pixel_id": PIXEL_ID, "after": repr(middle)}, timeout=5)
    assert [(r["pixel_id"], r["conversion_ids"]) for r in late.json()["data"]] == [
        (PIXEL_ID, ["c"])
    ]
    bad = requests.get(url, params={"after": "soon"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["errors"][0]["parameter"] == "after"


# -- conversion_time: both documented forms ---------------------------------------------------


@pytest.mark.parametrize(
    "value", ["2017-10-05T00:00:00Z", "2022-02-18T01:14:00.603Z", "2024-02-29T23:59:59Z"]
)
def test_both_documented_time_forms_are_accepted(emu: EmulatorServer, value: str) -> None:
    response = post(emu, [event(tag_of(PIXEL_ID), conversion_time=value)])
    assert response.status_code == 200, response.text
    assert emu.received[0]["conversion"]["conversion_time"] == value


@pytest.mark.parametrize(
    "value",
    [
        "2022-06-16T01:14:00",  # no Z
        "2022-06-16T01:14:00.603",
        "2022-06-16T01:14:00.60Z",  # two digits of milliseconds
        "2022-06-16T01:14:00.6034Z",
        "2022-06-16T01:14:00.Z",
        "2022-06-16T01:14Z",
        "2022-06-16 01:14:00Z",
        "2022-06-16T01:14:00+00:00",
        "2022-06-16T01:14:00z",
        "2023-02-29T01:14:00Z",  # no such day
        "2022-06-16T24:00:00Z",
        "1655342040",
        "",
    ],
)
def test_other_time_forms_are_refused_with_the_documented_message(
    emu: EmulatorServer, value: str
) -> None:
    response = post(emu, [event(tag_of(PIXEL_ID), conversion_time=value)])
    assert response.status_code == 400
    assert errors_of(response) == [
        {
            "code": "INVALID_PARAMETER",
            "message": TIME_MESSAGE.format(value),
            "parameter": "conversion_time",
        }
    ]
    assert emu.received == []


# -- signatures stay enforced under every option ----------------------------------------------


def test_signatures_are_still_checked_with_every_option(emu: EmulatorServer) -> None:
    emu.faults.configure(
        {
            "not_found_wording": "plain",
            "only_pixels": [OTHER_PIXEL],
            "delay_seconds": 0.1,
            "script": ["403"],
        }
    )
    # A wrong signature is a 401 before any event is looked at: not the 404 of "abc".
    forged = post(emu, [event("abc")], auth=BAD_SIGNATURE)
    assert forged.status_code == 401 and errors_of(forged) == [UNAUTHORIZED]
    forged_time = post(
        emu, [event(tag_of(PIXEL_ID), conversion_time="2017-10-05T00:00:00Z")], auth=BAD_SIGNATURE
    )
    assert forged_time.status_code == 401
    assert post(emu, [event(tag_of(PIXEL_ID))], auth=None).status_code == 401
    assert emu.received == []
    # The scoped script still waits for its pixel, and the other pixel's answers are normal.
    assert send(emu, OTHER_PIXEL, "b").status_code == 403
    assert send(emu, OTHER_PIXEL, "b").status_code == 200
    assert [r["auth"] for r in emu.conversion_requests(PIXEL_ID)] == [None, None, None]


# -- --config and the command line ------------------------------------------------------------


def config_world() -> dict[str, Any]:
    return {
        "apps": [{"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET}],
        "users": [{"user_id": USER_ID, "access_token": TOKEN, "access_token_secret": TOKEN_SECRET}],
        "accounts": [
            {
                "account_id": account,
                "users": {USER_ID: ["AD_MANAGER"]},
                "pixels": [{"pixel_id": pixel}],
                "tags": [{"name": "Purchase", "website_tag_id": tag_of(pixel)}],
            }
            for account, pixel in ((ACCOUNT_ID, PIXEL_ID), (OTHER_ACCOUNT, OTHER_PIXEL))
        ],
        "faults": {
            "script": ["401", "403_client_app"],
            "only_pixels": [OTHER_PIXEL],
            "delay_seconds": 0.2,
            "not_found_wording": "plain",
        },
    }


def test_config_sets_every_option(tmp_path: Any) -> None:
    config = tmp_path / "world.json"
    config.write_text(json.dumps(config_world()))
    server = build(parse_args(["--port", "0", "--config", str(config)]))
    assert server.faults.only_pixels == frozenset({OTHER_PIXEL})
    assert server.faults.delay_seconds == 0.2
    assert server.faults.not_found_wording == "plain"
    assert server.faults.next(PIXEL_ID) == "ok"
    assert server.faults.next(OTHER_PIXEL) == "401"


def test_config_names_an_unknown_fault_option(tmp_path: Any) -> None:
    world = config_world()
    world["faults"]["delay"] = 1
    config = tmp_path / "world.json"
    config.write_text(json.dumps(world))
    with pytest.raises(ValueError, match=r"unknown fault options \['delay'\]"):
        build(parse_args(["--port", "0", "--config", str(config)]))


def test_command_line_config_over_http(tmp_path: Any) -> None:
    config = tmp_path / "world.json"
    config.write_text(json.dumps(config_world()))
    command = [sys.executable, "-m", "django_xconversions.emulator", "--port", "0"]
    process = subprocess.Popen(  # noqa: S603
        [*command, "--config", str(config)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]

        def send_to(pixel: str, conversion_id: str, event_id: str | None = None) -> Any:
            body = {"conversions": [event(event_id or tag_of(pixel), conversion_id=conversion_id)]}
            started = time.monotonic()
            answer = requests.post(
                f"{url}/12/measurement/conversions/{pixel}", json=body, auth=AUTH, timeout=5
            )
            return answer, time.monotonic() - started

        ok, took = send_to(PIXEL_ID, "a")
        assert ok.status_code == 200 and took >= 0.2
        refused, _ = send_to(OTHER_PIXEL, "b")
        assert refused.status_code == 401
        client_app, _ = send_to(OTHER_PIXEL, "c")
        assert client_app.status_code == 403 and client_app.json()["errors"] == [CLIENT_APP]
        unknown, _ = send_to(PIXEL_ID, "d", event_id="abc")
        assert unknown.json()["errors"][0]["message"] == (
            "event_id abc does not belong to provided account"
        )
        log = requests.get(f"{url}/_emulator/requests", timeout=5).json()["data"]
        assert [(r["pixel_id"], r["status"]) for r in log] == [
            (PIXEL_ID, 200),
            (OTHER_PIXEL, 401),
            (OTHER_PIXEL, 403),
            (PIXEL_ID, 404),
        ]
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()


def test_help_documents_the_config_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for option in (
        "not_found_wording",
        "only_pixels",
        "delay_seconds",
        '"401"',
        '"403"',
        '"403_client_app"',
        "error_401",
        "error_403_client_app",
        "/_emulator/requests",
    ):
        assert option in text, option
    # The example in the help is itself a valid --config file.
    example = text[text.index("{", text.index("Example")) : text.rindex("}") + 1]
    world = json.loads(example)
    server = build(parse_args(["--port", "0"]))
    seed(server, world)
    assert server.faults.only_pixels is not None


def test_manage_py_help_documents_the_config_format_too() -> None:
    from django_xconversions.management.commands.xads_emulator import Command

    text = Command().create_parser("manage.py", "xads_emulator").format_help()
    assert '"only_pixels"   [pixel ids]' in text  # printed as written, not re-wrapped
    assert all(name in text for name in ("not_found_wording", "delay_seconds", "403_client_app"))


# -- the emulated clock -----------------------------------------------------------------------


def test_budget_windows_follow_the_injected_clock(emu: EmulatorServer) -> None:
    emu.clock = clock = ManualClock(start=int(time.time()) + 0.25)
    emu.set_budget(2, 60)
    assert send(emu, PIXEL_ID, "a", "b").status_code == 200
    refused = send(emu, PIXEL_ID, "c")
    assert refused.status_code == 429
    # The window opened at the first request; its reset is announced rounded up.
    assert int(refused.headers["x-account-rate-limit-reset"]) == math.ceil(clock() + 60)
    clock.advance(59.5)
    assert send(emu, PIXEL_ID, "c").status_code == 429  # half a second early: same window
    clock.advance(0.5)
    again = send(emu, PIXEL_ID, "c")
    assert again.status_code == 200
    assert again.headers["x-account-rate-limit-remaining"] == "1"
    assert int(again.headers["x-account-rate-limit-reset"]) == math.ceil(clock() + 60)


def test_rate_limit_fault_resets_from_the_injected_clock(emu: EmulatorServer) -> None:
    emu.clock = clock = ManualClock(start=time.time() + 200)
    emu.faults.rate_limit_reset_seconds = 7
    emu.faults.script(["429"])
    refused = send(emu, PIXEL_ID, "a")
    assert refused.status_code == 429
    assert refused.headers["x-rate-limit-reset"] == str(int(clock()) + 7)
    assert refused.headers["x-account-rate-limit-reset"] == str(int(clock()) + 7)


def test_oauth_timestamps_are_judged_by_the_injected_clock(emu: EmulatorServer) -> None:
    # The client signs with the real time; the emulated X's clock runs ahead of it.
    emu.clock = clock = ManualClock()
    clock.advance(290)
    assert send(emu, PIXEL_ID, "a").status_code == 200
    clock.advance(20)
    refused = send(emu, PIXEL_ID, "b")
    assert refused.status_code == 401
    assert errors_of(refused) == [UNAUTHORIZED]
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
