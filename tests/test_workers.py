"""Several worker processes on PostgreSQL: SKIP LOCKED claims, leases and the shared budget."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from django_xconversions import delivery
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import Conversion, EventTag
from tests.helpers import ShiftedClock, wait_until
from tests.helpers.workers import start_worker

from .conftest import make_conversions, received_ids

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Far longer than the test takes: the lease runs out only when the clock is moved.
LEASE_SECONDS = 120


def test_worker_killed_after_claiming_leaves_rows_for_the_next_worker(
    emulator: EmulatorServer, purchase_tag: EventTag, clock: ShiftedClock
) -> None:
    make_conversions(purchase_tag, 50)
    emulator.faults.slow_seconds = 30
    emulator.faults.script(["timeout"])
    worker = start_worker(emulator, LEASE_SECONDS=LEASE_SECONDS, READ_TIMEOUT=60)
    try:
        # Killed while X holds its request: the rows are claimed and the answer never comes.
        wait_until(
            lambda: (
                bool(emulator.requests)
                and Conversion.objects.filter(status="sending").count() == 50
            ),
            30,
            "the worker never claimed the rows and sent them",
        )
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert Counter(Conversion.objects.values_list("status", flat=True)) == {"sending": 50}
    assert delivery.send_pending().sent == 0, "the dead worker's lease still holds"
    clock.advance(LEASE_SECONDS + 1)
    summary = delivery.send_pending()
    assert summary.sent == 50
    assert set(received_ids(emulator)) == {f"order:{n}" for n in range(50)}


def test_four_workers_drain_20000_once_each_within_a_shared_budget(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    total, budget_events, window = 20_000, 5000, 1.0
    emulator.set_budget(budget_events, window)
    make_conversions(purchase_tag, total)
    started = time.monotonic()
    # Each worker stops after half the outbox: at least two take part, whatever the timing.
    workers = [
        start_worker(
            emulator,
            "--loop",
            "--limit",
            str(total // 2),
            RATE_LIMIT_EVENTS=budget_events,
            RATE_LIMIT_WINDOW=window,
            LOOP_IDLE_SECONDS=0.1,
        )
        for _ in range(4)
    ]
    try:
        wait_until(
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
    assert len(ids) == total and len(set(ids)) == total, "each conversion exactly once"
    statuses = Counter(r["status"] for r in emulator.requests)
    assert statuses.get(429, 0) == 0, "the shared budget kept every worker under X's limit"
    # 20,000 events at 5,000 per window cannot take less than three full windows.
    assert elapsed >= 3 * window
    senders = [out for out, _ in outputs if "Sent: 0 " not in out]
    assert len(senders) >= 2, "more than one worker took part"
