"""Chaos run: several send_conversions --loop workers on PostgreSQL against a faulty X.

    python bench/chaos.py --events 20000 --workers 4

The emulator (in this process, on 127.0.0.1) answers 10% of conversion requests with 500,
5% with 503 + retry-after, 2% too late (the client times out; the emulator has processed
the batch, as X may have), 2% with a connection reset and 1% with 429. During the run:

- a worker that holds claimed rows at that moment (its process id is in their claim
  token) is SIGKILLed and started again;
- PostgreSQL is restarted once (``pg_ctl restart -m fast``) while the workers drain;
- a second account's secrets were written under a key that is no longer configured: it
  must be paused with the reason while the first account's conversions all go out.

Recorded: delivered (conversion_ids the emulator accepted), lost (seeded for the good
account but neither delivered nor visibly failed: must be 0), failed (visible, with
reasons), stuck in sending (must be 0), duplicates (ids accepted more than once) against
the bound at-least-once delivery allows in this run: events of batches X processed but
whose answer never arrived (timed out), rows the killed worker held, and rows in flight
when the database went away (answered by X, outcome not written). Also whether every
worker that was not killed was still running before the final SIGTERM and exited 0.
Writes bench/results/chaos.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import common

FAULT_RATES = {
    "error_500": 0.10,
    "error_503": 0.05,
    "timeout": 0.02,
    "reset": 0.02,
    "rate_limit": 0.01,
}
# The account whose secrets no configured key opens, and how many conversions it holds.
LOCKED_ACCOUNT = {"account_id": "18ce54lock1", "pixel_id": "lock1", "tag_id": "lk001"}
LOCKED_EVENTS = 200
# A worker stopped by SIGTERM exits 0, or 3 when a run of it paused an account (the locked
# one): anything else is a crash.
CLEAN_EXITS = (0, 3)


def start_worker(url: str, database_url: str, overrides: dict[str, Any]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PYTHONPATH": str(common.ROOT),
        "XCONVERSIONS_BENCH": json.dumps({"API_BASE_URL": url, **overrides}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", "send_conversions", "--loop", "--json"],
        cwd=common.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # the database may be restarting: poll again
            from django.db import connection

            connection.close()
        time.sleep(0.05)
    return False


def held_by(pid: int) -> int:
    """Rows the worker process ``pid`` holds (claimed, outcome not yet written)."""
    from django_xconversions.delivery import claim_token_pid
    from django_xconversions.models import Conversion

    tokens = Conversion.objects.filter(status="sending").values_list("claim_token", flat=True)
    return sum(1 for token in tokens if token is not None and claim_token_pid(token) == pid)


def create_locked_account(tag_count: int) -> Any:
    """An account, pixel and tag whose tokens were encrypted with a key since dropped."""
    from cryptography.fernet import Fernet
    from django.conf import settings
    from django.test import override_settings

    from django_xconversions.models import AdAccount, EventTag, Pixel

    dropped_key = Fernet.generate_key().decode()
    with override_settings(XCONVERSIONS={**settings.XCONVERSIONS, "ENCRYPTION_KEY": dropped_key}):
        account = AdAccount(account_id=LOCKED_ACCOUNT["account_id"], name="Locked")
        account.set_tokens("1000000001-lockedToken", "locked-token-secret")
        account.save()
    pixel = Pixel.objects.create(pixel_id=LOCKED_ACCOUNT["pixel_id"], account=account)
    tag = EventTag.objects.create(
        account=account,
        pixel=pixel,
        remote_id=LOCKED_ACCOUNT["tag_id"],
        website_tag_id="lk0ev",
        key="locked-purchase",
        name="Locked purchase",
        type="PURCHASE",
    )
    common.seed(tag, tag_count, "locked")
    return account


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=7)
    # Smaller batches than X's 500 so a run meets each kind of fault many times.
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--output", help="JSON path (default bench/results/chaos.json)")
    args = parser.parse_args()
    common.setup_django("postgres")
    from django.conf import settings
    from django.db import connection

    from django_xconversions.emulator import EmulatorServer
    from django_xconversions.emulator.demo import demo_world, seed
    from django_xconversions.models import AdAccount, Conversion
    from tests import pg_plugin

    if "data" not in pg_plugin.STATE:
        raise SystemExit("chaos.py restarts its own PostgreSQL server: unset DATABASE_URL")
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    tag = common.create_demo_tag()
    common.seed(tag, args.events, "chaos")
    seeded = {f"chaos-{n}" for n in range(args.events)}
    locked = create_locked_account(LOCKED_EVENTS)

    emulator = EmulatorServer()
    world = demo_world()
    seed(emulator, world)
    emulator.record_ids_only()
    emulator.faults.set_rates(**FAULT_RATES, seed=args.seed)
    emulator.faults.slow_seconds = 1.5
    emulator.faults.retry_after_seconds = 1
    emulator.faults.rate_limit_reset_seconds = 1
    emulator.start()
    app = world["apps"][0]
    overrides = {
        "CONSUMER_KEY": app["consumer_key"],
        "CONSUMER_SECRET": app["consumer_secret"],
        "ENCRYPTION_KEY": settings.XCONVERSIONS["ENCRYPTION_KEY"],
        "READ_TIMEOUT": 1.0,
        "LEASE_SECONDS": 5,
        "RETRY_BACKOFF_BASE": 0.2,
        "RETRY_BACKOFF_MAX": 2.0,
        "MAX_ATTEMPTS": 25,
        "LOOP_IDLE_SECONDS": 0.2,
        "RATE_LIMIT_EVENTS": 10**9,
        "BATCH_SIZE": args.batch_size,
    }
    good = Conversion.objects.filter(event_tag=tag)
    started = time.monotonic()
    workers = [start_worker(emulator.url, database_url, overrides) for _ in range(args.workers)]
    killed_holding = in_flight_at_restart = 0
    killed_pid: int | None = None
    drained = restarted = False
    alive_before_stop: list[bool] = []
    try:
        # Kill a worker at a moment it holds claimed rows.
        def holder_found() -> bool:
            nonlocal killed_pid, killed_holding
            for index, worker in enumerate(workers):
                held = held_by(worker.pid)
                if held:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait(10)
                    killed_pid, killed_holding = worker.pid, held
                    workers[index] = start_worker(emulator.url, database_url, overrides)
                    return True
            return False

        wait_until(holder_found, 60)
        # Restart PostgreSQL once a third of the good account's rows went out.
        wait_until(lambda: good.filter(status="sent").count() >= args.events // 3, 300)
        # Rows in flight now may be answered by X with their outcome never written.
        in_flight_at_restart = good.filter(status="sending").count() + args.workers * (
            args.batch_size
        )
        connection.close()
        pg_plugin.restart_server()
        restarted = True
        drained = wait_until(
            lambda: not good.filter(status__in=["pending", "sending"]).exists(),
            args.max_seconds,
        )
        alive_before_stop = [worker.poll() is None for worker in workers]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exits: list[int | None] = []
        for worker in workers:
            try:
                exits.append(worker.wait(30))
            except subprocess.TimeoutExpired:
                worker.kill()
                exits.append(None)
        emulator.stop()
    wall = time.monotonic() - started

    received = [
        r["conversion_id"] if "conversion_id" in r else r["conversion"]["conversion_id"]
        for r in emulator.received
    ]
    counts = Counter(received)
    delivered = set(counts) & seeded
    final = Counter(good.values_list("status", flat=True))
    failed = set(good.filter(status="failed").values_list("conversion_id", flat=True))
    lost = seeded - delivered - failed
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    requests = [r for r in emulator.requests if "/measurement/conversions/" in r["path"]]
    by_status = Counter(str(r["status"]) for r in requests)
    # Batches the emulator processed but answered after the client's READ_TIMEOUT.
    timed_out_events = sum(
        r["events"] or 0 for r in requests if r["status"] == 200 and r["delay"] >= 1.0
    )
    duplicate_bound = timed_out_events + killed_holding + in_flight_at_restart
    locked.refresh_from_db()
    locked_rows = Counter(
        Conversion.objects.filter(pixel__account=locked).values_list("status", flat=True)
    )
    locked_requests = [r for r in requests if LOCKED_ACCOUNT["pixel_id"] in r["path"]]
    result = {
        "events": args.events,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "fault_rates": FAULT_RATES,
        "drained": drained,
        "wall_seconds": round(wall, 1),
        "delivered": len(delivered),
        "lost": len(lost),
        "failed": len(failed),
        "stuck_sending": final.get("sending", 0),
        "pending_left": final.get("pending", 0),
        "duplicates": duplicates,
        "duplicate_bound": duplicate_bound,
        "timed_out_events": timed_out_events,
        "killed_worker_pid": killed_pid,
        "killed_worker_held": killed_holding,
        "postgres_restarted": restarted,
        "in_flight_at_restart": in_flight_at_restart,
        "workers_alive_before_stop": alive_before_stop,
        "worker_exit_codes": exits,
        "locked_account": {
            "status": locked.status,
            "paused_reason": locked.paused_reason,
            "rows": dict(locked_rows),
            "requests": len(locked_requests),
        },
        "requests_by_status": dict(by_status),
    }
    result["meets_targets"] = (
        drained
        and not lost
        and final.get("sending", 0) == 0
        and duplicates <= duplicate_bound
        and killed_holding > 0
        and restarted
        and all(alive_before_stop)
        and all(code in CLEAN_EXITS for code in exits)
        and locked.status == AdAccount.Status.PAUSED
        and "ENCRYPTION_KEY" in locked.paused_reason
        and locked_rows.get("pending", 0) == LOCKED_EVENTS
    )
    if args.output:
        text = json.dumps(
            {"bench": "chaos", **result, "environment": common.environment()}, indent=2
        )
        Path(args.output).write_text(text + "\n")
        print(text)
    else:
        common.write("chaos", result)


if __name__ == "__main__":
    main()
