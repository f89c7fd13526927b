"""Requests spent finding the events X rejects in a batch of 500.

    python bench/isolation.py --bad 1 2 3 5 10 40 --placements 50

For each count of bad events and each of ``--placements`` seeded random placements, 500
pending rich conversions go through ``delivery.send_pending()`` against the emulator (in
this process, over loopback), which refuses any batch holding one of the bad
conversion_ids. Recorded per count: requests at the median, the 90th percentile and the
worst placement, events sent in all requests (what the search costs of X's event budget),
and that every good event was accepted exactly once. Judged at the 90th percentile (and
the worst case shown beside it), since a median hides the placements that cost most:
1 bad event in 500 takes at most 1 + 9 = 10 requests (the information bound: one refused
batch, then nine halvings), 3 bad at most 1 + 3 x 9 = 28.
Writes bench/results/isolation.json (or --output).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from typing import Any

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bad", type=int, nargs="+", default=[1, 2, 3, 5, 10, 40])
    parser.add_argument("--placements", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--output", help="JSON path (default bench/results/isolation.json)")
    args = parser.parse_args()
    common.setup_django("sqlite")
    from django_xconversions import delivery
    from django_xconversions.emulator import DEMO_WORLD, seed
    from django_xconversions.emulator.server import EmulatorServer
    from django_xconversions.models import Conversion

    tag = common.create_demo_tag()
    emulator = EmulatorServer()
    seed(emulator, DEMO_WORLD)
    emulator.record_ids_only()
    emulator.set_budget(10**9, 900)  # requests are measured here, not the rate limit
    emulator.start()
    rng = random.Random(args.seed)
    by_count: dict[str, dict[str, Any]] = {}
    try:
        common.configure(emulator.url, RATE_LIMIT_EVENTS=10**9)
        for bad_count in args.bad:
            requests: list[int] = []
            events_sent: list[int] = []
            for placement in range(args.placements):
                prefix = f"b{bad_count}p{placement}"
                common.seed(tag, args.batch, prefix)
                bad = {f"{prefix}-{n}" for n in rng.sample(range(args.batch), bad_count)}
                emulator.reject_event_ids(*bad)
                emulator.reset_records()
                summary = delivery.send_pending()
                accepted = Counter(r["conversion"]["conversion_id"] for r in emulator.received)
                failed = set(
                    Conversion.objects.filter(status="failed").values_list(
                        "conversion_id", flat=True
                    )
                )
                good = args.batch - bad_count
                if failed != bad or len(accepted) != good or max(accepted.values()) != 1:
                    raise SystemExit(f"wrong outcome for {sorted(bad)}: {summary.as_dict()}")
                requests.append(summary.requests)
                events_sent.append(sum(r["events"] for r in emulator.requests))
                common.empty_outbox()
            counts = [float(n) for n in requests]
            by_count[str(bad_count)] = {
                "requests_median": common.median(counts),
                "requests_p90": common.percentile(counts, 0.9),
                "requests_max": max(requests),
                "requests_bound": 1 + bad_count * 9,
                "within_bound": sum(n <= 1 + bad_count * 9 for n in requests) / len(requests),
                "events_sent_median": common.median([float(n) for n in events_sent]),
                "events_sent_max": max(events_sent),
                "requests": requests,
            }
            shown = by_count[str(bad_count)]
            print(bad_count, shown["requests_median"], shown["requests_p90"], max(requests))
    finally:
        emulator.stop()
    targets = [
        common.target(
            f"{bad} bad in {args.batch}: requests at p90", found["requests_p90"], "<=", bound
        )
        for bad, bound in (("1", 10), ("3", 28))
        if (found := by_count.get(bad)) is not None
    ]
    common.write(
        "isolation",
        {
            "batch": args.batch,
            "placements": args.placements,
            "seed": args.seed,
            "by_bad_count": by_count,
            "targets": targets,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
