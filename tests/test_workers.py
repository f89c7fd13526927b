"""Several worker processes on PostgreSQL: SKIP LOCKED claims, leases and the shared budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_xconversions import delivery
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import Conversion, EventTag

from .conftest import make_conversions, received_ids

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_worker(emulator: EmulatorServer, *args: str, **overrides: Any) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "XCONVERSIONS_TEST_OVERRIDES": json.dumps({"API_BASE_URL": emulator.url, **overrides}),
    }
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "django", "send_conversions", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(message)


def test_worker_killed_after_claiming_leaves_rows_for_the_next_worker(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 50)
    emulator.faults.slow_seconds = 30
    emulator.faults.script(["timeout"])
    worker = start_worker(emulator, LEASE_SECONDS=2, READ_TIMEOUT=60)
    try:
        wait_for(
            lambda: Conversion.objects.filter(status="sending").count() == 50,
            30,
            "the worker never claimed the rows",
        )
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert Counter(Conversion.objects.values_list("status", flat=True)) == {"sending": 50}
    assert delivery.send_pending().sent == 0, "the dead worker's lease still holds"
    time.sleep(2.1)
    summary = delivery.send_pending()
    assert summary.sent == 50
    assert set(received_ids(emulator)) == {f"order:{n}" for n in range(50)}


def test_four_workers_drain_20000_once_each_within_a_shared_budget(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    budget_events, window = 5000, 1.0
    emulator.set_budget(budget_events, window)
    make_conversions(purchase_tag, 20_000)
    started = time.monotonic()
    workers = [
        start_worker(
            emulator,
            "--loop",
            RATE_LIMIT_EVENTS=budget_events,
            RATE_LIMIT_WINDOW=window,
            LOOP_IDLE_SECONDS=0.1,
        )
        for _ in range(4)
    ]
    try:
        wait_for(
            lambda: not Conversion.objects.exclude(status="sent").exists(),
            120,
            "the workers did not drain the outbox",
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    elapsed = time.monotonic() - started
    assert [w.returncode for w in workers] == [0, 0, 0, 0], outputs
    ids = received_ids(emulator)
    assert len(ids) == 20_000 and len(set(ids)) == 20_000, "each conversion exactly once"
    statuses = Counter(r["status"] for r in emulator.requests)
    assert statuses.get(429, 0) == 0, "the shared budget kept every worker under X's limit"
    # 20,000 events at 5,000 per window cannot take less than three full windows.
    assert elapsed >= 3 * window
    senders = [out for out, _ in outputs if "Sent: 0 " not in out]
    assert len(senders) >= 2, "more than one worker took part"
