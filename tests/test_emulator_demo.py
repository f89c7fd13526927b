"""The emulator's demo mode, for local development: Connect with X from a project served
on any loopback port, while every other world keeps X's exact-match callback allowlist;
what ``--demo`` prints; the read-only page of what a pixel's requests carried."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests_oauthlib import OAuth1

from django_xconversions.emulator import EmulatorServer, demo_world, seed
from django_xconversions.emulator import faults as faults_module
from django_xconversions.emulator.demo import demo_settings, demo_summary
from django_xconversions.emulator.faults import RATE_NAMES
from django_xconversions.emulator.oauth_flow import CALLBACK_NOT_APPROVED, is_loopback_callback
from django_xconversions.emulator.world import World
from tests.helpers.emulated_x import event

ROOT = Path(__file__).resolve().parent.parent

WORLD = demo_world()
APP, USER = WORLD["apps"][0], WORLD["users"][0]
PIXEL = WORLD["accounts"][0]["pixels"][0]
ADMIN_PATH = "/admin/xconversions/adaccount/connect/callback/"
LOOPBACK = [
    f"http://127.0.0.1:18120{ADMIN_PATH}",
    f"http://localhost:5173{ADMIN_PATH}",
    f"http://[::1]:8001{ADMIN_PATH}",
    "http://127.0.0.1/elsewhere/cb?next=/admin/",  # any path, default port, a query
    "https://localhost:8443/cb/",
]
NOT_LOOPBACK = [
    f"http://shop.example:8000{ADMIN_PATH}",
    f"http://127.0.0.1.shop.example:8000{ADMIN_PATH}",
    f"http://localhost.shop.example{ADMIN_PATH}",
    f"http://10.0.0.5:8000{ADMIN_PATH}",
    f"http://127.0.0.1:99999{ADMIN_PATH}",  # not a port
    f"http://user@shop.example{ADMIN_PATH}",
    "javascript://127.0.0.1/%0aalert(1)",
    "ftp://127.0.0.1/cb/",
]
# X's wording, kept as X answers it (no full stop: the reference gives none other).
NOT_APPROVED = {"errors": [{"code": 415, "message": CALLBACK_NOT_APPROVED[1]}]}


def _emulator(world: dict[str, Any]) -> Iterator[EmulatorServer]:
    emu = EmulatorServer(host="127.0.0.1", port=0)
    seed(emu, world)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def demo() -> Iterator[EmulatorServer]:
    yield from _emulator(demo_world())


@pytest.fixture
def faithful() -> Iterator[EmulatorServer]:
    """The same world without demo mode: X's own allowlist rule."""
    world = demo_world()
    del world["apps"][0]["loopback_callbacks"]
    yield from _emulator(world)


def request_token(emu: EmulatorServer, callback: str) -> requests.Response:
    auth = OAuth1(APP["consumer_key"], APP["consumer_secret"], callback_uri=callback)
    return requests.post(f"{emu.url}/oauth/request_token", auth=auth, timeout=5)


def test_x_wording_of_the_refusal_is_kept() -> None:
    assert CALLBACK_NOT_APPROVED == (
        415,
        "Callback URL not approved for this client application. Approved callback URLs "
        "can be adjusted in your application settings",
    )


@pytest.mark.parametrize("url", LOOPBACK)
def test_loopback_rule_accepts(url: str) -> None:
    assert is_loopback_callback(url)


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_loopback_rule_refuses(url: str) -> None:
    assert not is_loopback_callback(url)


def test_demo_mode_approves_any_loopback_callback(demo: EmulatorServer) -> None:
    for url in LOOPBACK:
        answer = request_token(demo, url)
        assert answer.status_code == 200, (url, answer.text)
        assert parse_qs(answer.text)["oauth_callback_confirmed"] == ["true"]


def test_demo_mode_still_refuses_other_hosts(demo: EmulatorServer) -> None:
    for url in NOT_LOOPBACK:
        answer = request_token(demo, url)
        assert (answer.status_code, answer.json()) == (403, NOT_APPROVED), url


def test_outside_demo_mode_only_the_allowlisted_callback_passes(
    faithful: EmulatorServer,
) -> None:
    [allowlisted] = APP["callback_urls"]
    assert request_token(faithful, allowlisted).status_code == 200
    assert request_token(faithful, "oob").status_code == 200
    for url in [*LOOPBACK, f"http://127.0.0.1:8001{ADMIN_PATH}", *NOT_LOOPBACK]:
        answer = request_token(faithful, url)
        assert (answer.status_code, answer.json()) == (403, NOT_APPROVED), url
    # Seeding keeps refusing what X's portal refuses, demo mode or not.
    with pytest.raises(ValueError, match="localhost"):
        faithful.allow_callback(APP["consumer_key"], f"http://localhost:8000{ADMIN_PATH}")


