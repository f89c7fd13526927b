"""The chaos run at reduced size, in CI: bench/chaos.py with its own PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from django_xconversions.emulator import FaultPlan
from tests.pg_plugin import _pg_bin

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.postgres, pytest.mark.slow]
EVENTS, BATCH, SEED = 2000, 40, 7
SCALED_DOWN = [
    *("--events", str(EVENTS), "--workers", "4", "--batch-size", str(BATCH)),
    *("--max-seconds", "240", "--seed", str(SEED)),
]
# The status the emulator logs for each fault (None: the connection was reset).
LOGGED_STATUS = {"ok": "200", "timeout": "200", "reset": "None"}


def faults_met_by_any_run(fault_rates: dict[str, float]) -> set[str]:
    """The statuses of the faults every run meets: a run makes at least EVENTS / BATCH
    conversions requests (each accepted one carries a batch at most), and the seeded
    plan draws the same faults for the first that many whatever the timing."""
    plan = FaultPlan()
    plan.set_rates(**fault_rates, seed=SEED)
    drawn = [plan.next() for _ in range(EVENTS // BATCH)]
    return {LOGGED_STATUS.get(fault, fault) for fault in drawn} - {"200"}


@pytest.mark.skipif(_pg_bin() is None, reason="PostgreSQL binaries not installed")
def test_faults_a_killed_worker_and_a_restart_lose_nothing_and_leave_nothing_stuck(
    tmp_path: Path,
) -> None:
    output = tmp_path / "chaos.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["BENCH_SQLITE_PATH"] = str(tmp_path / "unused.sqlite3")
    subprocess.run(  # noqa: S603
        [sys.executable, "bench/chaos.py", "--output", str(output), *SCALED_DOWN],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=420,
        capture_output=True,
    )
    result = json.loads(output.read_text())
    assert result["drained"] and result["lost"] == 0 and result["stuck_sending"] == 0
    assert result["delivered"] + result["failed"] == EVENTS
    assert result["duplicates"] <= result["duplicate_bound"]
    assert result["killed_worker_held"] > 0, "a worker was killed holding a batch"
    assert result["postgres_restarted"]
    assert all(result["workers_alive_before_stop"]), result["workers_alive_before_stop"]
    assert set(result["worker_exit_codes"]) <= {0, 3}, result["worker_exit_codes"]
    locked = result["locked_account"]
    assert locked["status"] == "paused" and "ENCRYPTION_KEY" in locked["paused_reason"]
    assert locked["rows"] == {"pending": 200} and locked["requests"] == 0
    assert result["meets_targets"]
    certain = faults_met_by_any_run(result["fault_rates"])
    assert len(certain) >= 2, f"seed {SEED} draws too few faults: {certain}"
    faults = {status for status in result["requests_by_status"] if status != "200"}
    assert certain <= faults, f"the run missed faults: {result['requests_by_status']}"
    assert len(faults) >= 2, f"the run met too few faults: {result['requests_by_status']}"
