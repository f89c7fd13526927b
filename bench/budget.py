"""Budget use: with X (the emulator) allowing N events per window, how much of N the
sender uses in each window, and how many 429s it meets.

    python bench/budget.py --events-per-window 20000 --window 10 --windows 4

The emulator enforces N per account per fixed window; the sender runs as
``send_conversions --loop`` does, with its own budget setting left at the default
(60,000 / 900 s): it learns X's window from the rate-limit headers. Target: >= 95% of N in
every full window, and zero 429s. Rich rows, on a fresh SQLite database.
Writes bench/results/budget.json (or --output).
"""

from __future__ import annotations

import argparse
import time

import common
import requests


def windows_from(received_at: list[float], length: float) -> list[int]:
    """Events per emulator window: a window opens with the first request after the last
    one closed, exactly as the emulator counts."""
    counts: list[int] = []
    end = None
    for stamp in sorted(received_at):
        if end is None or stamp >= end:
            end = stamp + length
            counts.append(0)
        counts[-1] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events-per-window", type=int, default=20_000)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--output", help="JSON path (default bench/results/budget.json)")
    args = parser.parse_args()
    common.setup_django("sqlite")
    from django_xconversions import delivery

    tag = common.create_demo_tag()
    # Enough for the full windows plus a partial last one.
    common.seed(tag, args.events_per_window * args.windows + args.events_per_window // 2, "u")
    budget = {"events": args.events_per_window, "window_seconds": args.window}
    deadline = time.monotonic() + args.window * (args.windows + 3)
    with common.emulator(budget=budget) as url:
        common.configure(url)
        while delivery.pending_count() and time.monotonic() < deadline:
            if delivery.send_pending().processed == 0:
                time.sleep(0.05)
        received = requests.get(f"{url}/_emulator/received", timeout=120).json()["data"]
        stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()["data"]
    counts = windows_from([r["received_at"] for r in received], args.window)
    # A window the run never reached counts as unused.
    full = (counts + [0] * args.windows)[: args.windows]
    usage = [count / args.events_per_window for count in full]
    too_many = int(stats["by_status"].get("429", 0))
    common.write(
        "budget",
        {
            "events_per_window": args.events_per_window,
            "window_seconds": args.window,
            "events_per_emulator_window": counts,
            "usage_per_full_window": usage,
            "min_usage": min(usage) if usage else 0.0,
            "responses_429": too_many,
            "targets": [
                common.target("least share of N used in a full window", min(usage), ">=", 0.95),
                common.target("429 responses", too_many, "<=", 0),
            ],
        },
        args.output,
    )


if __name__ == "__main__":
    main()
