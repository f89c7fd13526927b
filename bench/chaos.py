"""Chaos run: several send_conversions --loop workers on PostgreSQL against a faulty X.

    python bench/chaos.py --events 20000 --workers 4

The emulator (in this process, on 127.0.0.1) answers 10% of conversion requests with 500,
5% with 503 + retry-after, 2% too late (the client times out; the emulator has processed
the batch, as X may have), 2% with a connection reset and 1% with 429. One worker is
SIGKILLed while it holds a claimed batch and is started again. The run ends when no row
is pending or sending, or after --max-seconds.

Recorded: delivered (conversion_ids the emulator accepted), lost (seeded but neither
delivered nor visibly failed: must be 0), failed (visible, with reasons), stuck in
sending (must be 0), duplicates (ids accepted more than once: at-least-once delivery allows
them only for batches X processed but whose answer never arrived: timed-out requests and
the killed worker's batch; the bound is checked) and the wall time.
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
        stderr=subprocess.PIPE,
        text=True,
    )


def statuses() -> Counter[str]:
    from django_xconversions.models import Conversion

    return Counter(Conversion.objects.values_list("status", flat=True))


def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


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

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    tag = common.create_demo_tag()
    common.seed(tag, args.events, "chaos")
    seeded = {f"chaos-{n}" for n in range(args.events)}

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
    started = time.monotonic()
    workers = [start_worker(emulator.url, database_url, overrides) for _ in range(args.workers)]
    killed_holding = 0
    try:
        # Kill the first worker once it holds a claimed batch (rows "sending").
        from django_xconversions.models import Conversion

        wait_until(lambda: Conversion.objects.filter(status="sending").exists(), 60)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        # Rows sending now include all the dead worker held (a batch in flight and, with
        # pipelining, the next one claimed): an upper bound on what its death can repeat.
        killed_holding = Conversion.objects.filter(status="sending").count()
        workers[0] = start_worker(emulator.url, database_url, overrides)
        drained = wait_until(
            lambda: not Conversion.objects.filter(status__in=["pending", "sending"]).exists(),
            args.max_seconds,
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exits = []
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
    final = statuses()
    failed = set(Conversion.objects.filter(status="failed").values_list("conversion_id", flat=True))
    lost = seeded - delivered - failed
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    requests = [r for r in emulator.requests if "/measurement/conversions/" in r["path"]]
    by_status = Counter(str(r["status"]) for r in requests)
    # Batches the emulator processed but answered after the client's READ_TIMEOUT.
    timed_out_events = sum(
        r["events"] or 0 for r in requests if r["status"] == 200 and r["delay"] >= 1.0
    )
    duplicate_bound = timed_out_events + killed_holding
    result = {
        "events": args.events,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "fault_rates": FAULT_RATES,
        "drained": drained,
        "wall_seconds": wall,
        "delivered": len(delivered),
        "lost": len(lost),
        "failed": len(failed),
        "stuck_sending": final.get("sending", 0),
        "pending_left": final.get("pending", 0),
        "duplicates": duplicates,
        "duplicate_bound": duplicate_bound,
        "killed_worker_held": killed_holding,
        "requests_by_status": dict(by_status),
        "worker_exit_codes": exits,
        "meets_targets": len(lost) == 0
        and final.get("sending", 0) == 0
        and drained
        and duplicates <= duplicate_bound,
    }
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
