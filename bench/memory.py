"""Peak memory of a worker draining a large outbox, at two sizes, on SQLite.

    python bench/memory.py --sizes 100000 1000000

For each size a child process seeds a fresh database (not measured), then another child
drains it with ``send_pending()`` against the emulator and reports its peak RSS
(ru_maxrss), so seeding never inflates the figure. Target: <= 200 MB at 1,000,000, and
flat from 100,000 to 1,000,000. Writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import common


def child(args: argparse.Namespace) -> None:
    os.environ["BENCH_SQLITE_PATH"] = args.db_path
    if args.seed:
        common.setup_django("sqlite")
        common.seed(common.create_demo_tag(), args.seed, "m")
        return
    # Drain: the database exists already; only configure Django.
    sys.path.insert(0, str(common.ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from django_xconversions import delivery

    common.configure(args.url, RATE_LIMIT_EVENTS=10**9)
    started = time.perf_counter()
    summary = delivery.send_pending()
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sent": summary.sent, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}))


def run_child(*args: str) -> str:
    command = [sys.executable, __file__, *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db-path", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.db_path:
        child(args)
        return
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    runs = []
    with common.emulator(budget={"events": 10**9, "window_seconds": 900}) as url:
        for size in args.sizes:
            path = str(common.RESULTS / f"memory-{size}.sqlite3")
            run_child("--seed", str(size), "--db-path", path)
            drained = json.loads(
                run_child("--db-path", path, "--url", url).strip().splitlines()[-1]
            )
            if drained["sent"] != size:
                raise SystemExit(f"expected {size} sent, got {drained}")
            runs.append({"pending": size, **drained, "events_per_s": size / drained["seconds"]})
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)
    sys.path.insert(0, str(common.ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    growth = runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
    common.write(
        "memory",
        {
            "runs": runs,
            "peak_rss_growth": growth,
            "targets": {"peak_rss_mb_max": 200, "flat": "growth <= 1.10"},
            "meets_targets": runs[-1]["peak_rss_mb"] <= 200 and growth <= 1.10,
        },
    )


if __name__ == "__main__":
    main()
