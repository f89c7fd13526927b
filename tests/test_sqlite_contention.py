"""The example shop on SQLite (its default, as ``make run`` starts it) under 20 concurrent
shoppers while its looping sender drains: no server error, the sender never dies, every
sign-up and paid order reaches the emulator.

run_shop starts the web server and the worker as users start them (the worker polling
every fraction of a second instead of every 5 s, so that it drains while the shoppers
write); the shoppers are threads with their own sessions (CSRF cookie and token, as a
browser sends them)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from django_xconversions.emulator import EmulatorServer, demo_world, seed
from tests.helpers import holds_for, wait_until
from tests.helpers.example_project import (
    MANAGE_PY,
    example_env,
    free_port,
    manage,
    quick_sender,
    rows,
    stop,
    wait_listening,
    with_settings,
)

pytestmark = pytest.mark.slow

# How long a process is given to do what a test waits for.
WAIT = 30
SHOPPERS = 20
ORDERS_EACH = 3
DEADLINE = 60.0
# The sender's SQLite lock timeout where another process holds the write lock past it
# (the example's own is 20 s).
LOCK_TIMEOUT = 0.1


class Shop:
    """run_shop in a child process; its console output collected line by line."""

    def __init__(self, url: str, database: Path, process: subprocess.Popen[str]) -> None:
        self.url, self.database, self.process = url, database, process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def live_workers(self) -> list[int]:
        return [
            pid
            for (pid,) in rows(
                self.database,
                "SELECT pid FROM xconversions_workerheartbeat WHERE stopped_at IS NULL",
            )
        ]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """run_shop as ``make run`` starts it, its sender looking for due rows every fraction
    of a second (quick_sender) rather than every 5 s: it drains while the shoppers shop
    (polling every 5 s, it had sent nothing by the time they were done in a measured
    run), and a test waiting for a conversion to be sent is not waiting for the poll."""
    emulator = EmulatorServer(host="127.0.0.1", port=0)
    seed(emulator, demo_world())
    emulator.start()
    database = tmp_path / "shop.sqlite3"
    env = quick_sender(example_env(database, X_API_BASE_URL=emulator.url), tmp_path)
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            str(MANAGE_PY),
            "run_shop",
            "--no-emulator",
            "--noreload",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_listening(port, process)
        yield Shop(f"http://127.0.0.1:{port}", database, process)
    finally:
        stop(process)
        emulator.stop()


def csrf(session: requests.Session) -> str:
    return str(session.cookies["csrftoken"])


class Shopper:
    """One visitor from an ad: signs up, then buys and pays ``ORDERS_EACH`` times."""

    def __init__(self, shop: Shop, number: int, products: list[int]) -> None:
        self.shop, self.number, self.products = shop, number, products
        self.session = requests.Session()
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.paid = 0

    def request(self, method: str, path: str, **data: Any) -> requests.Response:
        url = f"{self.shop.url}{path}"
        if method == "POST":
            data["csrfmiddlewaretoken"] = csrf(self.session)
            response = self.session.post(url, data=data, timeout=30, headers={"Referer": url})
        else:
            response = self.session.get(url, params=data, timeout=30)
        for hop in [*response.history, response]:
            self.statuses[hop.status_code] += 1
            if hop.status_code >= 500:
                self.errors.append(f"{method} {path}: {hop.status_code} {hop.text[:200]}")
        return response

    def run(self) -> None:
        try:
            self.request("GET", "/", twclid=f"contention{self.number:04d}click")
            self.request("GET", "/sign-up/")
            self.request("POST", "/sign-up/", email=f"shopper{self.number}@example.com", phone="")
            for n in range(ORDERS_EACH):
                product = self.products[(self.number + n) % len(self.products)]
                self.request("POST", "/cart/add/", product=product, quantity=1 + n)
                placed = self.request("POST", "/checkout/")
                match = re.search(r"/orders/(\d+)/$", placed.url)
                if match is None:
                    self.errors.append(f"checkout did not lead to an order: {placed.url}")
                    continue
                paid = self.request("POST", f"/orders/{match.group(1)}/pay/")
                if paid.ok:
                    self.paid += 1
        except Exception as exc:
            self.errors.append(repr(exc))


def statuses(database: Path) -> Counter[tuple[str, str]]:
    return Counter(
        rows(
            database,
            "SELECT t.key, c.status FROM xconversions_conversion c "
            "JOIN xconversions_eventtag t ON t.id = c.event_tag_id",
        )
    )


def test_twenty_shoppers_and_a_looping_sender_on_sqlite(shop: Shop) -> None:
    started = time.monotonic()
    products = [pk for (pk,) in rows(shop.database, "SELECT id FROM shop_product ORDER BY id")]
    shoppers = [Shopper(shop, n, products) for n in range(SHOPPERS)]
    threads = [threading.Thread(target=s.run) for s in shoppers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    errors = [e for s in shoppers for e in s.errors]
    assert errors == [], errors[:5]
    assert sum(s.paid for s in shoppers) == SHOPPERS * ORDERS_EACH
    expected = {("sign_up", "sent"): SHOPPERS, ("purchase", "sent"): SHOPPERS * ORDERS_EACH}

    def all_sent() -> bool:
        assert shop.process.poll() is None, "run_shop exited"
        return statuses(shop.database) == expected

    wait_until(
        all_sent,
        started + DEADLINE - time.monotonic(),
        lambda: f"not everything was sent: {statuses(shop.database)}",
    )
    assert shop.process.poll() is None
    workers = rows(shop.database, "SELECT pid, stopped_at FROM xconversions_workerheartbeat")
    assert len(workers) == 1 and workers[0][1] is None, "one worker, never restarted"
    assert "restart" not in shop.output().lower(), shop.output()
    assert "database is locked" not in shop.output(), shop.output()


def test_run_shop_restarts_its_sender_and_says_so(shop: Shop) -> None:
    wait_until(lambda: len(shop.live_workers()) == 1, WAIT, "the sender never beat")
    [first] = shop.live_workers()
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: any("restarted the sender" in line.lower() for line in shop.lines),
        WAIT,
        "run_shop did not restart the sender",
    )
    assert f"exited with status {-signal.SIGKILL}; restarting it in 1 s." in shop.output()
    wait_until(lambda: shop.live_workers() not in ([], [first]), WAIT, "the new sender never beat")
    # The new sender sends: a visitor signs up, X receives it.
    shopper = Shopper(shop, 1, [])
    shopper.request("GET", "/sign-up/")
    shopper.request("POST", "/sign-up/", email="after-restart@example.com", phone="")
    wait_until(
        lambda: statuses(shop.database) == {("sign_up", "sent"): 1},
        WAIT,
        "the restarted sender did not send",
    )
    assert shop.process.poll() is None


def test_the_sender_outlives_a_database_locked_past_its_timeout(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock longer than the sender's lock timeout: the
    sender reports the outage once, waits it out, reports the recovery and sends on."""
    emulator = EmulatorServer(host="127.0.0.1", port=0)
    seed(emulator, demo_world())
    emulator.start()
    database = tmp_path / "shop.sqlite3"
    env = example_env(database, X_API_BASE_URL=emulator.url)
    manage(env, "run_shop", "--no-serve", "--no-emulator")
    env = with_settings(
        env,
        tmp_path,
        "short_lock_timeout",
        f'DATABASES["default"]["OPTIONS"]["timeout"] = {LOCK_TIMEOUT}',
        'XCONVERSIONS["LOOP_IDLE_SECONDS"] = 0.1',
    )
    track = (
        "from django_xconversions import track; "
        "track('sign_up', email='{0}@example.com', conversion_id='{0}')"
    )
    manage(env, "shell", "-c", track.format("before"))
    worker = subprocess.Popen(  # noqa: S603
        [sys.executable, str(MANAGE_PY), "send_conversions", "--loop"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: statuses(database) == {("sign_up", "sent"): 1}, WAIT, "nothing sent")
        with sqlite3.connect(database, isolation_level=None) as lock:
            lock.execute("BEGIN EXCLUSIVE")  # the write lock, held for 10 lock timeouts
            wait_until(
                lambda: any("Database unavailable" in line for line in lines),
                WAIT,
                "the sender never met the lock",
            )
            holds_for(lambda: worker.poll() is None, 10 * LOCK_TIMEOUT, lambda: "".join(lines))
            lock.execute("COMMIT")
        manage(env, "shell", "-c", track.format("after"))
        wait_until(
            lambda: statuses(database) == {("sign_up", "sent"): 2}, WAIT, "nothing sent after"
        )
        assert worker.poll() is None
    finally:
        stop(worker)
        emulator.stop()
    output = "".join(lines)
    assert worker.returncode == 0, output
    assert output.count("Database unavailable (OperationalError: database is locked)") == 1
    assert output.count("Database available again") == 1
    assert sorted(r["conversion"]["conversion_id"] for r in emulator.received) == [
        "after",
        "before",
    ]
