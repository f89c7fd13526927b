"""Peak memory of a worker draining a large outbox, at several sizes, on SQLite or
PostgreSQL.

    python bench/memory.py --db sqlite --sizes 100000 1000000
    python bench/memory.py --db postgres --sizes 100000 1000000

For each size a fresh database is made (a new SQLite file; a new database on the bench's
PostgreSQL server), a child process seeds it with rich rows sharing one due time (not
measured), then another child drains it with ``send_pending()`` against the emulator and
reports its peak RSS (ru_maxrss), so seeding never inflates the figure. Target:
<= 200 MB at the largest size, and flat (growth <= 10%) from the smallest to the largest.
Writes bench/results/memory-<db>.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common


def child(args: argparse.Namespace) -> None:
    """Seed (``--seed N``) or drain the database the environment names."""
    if args.seed:
        common.connect_django(migrate=True)
        common.seed(common.create_demo_tag(), args.seed, "m", due=args.due, rows=args.rows)
        return
    common.connect_django(migrate=False)
    from django_xconversions import delivery

    common.configure(args.url, RATE_LIMIT_EVENTS=10**9)
    started = time.perf_counter()
    summary = delivery.send_pending()
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sent": summary.sent, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}))


def run_child(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, __file__, "--child", *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return done.stdout


def child_env(db: str, size: int, workdir: str) -> tuple[dict[str, str], str]:
    """The environment naming a fresh database for ``size``; and what to drop after."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BENCH_SQLITE_PATH")}
    if db == "postgres":
        url = common.fresh_postgres_database(f"m{size}")
        return {**env, "DATABASE_URL": url}, url
    path = str(Path(workdir) / f"memory-{size}.sqlite3")
    return {**env, "BENCH_SQLITE_PATH": path}, path


def drop(db: str, location: str) -> None:
    if db == "postgres":
        common.drop_postgres_database(os.environ["BENCH_PG_SERVER_URL"], location)
        return
    for suffix in ("", "-wal", "-shm"):
        Path(location + suffix).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--due", choices=common.DUE_MODES, default="shared")
    parser.add_argument("--rows", choices=common.ROW_KINDS, default="rich")
    parser.add_argument("--output", help="JSON path (default bench/results/memory-<db>.json)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.db == "postgres":
        common.postgres_server()
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="xconv-memory-") as workdir,
        common.emulator(budget={"events": 10**9, "window_seconds": 900}) as url,
    ):
        for size in args.sizes:
            env, location = child_env(args.db, size, workdir)
            try:
                shape = ["--due", args.due, "--rows", args.rows]
                run_child(env, "--seed", str(size), *shape)
                output = run_child(env, "--url", url, *shape)
            finally:
                drop(args.db, location)
            drained = json.loads(output.strip().splitlines()[-1])
            if drained["sent"] != size:
                raise SystemExit(f"expected {size} sent, got {drained}")
            runs.append({"pending": size, **drained, "events_per_s": size / drained["seconds"]})
            print(json.dumps(runs[-1]), flush=True)
    growth = runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
    common.write(
        f"memory-{args.db}",
        {
            "db": args.db,
            "due": args.due,
            "rows": args.rows,
            "runs": runs,
            "peak_rss_growth": growth,
            "targets": [
                common.target(
                    f"peak RSS MB at {runs[-1]['pending']:,}", runs[-1]["peak_rss_mb"], "<=", 200
                ),
                common.target("peak RSS growth, smallest to largest", growth, "<=", 1.10),
            ],
        },
        args.output,
    )


if __name__ == "__main__":
    main()
