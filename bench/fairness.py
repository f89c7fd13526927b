"""Fairness across accounts: many accounts with equal backlogs, several
``send_conversions --loop`` workers (processes) on PostgreSQL, and how evenly X hears
from each account; then the same with one account X refuses (401: paused at its first
answer) and one X answers 2 s late, and what those two cost the others.

    python bench/fairness.py --accounts 200 --pending 2000 --workers 4

Each account has one pixel and ``--pending`` rich conversions, all due. The emulator (in
this process) logs each request's arrival, pixel and events. Figures, per run:

- ``share_max_min_30s``: among the healthy accounts, the most events one account got
  through in the first 30 s (from the first request) over the fewest;
- ``batches_min_max_half``: the fewest and most batches a healthy account had sent at
  the moment half of their events had arrived (meaningful however fast the run is; one
  after the other, the first accounts would be done and the last not started);
- ``others_events_per_second``: events of the accounts other than the two troubled ones
  (in both runs the same accounts) over the time from the first request until the last
  of those arrived.

Targets: share max/min <= 1.5 over the first 30 s (even run); the troubled run's
``others_events_per_second`` >= 90% of the even run's. The two runs of a pair are made one
after the other, so a machine that speeds up or slows down between them moves the ratio
either way: ``--repeat`` pairs are run, in alternating order (even first, then troubled
first), and the judged figures are the medians of the per-pair values. Writes
bench/results/fairness.json (or --output).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import common

WINDOW_SECONDS = 30.0
TARGET_SHARE = 1.5
TARGET_OTHERS = 0.90
SLOW_SECONDS = 2.0


def account_spec(n: int) -> dict[str, str]:
    return {
        "account_id": f"18ce5f{n:05d}",
        "pixel_id": f"fp{n:04d}",
        "tag_id": f"ft{n:04d}",
        "website_tag_id": f"fw{n:04d}",
    }


def create_accounts(emulator: Any, user: dict[str, Any], count: int) -> list[Any]:
    """``count`` accounts of the demo user, each with a pixel and a purchase tag, at X
    (the emulator) and here; their tags, in order."""
    from django_xconversions.models import AdAccount, EventTag, Pixel

    tags = []
    for n in range(count):
        spec = account_spec(n)
        emulator.add_account(
            spec["account_id"], name=f"Shop {n}", users={user["user_id"]: ["ACCOUNT_ADMIN"]}
        )
        emulator.add_pixel(spec["account_id"], spec["pixel_id"])
        emulator.add_tag(
            spec["account_id"],
            id=spec["tag_id"],
            website_tag_id=spec["website_tag_id"],
            name="Purchase",
            type="PURCHASE",
        )
        account = AdAccount(account_id=spec["account_id"], name=f"Shop {n}")
        account.set_tokens(user["access_token"], user["access_token_secret"])
        account.save()
        pixel = Pixel.objects.create(pixel_id=spec["pixel_id"], account=account)
        tags.append(
            EventTag.objects.create(
                account=account,
                pixel=pixel,
                remote_id=spec["tag_id"],
                website_tag_id=spec["website_tag_id"],
                key=f"purchase-{n}",
                name="Purchase",
                type="PURCHASE",
            )
        )
    return tags


def seed_accounts(tags: list[Any], pending: int, label: str) -> None:
    """``pending`` due rich rows for each tag: seeded in one COPY for the first tag, then
    dealt out to the tags round the table by one UPDATE (so one ANALYZE in all)."""
    from django.db import connection

    from django_xconversions.models import Conversion

    common.seed(tags[0], pending * len(tags), label)
    values = ", ".join(f"({n}, {tag.pk}, {tag.pixel_id}, %s)" for n, tag in enumerate(tags))
    table = Conversion._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS c SET event_tag_id = m.tag, pixel_id = m.pixel, "  # noqa: S608
            f"event_key = m.key FROM (VALUES {values}) AS m(slot, tag, pixel, key) "
            f"WHERE mod(c.id, {len(tags)}) = m.slot",
            [tag.key for tag in tags],
        )
        cursor.execute(f"VACUUM ANALYZE {table}")


def reset_accounts(user: dict[str, Any]) -> None:
    """Every account active, its budget untouched, its tokens right."""
    from django_xconversions.models import AdAccount

    for account in AdAccount.objects.all():
        account.status = AdAccount.Status.ACTIVE
        account.paused_reason = ""
        account.paused_at = None
        account.rate_limited_until = None
        account.budget_window_ends_at = None
        account.budget_used = 0
        account.set_tokens(user["access_token"], user["access_token_secret"])
        account.save()


def start_worker(database_url: str, overrides: dict[str, Any]) -> subprocess.Popen[str]:
    return common.start_bench_process(
        ["-m", "django", "send_conversions", "--loop"], database_url, overrides
    )


def share_ratio(counts: dict[str, int], pixels: list[str]) -> float | None:
    values = [counts.get(p, 0) for p in pixels]
    if not values or max(values) == 0:
        return None
    # None when an account got nothing at all (the counts say so).
    return round(max(values) / min(values), 3) if min(values) else None


def one_run(
    *,
    label: str,
    emulator: Any,
    tags: list[Any],
    pending: int,
    batch: int,
    workers: int,
    database_url: str,
    overrides: dict[str, Any],
    troubled: bool,
    user: dict[str, Any],
    max_seconds: float,
) -> dict[str, Any]:
    from django_xconversions.models import AdAccount, Conversion

    common.empty_outbox()
    reset_accounts(user)
    emulator.reset_records()
    with emulator.world.lock:  # X's per-account counts start afresh too
        emulator.world.event_windows.clear()
    emulator.faults.clear()
    emulator.faults.only_pixels = None
    seed_accounts(tags, pending, label)
    pixels = [tag.pixel.pixel_id for tag in tags]
    paused_pixel, slow_pixel = pixels[0], pixels[1]
    others = pixels[2:]
    if troubled:
        # X refuses the first account's credentials (401: the engine pauses it) and
        # answers the second's every request SLOW_SECONDS late.
        paused = AdAccount.objects.get(pk=tags[0].account_id)
        paused.set_tokens(user["access_token"], "revoked-secret")
        paused.save()
        emulator.faults.only_pixels = [slow_pixel]
        emulator.faults.slow_seconds = SLOW_SECONDS
        emulator.faults.set_rates(timeout=1.0)
    others_total = pending * len(others)
    others_rows = Conversion.objects.filter(pixel__pixel_id__in=others)
    procs = [start_worker(database_url, overrides) for _ in range(workers)]
    started = time.monotonic()
    try:
        while time.monotonic() - started < max_seconds:
            if not others_rows.exclude(status="sent").exists():
                break
            time.sleep(0.25)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        exits = []
        for proc in procs:
            try:
                exits.append(proc.wait(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                exits.append(None)
    requests = [r for r in emulator.conversion_requests() if r["status"] == 200]
    if not requests:
        raise SystemExit(f"{label}: nothing was sent")
    first = min(r["monotonic"] for r in requests)
    arrivals = sorted((r["monotonic"] - first, r["pixel_id"], r["events"]) for r in requests)
    healthy = others if troubled else pixels
    healthy_total = pending * len(healthy)
    window: Counter[str] = Counter()
    half: Counter[str] = Counter()
    done = 0
    half_at = None
    others_done = 0
    others_last = 0.0
    for at, pixel_id, events in arrivals:
        if at <= WINDOW_SECONDS:
            window[pixel_id] += events
        if pixel_id in healthy and half_at is None:
            done += events
            half[pixel_id] += events
            if done >= healthy_total / 2:
                half_at = at
        if pixel_id in others:
            others_done += events
            others_last = at
    drained_at_30s = sum(1 for p in healthy if window.get(p, 0) >= pending)
    result = {
        "troubled": troubled,
        "workers": workers,
        "accounts": len(tags),
        "pending_per_account": pending,
        "batch_size": batch,
        "others_sent": others_done,
        "others_all_sent": others_done >= others_total,
        "others_seconds": round(others_last, 2),
        "others_events_per_second": round(others_done / others_last, 1) if others_last else None,
        "share_max_min_30s": share_ratio(window, healthy),
        "share_min_max_events_30s": [
            min(window.get(p, 0) for p in healthy),
            max(window.get(p, 0) for p in healthy),
        ],
        "accounts_drained_within_30s": drained_at_30s,
        # In batches: ratios of a few batches each say little (1 vs 2 batches reads 2.0).
        "batches_min_max_half": [
            min(half.get(p, 0) for p in healthy) / batch,
            max(half.get(p, 0) for p in healthy) / batch,
        ],
        "half_sent_at_seconds": round(half_at, 2) if half_at is not None else None,
        "requests": len(emulator.conversion_requests()),
        "worker_exit_codes": exits,
    }
    if troubled:
        statuses = Counter(r["status"] for r in emulator.conversion_requests(paused_pixel))
        slow = emulator.conversion_requests(slow_pixel)
        result["paused_account"] = {
            "status": AdAccount.objects.get(pk=tags[0].account_id).status,
            "requests_by_status": {str(k): v for k, v in statuses.items()},
        }
        result["slow_account"] = {
            "requests": len(slow),
            "events_sent": sum(r["events"] or 0 for r in slow if r["status"] == 200),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--pending", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--output", help="JSON path (default bench/results/fairness.json)")
    args = parser.parse_args()
    if args.accounts < 3:
        raise SystemExit("--accounts must be at least 3 (one paused, one slow, the others)")
    common.setup_django("postgres")
    from django.conf import settings
    from django.db import connection

    from django_xconversions.emulator import EmulatorServer
    from django_xconversions.emulator.demo import demo_world, seed

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    emulator = EmulatorServer()
    world = demo_world()
    world["accounts"] = []
    seed(emulator, world)
    emulator.record_ids_only()
    emulator.set_budget(10**9, 900)
    emulator.start()
    app, user = world["apps"][0], world["users"][0]
    tags = create_accounts(emulator, user, args.accounts)
    overrides = {
        "API_BASE_URL": emulator.url,
        "CONSUMER_KEY": app["consumer_key"],
        "CONSUMER_SECRET": app["consumer_secret"],
        "ENCRYPTION_KEY": settings.XCONVERSIONS["ENCRYPTION_KEY"],
        "RATE_LIMIT_EVENTS": 10**9,
        "LOOP_IDLE_SECONDS": 0.5,
        "BATCH_SIZE": args.batch_size,
    }
    pairs = []
    try:
        for repeat in range(max(1, args.repeat)):
            order = [("even", False), ("troubled", True)]
            runs = {}
            ordered = order if repeat % 2 == 0 else order[::-1]
            for label, troubled in ordered:
                runs[label] = one_run(
                    label=label,
                    emulator=emulator,
                    tags=tags,
                    pending=args.pending,
                    batch=args.batch_size,
                    workers=args.workers,
                    database_url=database_url,
                    overrides=overrides,
                    troubled=troubled,
                    user=user,
                    max_seconds=args.max_seconds,
                )
            pairs.append(pair_figures(runs, first=ordered[0][0]))
    finally:
        emulator.stop()
    kept = [pair["others_throughput_kept"] for pair in pairs]
    common.write(
        "fairness",
        {
            "db": "postgres",
            "repeat": len(pairs),
            "pairs": pairs,
            "others_throughput_kept": median_or_none(kept),
            "targets": [
                common.target(
                    "share max/min, first 30 s (even run; median of pairs)",
                    median_or_none([pair["even"]["share_max_min_30s"] for pair in pairs]),
                    "<=",
                    TARGET_SHARE,
                ),
                common.target(
                    "share max/min, first 30 s (troubled run, healthy accounts; median)",
                    median_or_none([pair["troubled"]["share_max_min_30s"] for pair in pairs]),
                    "<=",
                    TARGET_SHARE,
                ),
                common.target(
                    "others' throughput with a paused and a slow account / without "
                    "(median of pairs)",
                    median_or_none(kept),
                    ">=",
                    TARGET_OTHERS,
                ),
            ],
        },
        args.output,
    )


def pair_figures(runs: dict[str, dict[str, Any]], *, first: str) -> dict[str, Any]:
    """A pair's two runs, which ran first, and the share of the others' throughput the
    troubles left."""
    even, troubled = (
        runs["even"]["others_events_per_second"],
        runs["troubled"]["others_events_per_second"],
    )
    kept = round(troubled / even, 3) if even and troubled else None
    return {**runs, "first": first, "others_throughput_kept": kept}


def median_or_none(values: list[Any]) -> float | None:
    known = [value for value in values if value is not None]
    return round(common.median(known), 3) if len(known) == len(values) and known else None


if __name__ == "__main__":
    main()
