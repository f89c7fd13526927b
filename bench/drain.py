"""Drain throughput against the emulator, beside a plain requests loop and the emulator's
raw limit, on SQLite or PostgreSQL, with rows sharing one due time or each its own.

    python bench/drain.py --db sqlite --events 100000 --repeat 3
    python bench/drain.py --db postgres --events 100000 --repeat 3
    python bench/drain.py --db postgres --events 1000000 --repeat 1 --output FILE

Each repeat measures, on a fresh outbox each time (seeding is not timed):

- ``engine``: one ``delivery.send_pending()`` call (what ``send_conversions`` runs)
  draining ``--events`` pending rich rows, once per due-time mode (``--due``): ``shared``
  (one due time for all, as "Send now", ``requeue()`` and bulk imports leave them) and
  ``distinct`` (each row its own);
- ``plain_loop``: the baseline, how integrations without an outbox engine work: a loop
  that reads the pending rows, POSTs each one as its own request (OAuth 1.0a signed by
  requests-oauthlib) and updates its row's status;
- ``raw_limit``: pre-built 500-event batches POSTed to the emulator as fast as one
  client can (signed, nothing read or written locally): what the emulator absorbs.

Ratios are taken within each repeat: engine / plain loop, engine / raw limit, and
distinct / shared. The emulator runs in a child process without a rate limit.
Writes bench/results/drain-<db>.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import common
import requests

RAW_BATCH = 500
# Distinct pre-built bodies the raw-limit client cycles through.
RAW_BODIES = 4


def reset_emulator(url: str) -> None:
    """Forget what the emulator recorded, so its memory stays flat across runs."""
    requests.post(f"{url}/_emulator/reset", timeout=30).raise_for_status()


def engine_drain(tag: Any, url: str, count: int, due: str, rows: str) -> dict[str, Any]:
    from django_xconversions import delivery

    common.empty_outbox()
    reset_emulator(url)
    common.seed(tag, count, f"e-{due}", due=due, rows=rows)
    common.configure(url, BATCH_SIZE=RAW_BATCH, RATE_LIMIT_EVENTS=10**9)
    started = time.perf_counter()
    summary = delivery.send_pending()
    seconds = time.perf_counter() - started
    if summary.sent != count:
        raise SystemExit(f"expected {count} sent, got {summary.as_dict()}")
    return {
        "events": count,
        "due": due,
        "requests": summary.requests,
        "seconds": seconds,
        "events_per_s": count / seconds,
    }


def plain_loop(tag: Any, url: str, count: int, rows: str) -> dict[str, Any]:
    """One request per event, each row's status updated after its answer."""
    from django.db.models import F
    from django.utils import timezone

    from django_xconversions.models import Conversion
    from django_xconversions.payload import conversion_to_event

    common.empty_outbox()
    reset_emulator(url)
    common.seed(tag, count, "plain", rows=rows)
    session = common.oauth_session()
    endpoint = common.conversions_url(url, tag.pixel.pixel_id)
    started = time.perf_counter()
    pending = Conversion.objects.filter(pixel_id=tag.pixel_id, status="pending").order_by("pk")
    for conversion in list(pending):
        event = conversion_to_event(conversion, tag.website_tag_id)
        response = session.post(endpoint, json={"conversions": [event]}, timeout=30)
        response.raise_for_status()
        Conversion.objects.filter(pk=conversion.pk).update(
            status="sent", sent_at=timezone.now(), attempts=F("attempts") + 1
        )
    seconds = time.perf_counter() - started
    sent = Conversion.objects.filter(status="sent").count()
    if sent != count:
        raise SystemExit(f"plain loop: expected {count} sent, got {sent}")
    session.close()
    return {"events": count, "requests": count, "seconds": seconds, "events_per_s": count / seconds}


