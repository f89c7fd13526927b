"""The example shop (example_project/) run as users run it: through its own manage.py,
settings, urls and SOURCES, in subprocesses on a temporary SQLite database.

Its app label "shop" is taken by the test suite's own shop, so the shop flow itself is
tested by the example's Django tests (``manage.py test shop``), run here."""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_until
from tests.helpers.example_project import (
    EVIL,
    MANAGE_PY,
    ROOT,
    example_env,
    free_port,
    listening,
    manage,
    rows,
    stop,
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return example_env(tmp_path / "shop.sqlite3")


def test_system_checks_pass_and_migrations_are_complete(env: dict[str, str]) -> None:
    assert "no issues" in manage(env, "check")
    manage(env, "makemigrations", "--check", "--dry-run")


def test_shop_flow(env: dict[str, str]) -> None:
    """Sign-up, cart, checkout, pay: the conversions SOURCES record, the pixel event."""
    output = manage(env, "test", "shop", "--noinput")
    assert "OK" in output


def test_run_shop_no_serve_sets_up_the_demo(tmp_path: Path, env: dict[str, str]) -> None:
    database = tmp_path / "shop.sqlite3"
    output = manage(env, "run_shop", "--no-serve", "--emulator-port", "0")
    assert "tags synced from the emulator: 2 created" in output
    assert "event tag 'purchase'" in output and "event tag 'sign_up'" in output
    assert "Admin login: admin / admin" in output
    assert rows(database, "SELECT account_id, status FROM xconversions_adaccount") == [
        ("18ce54d4x5t", "active")
    ]
    tags = rows(
        database,
        "SELECT t.key, t.type, p.pixel_id FROM xconversions_eventtag t "
        "JOIN xconversions_pixel p ON p.id = t.pixel_id ORDER BY t.key",
    )
    assert tags == [("purchase", "PURCHASE", "o8z6j"), ("sign_up", "SIGN_UP", "o8z6j")]
    assert rows(database, "SELECT is_superuser FROM auth_user WHERE username = 'admin'") == [(1,)]
    # A neutral catalogue: markup in shop data is proven harmless by tests, not shown.
    names = [name for (name,) in rows(database, "SELECT name FROM shop_product")]
    assert "Dog bed" in names and EVIL not in names
    assert not [name for name in names if set(name) & set("<>&")]

    again = manage(env, "run_shop", "--no-serve", "--emulator-port", "0")
    assert "0 created, 0 updated, 2 unchanged" in again
    assert "Admin login: admin (existing user, password unchanged)" in again


def test_run_shop_serves_until_ctrl_c(env: dict[str, str]) -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, str(MANAGE_PY), "run_shop", "--port", str(port), "--emulator-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any(line.startswith("Conversions are sent by") for line in seen):
            assert process.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        text = "".join(seen)
        site = f"http://127.0.0.1:{port}"
        assert f"Shop:          {site}/" in text
        assert f"Admin:         {site}/admin/   login: admin / admin" in text
        emulator = next(line.split()[2] for line in seen if line.startswith("X emulator:"))
        page = requests.get(f"{site}/products/", timeout=10)
        assert page.status_code == 200
        assert "twq('config',\"o8z6j\")" in page.text
        assert '<h3 class="name">Dog bed</h3>' in page.text
        stylesheet = requests.get(f"{site}/static/shop/shop.css", timeout=10)
        assert stylesheet.status_code == 200 and "text/css" in stylesheet.headers["Content-Type"]
        assert requests.get(f"{site}/admin/login/", timeout=10).status_code == 200
        assert requests.get(f"{emulator}/_emulator/received", timeout=10).status_code == 200

        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground job
        assert process.wait(30) == 0
        emulator_port = int(emulator.rsplit(":", 1)[1])
        wait_until(
            lambda: not listening(port) and not listening(emulator_port),
            10,
            "the shop or its emulator still listens after Ctrl-C",
        )
    finally:
        stop(process, signal.SIGKILL)
    while not lines.empty():
        seen.append(lines.get())
    assert "Stopped." in "".join(seen)


def test_make_demo_still_runs(env: dict[str, str]) -> None:
    output = manage(env, "demo", "--orders", "40", "--sign-ups", "10")
    assert "Synced tags from the emulator: 2 created" in output
    assert "The emulator received" in output
    assert "failed demo-order-17" in output
    assert "Demo finished in" in output


def make_run_command(**variables: str) -> list[str]:
    """The command ``make run`` runs with these variables (make -n: nothing is run; the
    install step is taken as done)."""
    assignments = [f"{name}={value}" for name, value in variables.items()]
    result = subprocess.run(  # noqa: S603
        ["make", "-n", "-o", ".venv/.installed", "run", *assignments],  # noqa: S607
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in {"PORT", "EMULATOR_PORT"}},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    [line] = [line for line in result.stdout.splitlines() if "run_shop" in line]
    return shlex.split(line)


def test_make_run_keeps_its_default_ports() -> None:
    assert make_run_command()[-2:] == ["example_project/manage.py", "run_shop"]


def test_make_run_passes_its_ports_to_run_shop(env: dict[str, str]) -> None:
    port, emulator_port = free_port(), free_port()
    command = make_run_command(PORT=str(port), EMULATOR_PORT=str(emulator_port))
    assert command[-5:] == [
        "run_shop",
        "--port",
        str(port),
        "--emulator-port",
        str(emulator_port),
    ]
    # run_shop takes them: the emulator it starts listens on EMULATOR_PORT (the web
    # server's --port is checked by test_run_shop_serves_until_ctrl_c).
    output = manage(env, *command[command.index("run_shop") :], "--no-serve")
    assert f"X Ads API emulator: http://127.0.0.1:{emulator_port}\n" in output
