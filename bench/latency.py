"""Commit-to-X latency: how long after its commit a conversion reaches X, with one
``send_conversions --loop`` worker on PostgreSQL and conversions committed at a steady
rate by another process.

    python bench/latency.py --rate 50 --seconds 20

A producer process calls ``track()`` (rich rows: hashed email and phone, IP and user
agent, contents, description) ``--rate`` times a second, each in its own transaction,
and notes the wall-clock time just before each call (so the insert counts as latency).
The emulator (in this process) notes when each request arrives. Latency = arrival -
commit, per conversion. Run once with NOTIFY_ON_COMMIT (the default: the worker is woken
by each commit) and, for contrast, once polling every LOOP_IDLE_SECONDS (5 s, the
default) with NOTIFY_ON_COMMIT off (``--no-polling-run`` skips it). Target (notify run):
p50 <= 100 ms, p99 <= 1 s. Writes bench/results/latency.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import common

TARGET_P50 = 0.100
TARGET_P99 = 1.0


# -- the producer (a child process) --------------------------------------------------------


def produce(rate: float, seconds: float, prefix: str, output: str) -> None:
    """Commit ``rate`` conversions a second for ``seconds``; write {id: commit time}."""
    common.connect_django(migrate=False)
    from django_xconversions import track

    count = int(rate * seconds)
    committed: dict[str, float] = {}
    started = time.monotonic()
    for n in range(count):
        due = started + n / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        fields = common.conversion_fields(n, prefix, common_now(), "rich")
        conversion_id = fields["conversion_id"]
        committed[conversion_id] = time.time()
        track(
            "purchase",
            email=fields["hashed_email"],
            phone=fields["hashed_phone"],
            twclid=fields["twclid"],
            ip_address=fields["ip_address"],
            user_agent=fields["user_agent"],
            value=fields["value"],
            currency=fields["currency"],
            number_items=fields["number_items"],
            contents=fields["contents"],
            description=fields["description"],
            conversion_id=conversion_id,
        )
    behind = time.monotonic() - started - seconds
    Path(output).write_text(json.dumps({"committed": committed, "behind_seconds": behind}))


def common_now() -> Any:
    from django.utils import timezone

    return timezone.now()


# -- the run -------------------------------------------------------------------------------


def start_process(args: list[str], database_url: str, overrides: dict[str, Any]) -> Any:
    return common.start_bench_process(args, database_url, overrides, stderr=subprocess.PIPE)


def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def one_run(
    *, emulator: Any, database_url: str, overrides: dict[str, Any], rate: float, seconds: float
) -> dict[str, Any]:
    from django_xconversions.models import Conversion, WorkerHeartbeat

    common.empty_outbox()
    WorkerHeartbeat.objects.all().delete()
    emulator.reset_records()
    worker = start_process(["-m", "django", "send_conversions", "--loop"], database_url, overrides)
    output = Path(common.RESULTS) / f"latency-producer-{os.getpid()}.json"
    try:
        # The worker is up (and listening) once it beats; then the commits start.
        if not wait_until(WorkerHeartbeat.objects.exists, 60):
            raise SystemExit("the worker did not start")
        time.sleep(1.0)  # its first pass is over: it waits, as an idle worker does
        producer = start_process(
            [
                str(Path(__file__).resolve()),
                "--produce",
                "--rate",
                str(rate),
                "--seconds",
                str(seconds),
                "--producer-output",
                str(output),
            ],
            database_url,
            overrides,
        )
        _, producer_err = producer.communicate(timeout=seconds * 3 + 120)
        if producer.returncode != 0:
            raise SystemExit(f"the producer failed:\n{producer_err}")
        produced = json.loads(output.read_text())
        committed: dict[str, float] = produced["committed"]
        poll = float(overrides.get("LOOP_IDLE_SECONDS", 5.0))
        wait_until(
            lambda: Conversion.objects.filter(status="sent").count() >= len(committed),
            poll * 3 + 30,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        output.unlink(missing_ok=True)
    arrived: dict[str, float] = {}
    for entry in emulator.conversion_requests():
        if entry["status"] == 200:
            for conversion_id in entry["conversion_ids"] or []:
                arrived.setdefault(conversion_id, entry["time"])
    latencies = sorted(arrived[c] - t for c, t in committed.items() if c in arrived)
    requests = len(emulator.conversion_requests())
    return {
        "conversions": len(committed),
        "delivered": len(latencies),
        "requests": requests,
        "producer_behind_seconds": round(produced["behind_seconds"], 3),
        "latency_seconds": {
            "p50": round(common.percentile(latencies, 0.50), 4),
            "p90": round(common.percentile(latencies, 0.90), 4),
            "p99": round(common.percentile(latencies, 0.99), 4),
            "max": round(latencies[-1], 4) if latencies else None,
            "mean": round(sum(latencies) / len(latencies), 4) if latencies else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0, help="conversions per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-polling-run", action="store_true")
    parser.add_argument("--output", help="JSON path (default bench/results/latency.json)")
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--producer-output", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="lat", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(args.rate, args.seconds, args.prefix, args.producer_output)
        return

    common.setup_django("postgres")
    from django.conf import settings
    from django.db import connection

    from django_xconversions.emulator import EmulatorServer
    from django_xconversions.emulator.demo import demo_world, seed

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    common.create_demo_tag()
    emulator = EmulatorServer()
    world = demo_world()
    seed(emulator, world)
    emulator.start()
    app = world["apps"][0]
    overrides = {
        "API_BASE_URL": emulator.url,
        "CONSUMER_KEY": app["consumer_key"],
        "CONSUMER_SECRET": app["consumer_secret"],
        "ENCRYPTION_KEY": settings.XCONVERSIONS["ENCRYPTION_KEY"],
    }
    runs: dict[str, Any] = {}
    try:
        runs["notify"] = one_run(
            emulator=emulator,
            database_url=database_url,
            overrides={**overrides, "NOTIFY_ON_COMMIT": True},
            rate=args.rate,
            seconds=args.seconds,
        )
        if not args.no_polling_run:
            runs["polling"] = one_run(
                emulator=emulator,
                database_url=database_url,
                overrides={**overrides, "NOTIFY_ON_COMMIT": False, "LOOP_IDLE_SECONDS": 5.0},
                rate=args.rate,
                seconds=args.seconds,
            )
    finally:
        emulator.stop()
    notify = runs["notify"]["latency_seconds"]
    complete = runs["notify"]["delivered"] == runs["notify"]["conversions"]
    common.write(
        "latency",
        {
            "db": "postgres",
            "rate_per_second": args.rate,
            "seconds": args.seconds,
            "workers": 1,
            "runs": runs,
            "targets": [
                common.target("notify p50 seconds", notify["p50"], "<=", TARGET_P50),
                common.target("notify p99 seconds", notify["p99"], "<=", TARGET_P99),
                common.target("notify run delivered all", 1.0 if complete else 0.0, ">=", 1),
            ],
        },
        args.output,
    )


if __name__ == "__main__":
    main()