def raw_limit(tag: Any, url: str, events: int, rows: str) -> dict[str, Any]:
    """Pre-built 500-event bodies POSTed back to back by one client."""
    from django_xconversions.models import Conversion
    from django_xconversions.payload import conversion_to_event

    common.empty_outbox()
    reset_emulator(url)
    common.seed(tag, RAW_BATCH * RAW_BODIES, "raw", rows=rows)
    conversions = list(Conversion.objects.order_by("pk"))
    bodies = [
        json.dumps(
            {
                "conversions": [
                    conversion_to_event(c, tag.website_tag_id)
                    for c in conversions[start : start + RAW_BATCH]
                ]
            }
        ).encode()
        for start in range(0, len(conversions), RAW_BATCH)
    ]
    common.empty_outbox()
    session = common.oauth_session()
    endpoint = common.conversions_url(url, tag.pixel.pixel_id)
    headers = {"Content-Type": "application/json"}
    batches = max(1, events // RAW_BATCH)
    started = time.perf_counter()
    for index in range(batches):
        response = session.post(
            endpoint, data=bodies[index % len(bodies)], headers=headers, timeout=30
        )
        if response.json()["data"]["conversions_processed"] != RAW_BATCH:
            raise SystemExit(f"raw limit: unexpected answer {response.status_code}")
    seconds = time.perf_counter() - started
    session.close()
    sent = batches * RAW_BATCH
    return {"events": sent, "requests": batches, "seconds": seconds, "events_per_s": sent / seconds}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["events_per_s"] for r in runs]
    return {
        "runs": runs,
        "median_events_per_s": common.median(rates),
        "min_events_per_s": min(rates),
        "max_events_per_s": max(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=100_000, help="rows per engine drain")
    parser.add_argument("--due", nargs="+", choices=common.DUE_MODES, default=common.DUE_MODES)
    parser.add_argument("--rows", choices=common.ROW_KINDS, default="rich")
    parser.add_argument("--baseline-events", type=int, default=2_000)
    parser.add_argument("--raw-events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", help="JSON path (default bench/results/drain-<db>.json)")
    args = parser.parse_args()
    common.setup_django(args.db)
    tag = common.create_demo_tag()
    repeats: list[dict[str, Any]] = []
    # No rate limit in this benchmark: the budget is far above what is sent.
    with common.emulator(budget={"events": 10**9, "window_seconds": 900}) as url:
        for _ in range(args.repeat):
            raw = raw_limit(tag, url, args.raw_events, args.rows)
            engine = {due: engine_drain(tag, url, args.events, due, args.rows) for due in args.due}
            plain = plain_loop(tag, url, args.baseline_events, args.rows)
            ratios = {
                f"{due}_vs_plain_loop": run["events_per_s"] / plain["events_per_s"]
                for due, run in engine.items()
            } | {
                f"{due}_vs_raw_limit": run["events_per_s"] / raw["events_per_s"]
                for due, run in engine.items()
            }
            if len(engine) == 2:
                ratios["distinct_vs_shared"] = (
                    engine["distinct"]["events_per_s"] / engine["shared"]["events_per_s"]
                )
            repeats.append({"engine": engine, "plain_loop": plain, "raw_limit": raw, **ratios})
            print(json.dumps(repeats[-1], default=str), flush=True)
    ratio_names = [k for k in repeats[0] if k not in ("engine", "plain_loop", "raw_limit")]
    median_ratios = {name: common.median([r[name] for r in repeats]) for name in ratio_names}
    engine_by_due = {due: summarise([r["engine"][due] for r in repeats]) for due in args.due}
    targets = [
        common.target(
            f"engine ({due}) / plain loop", median_ratios[f"{due}_vs_plain_loop"], ">=", 30
        )
        for due in args.due
    ]
    if args.db == "sqlite":
        targets += [
            common.target(
                f"engine ({due}) / raw limit", median_ratios[f"{due}_vs_raw_limit"], ">=", 0.5
            )
            for due in args.due
        ]
    if args.db == "postgres" and args.events >= 1_000_000:
        if "shared" in engine_by_due:
            shared = engine_by_due["shared"]["median_events_per_s"]
            targets.append(common.target("engine (shared) events/s at 1M", shared, ">=", 10_000))
        if "distinct_vs_shared" in median_ratios:
            targets.append(
                common.target("distinct / shared", median_ratios["distinct_vs_shared"], "<=", 1.5)
            )
    common.write(
        f"drain-{args.db}",
        {
            "db": args.db,
            "events": args.events,
            "rows": args.rows,
            "repeat": args.repeat,
            "engine": engine_by_due,
            "plain_loop": summarise([r["plain_loop"] for r in repeats]),
            "raw_limit": summarise([r["raw_limit"] for r in repeats]),
            "median_ratios": median_ratios,
            "repeats": repeats,
            "targets": targets,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