def test_demo_mode_is_per_app_and_for_known_apps_only(demo: EmulatorServer) -> None:
    demo.add_app("other-key", "other-secret")
    auth = OAuth1("other-key", "other-secret", callback_uri=LOOPBACK[0])
    answer = requests.post(f"{demo.url}/oauth/request_token", auth=auth, timeout=5)
    assert (answer.status_code, answer.json()) == (403, NOT_APPROVED)
    with pytest.raises(KeyError):
        demo.allow_loopback_callbacks("no-such-app")


def test_connect_from_runserver_on_another_port_completes(demo: EmulatorServer) -> None:
    callback = f"http://127.0.0.1:18120{ADMIN_PATH}"
    tokens = parse_qs(request_token(demo, callback).text)
    token, secret = tokens["oauth_token"][0], tokens["oauth_token_secret"][0]
    page = requests.get(demo.authorize_url(token), timeout=5)
    fields = dict(re.findall(r"name='(\w+)' value='([^']*)'", page.text))
    approved = requests.post(
        f"{demo.url}/oauth/authorize",
        data={**fields, "user_id": USER["user_id"], "action": "authorize"},
        allow_redirects=False,
        timeout=5,
    )
    assert approved.status_code == 302
    location = urlsplit(approved.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == callback
    verifier = parse_qs(location.query)["oauth_verifier"][0]
    auth = OAuth1(
        APP["consumer_key"],
        APP["consumer_secret"],
        token,
        secret,
        verifier=verifier,
    )
    access = requests.post(f"{demo.url}/oauth/access_token", auth=auth, timeout=5)
    assert access.status_code == 200
    assert parse_qs(access.text)["screen_name"] == [USER["screen_name"]]


# -- what --demo prints --------------------------------------------------------------------


def run_demo(*extra: str, module: list[str] | None = None) -> list[str]:
    """The lines the emulator prints at start-up with --demo (then it is stopped)."""
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(extra_env(module))
    command = module or ["-m", "django_xconversions.emulator"]
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, *command, "--port", "0", "--demo", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(("Ctrl-C", "{")):
                break
    finally:
        process.terminate()
        process.wait(10)
    return lines


def extra_env(module: list[str] | None) -> dict[str, str]:
    # manage.py xads_emulator needs a settings module; the bare emulator must not.
    return {"DJANGO_SETTINGS_MODULE": "tests.settings"} if module else {}


def test_demo_prints_credentials_ids_and_settings_readably() -> None:
    lines = run_demo()
    url = lines[0].rsplit(" ", 1)[-1]
    assert lines[0] == f"X Ads API emulator listening on {url}"
    text = "\n".join(lines)
    for label, value in [
        ("consumer key", APP["consumer_key"]),
        ("consumer secret", APP["consumer_secret"]),
        ("access token", USER["access_token"]),
        ("access token secret", USER["access_token_secret"]),
        ("ad account id", WORLD["accounts"][0]["account_id"]),
        ("pixel id", PIXEL["pixel_id"]),
    ]:
        assert re.search(rf"^  {label} +{re.escape(value)}\b", text, re.M), (label, text)
    assert demo_settings(url) in text
    assert f"{url}/_emulator/pixels/{PIXEL['pixel_id']}" in text
    assert not any(line.startswith("{") for line in lines)  # no JSON blob by default


def test_pasted_settings_point_at_the_emulator() -> None:
    namespace: dict[str, Any] = {"XCONVERSIONS": {"ENCRYPTION_KEY": "kept", "SOURCES": []}}
    exec(demo_settings("http://127.0.0.1:8765"), namespace)  # noqa: S102
    assert namespace["XCONVERSIONS"] == {
        "ENCRYPTION_KEY": "kept",
        "SOURCES": [],
        "API_BASE_URL": "http://127.0.0.1:8765",
        "OAUTH_BASE_URL": "http://127.0.0.1:8765",
        "CONSUMER_KEY": APP["consumer_key"],
        "CONSUMER_SECRET": APP["consumer_secret"],
    }


def test_demo_json_keeps_the_machine_readable_world() -> None:
    lines = run_demo("--json")
    assert len(lines) == 2 and json.loads(lines[1]) == demo_world()


def test_manage_py_xads_emulator_demo_prints_the_same_block() -> None:
    lines = run_demo(module=["-m", "django", "xads_emulator"])
    assert lines[0].startswith("X Ads API emulator listening on http://127.0.0.1:")
    assert any(line.startswith("  consumer key ") for line in lines)
    assert lines[-1].startswith("Ctrl-C stops the emulator")


# -- the page of what a pixel's requests carried ------------------------------------------


def test_pixel_page_shows_what_x_received_escaped(demo: EmulatorServer) -> None:
    hostile = "<script>alert(1)</script>"
    headers = {"X-Pixel-Token": PIXEL["pixel_token"]}
    url = f"{demo.url}/12/measurement/conversions/{PIXEL['pixel_id']}"
    for conversion_id in ("shop.order:7", hostile):
        body = {"conversions": [event("ny3od", conversion_id=conversion_id)]}
        assert requests.post(url, json=body, headers=headers, timeout=5).status_code == 200

    page = requests.get(f"{demo.url}/_emulator/pixels/{PIXEL['pixel_id']}", timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert hostile not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert page.text.count("<td>shop.order:7</td>") == 2  # the conversion and its request

    one = requests.get(
        f"{demo.url}/_emulator/pixels/{PIXEL['pixel_id']}",
        params={"conversion_id": "shop.order:7"},
        timeout=5,
    ).text
    assert "shop.order:7" in one and "alert(1)" not in one
    assert "&quot;event_id&quot;: &quot;ny3od&quot;" in one  # the payload as X took it

    other = requests.get(f"{demo.url}/_emulator/pixels/nope", timeout=5).text
    assert "Nothing yet" in other and "No request yet." in other


# -- README: "Developing against the local emulator" ----------------------------------


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Developing against the local emulator\n")
    return readme[start : readme.index("\n## ", start + 1)]


def fenced(section: str, language: str) -> list[str]:
    """The bodies of the section's fenced blocks written in ``language`` ("" for none)."""
    blocks: list[str] = []
    body: list[str] | None = None
    opened = ""
    for line in section.splitlines():
        if body is None and line.startswith("```"):
            body, opened = [], line[3:].strip()
        elif body is not None and line == "```":
            if opened == language:
                blocks.append("\n".join(body) + "\n")
            body = None
        elif body is not None:
            body.append(line)
    return blocks


def test_readme_settings_are_what_demo_prints() -> None:
    [python] = fenced(readme_section(), "python")
    assert python.rstrip("\n") == demo_settings("http://127.0.0.1:8765")


def test_readme_demo_block_is_what_demo_prints() -> None:
    [printed, *_] = [block for block in fenced(readme_section(), "") if "Demo world" in block]
    summary = demo_summary("http://127.0.0.1:8765")
    expected = ["X Ads API emulator listening on http://127.0.0.1:8765", *summary.splitlines()]
    shown = printed.rstrip("\n").splitlines()
    assert shown == expected[: len(shown)]
    assert any("consumer secret" in line for line in shown) and any(
        "pixel id" in line for line in shown
    )


def test_readme_config_example_is_the_example_file_and_seeds() -> None:
    [shown] = fenced(readme_section(), "json")
    path = ROOT / "example_project" / "emulator-world.json"
    assert json.loads(shown) == json.loads(path.read_text())
    emu = EmulatorServer(host="127.0.0.1", port=0)
    seed(emu, json.loads(shown))  # a valid world
    assert "p1q2r" in emu.world.pixels
    assert f"--config {path.relative_to(ROOT)}" in readme_section()


def test_readme_describes_every_config_key() -> None:
    section = readme_section()
    table = section[section.index("| Key |") :]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:] if "|" in line}
    top = {"apps", "users", "accounts", "pixels", "tags", "budget", "faults", "record"}
    assert {"reject_conversion_ids", *top} <= {
        key.strip("`") for row in rows for key in row.split(", ")
    }
    described = {
        "`apps`": ["consumer_key", "consumer_secret", "callback_urls", "loopback_callbacks"],
        "`users`": ["user_id", "screen_name", "access_token", "access_token_secret"],
        "`accounts`": ["account_id", "name", "users", "pixels", "tags"],
        "`accounts[].pixels`": ["pixel_id", "pixel_token"],
        "`accounts[].tags`": [
            name
            for name in inspect.signature(World.add_tag).parameters
            if name not in ("self", "account_id")
        ],
        "`faults`": [
            "script",
            "only_pixels",
            "not_found_wording",
            "seed",
            *RATE_NAMES,
            *faults_module._NUMBERS,
            *faults_module._FLAGS,
        ],
    }
    for row, keys in described.items():
        missing = [key for key in keys if f"`{key}`" not in rows[row]]
        assert not missing, (row, missing)
