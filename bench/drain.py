"""Drain throughput: batched sending vs one request per event, against the emulator.

    python bench/drain.py --db sqlite --events 100000 --baseline-events 3000 --repeat 3

Each repeat seeds the pending conversions (not timed), then times ``send_pending()``;
the baseline sends other conversions one per request (BATCH_SIZE=1), as integrations
without batching do. The ratio is taken within each repeat; the JSON holds every run and
the medians. Writes bench/results/drain-<db>.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common


def timed_drain(tag: Any, count: int, prefix: str) -> dict[str, float]:
    from django_xconversions import delivery
    from django_xconversions.models import Conversion

    common.seed(tag, count, prefix)
    started = time.perf_counter()
    summary = delivery.send_pending()
    seconds = time.perf_counter() - started
    if summary.sent != count:
        raise SystemExit(f"expected {count} sent, got {summary.as_dict()}")
    Conversion.objects.all().delete()
    return {
        "events": count,
        "requests": summary.requests,
        "seconds": seconds,
        "events_per_s": count / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--baseline-events", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    common.setup_django(args.db)
    tag = common.create_demo_tag()
    batched, single = [], []
    # No rate limit in this benchmark: the budget is far above what is sent.
    with common.emulator(budget={"events": 10**9, "window_seconds": 900}) as url:
        for repeat in range(args.repeat):
            common.configure(url, BATCH_SIZE=500, RATE_LIMIT_EVENTS=10**9)
            batched.append(timed_drain(tag, args.events, f"b{repeat}"))
            common.configure(url, BATCH_SIZE=1, RATE_LIMIT_EVENTS=10**9)
            single.append(timed_drain(tag, args.baseline_events, f"s{repeat}"))
    ratios = [b["events_per_s"] / s["events_per_s"] for b, s in zip(batched, single, strict=True)]
    batched_median = common.median([r["events_per_s"] for r in batched])
    common.write(
        f"drain-{args.db}",
        {
            "db": args.db,
            "batched": {"runs": batched, "median_events_per_s": batched_median},
            "one_per_request": {
                "runs": single,
                "median_events_per_s": common.median([r["events_per_s"] for r in single]),
            },
            "ratios": ratios,
            "median_ratio": common.median(ratios),
            "targets": {"sqlite_events_per_s": 10_000, "ratio": 25},
            "meets_targets": common.median(ratios) >= 25
            and (args.db != "sqlite" or batched_median >= 10_000),
        },
    )


if __name__ == "__main__":
    main()
