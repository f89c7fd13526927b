"""send_conversions --loop outlives database faults: a PostgreSQL restart mid-drain, a
database that stays away for a while, and errors that are not the database's."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import pytest
from django.db import connection

from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import Conversion, EventTag
from tests.helpers import wait_until
from tests.helpers.workers import start_worker

from .conftest import make_conversions, received_ids

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 3
BATCH = 500
TOTAL = 20_000
# What a restart can make X see twice: per worker, the batch whose answer was being
# recorded when the connection went (X accepted it; the outcome was never written) and
# the next batch, already on the wire (the pipeline sends it as soon as X accepts).
IN_FLIGHT_BOUND = WORKERS * 2 * BATCH


def restart_postgres() -> None:
    """``pg_ctl restart -m fast`` on the suite's server: every connection is cut."""
    from tests import pg_plugin

    state = pg_plugin.STATE
    command = [
        f"{state['pg_bin']}/pg_ctl",
        "-D",
        state["data"],
        "-l",
        f"{state['root']}/log",
        "-m",
        "fast",
        "-w",
        "restart",
    ]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=60)  # noqa: S603
    connection.close()  # ours was cut too


def sent_count() -> int:
    try:
        return Conversion.objects.filter(status="sent").count()
    except Exception:
        connection.close()
        return -1


def sent_while_alive(workers: list[subprocess.Popen[str]], target: int) -> bool:
    exited = [w.returncode for w in workers if w.poll() is not None]
    assert not exited, f"a worker exited with {exited}"
    return sent_count() >= target


def test_three_workers_outlive_a_postgres_restart_mid_drain(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, TOTAL)
    workers = [
        start_worker(
            emulator,
            "--loop",
            BATCH_SIZE=BATCH,
            LEASE_SECONDS=4,
            LOOP_IDLE_SECONDS=0.1,
        )
        for _ in range(WORKERS)
    ]
    failure, alive = None, [False]
    try:
        wait_until(
            lambda: sent_while_alive(workers, 3000), 60, "the workers did not start draining"
        )
        in_flight_before = Conversion.objects.filter(status="sending").count()
        restart_postgres()
        assert sent_count() < TOTAL, "the restart came after the drain: it proves nothing"
        wait_until(
            lambda: sent_while_alive(workers, TOTAL),
            60,
            "the workers did not drain the outbox after the restart",
        )
        alive = [worker.poll() is None for worker in workers]
    except AssertionError as exc:
        failure = AssertionError(f"{exc}: {Counter(Conversion.objects.values_list('status'))}")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    errors = [err for _, err in outputs]
    assert failure is None, f"{failure}\n" + "\n---\n".join(errors)
    assert alive == [True] * WORKERS, errors
    assert [w.returncode for w in workers] == [0] * WORKERS, errors
    statuses = Counter(Conversion.objects.values_list("status", flat=True))
    assert statuses == {"sent": TOTAL}, "0 lost, 0 stuck"
    ids = received_ids(emulator)
    assert set(ids) == {f"order:{n}" for n in range(TOTAL)}
    duplicates = len(ids) - len(set(ids))
    print(f"duplicates after the restart: {duplicates} (bound {IN_FLIGHT_BOUND})")
    assert duplicates <= IN_FLIGHT_BOUND, (duplicates, in_flight_before)
    for err in errors:
        # Each worker tells of the outage once and of the recovery once, not per attempt.
        assert err.count("Database unavailable") <= 1, err
        assert err.count("Database unavailable") == err.count("Database available again"), err
    assert any("Database unavailable" in err for err in errors), errors
