"""Accounts take turns: one batch each per turn, so no backlog starves the others; a slow
account holds up no other; a pixel's bug leaves nothing in flight."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from django_xconversions import budget, delivery, rounds
from django_xconversions import worker as worker_module
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from django_xconversions.worker import Worker, close_connections
from tests.helpers import wait_until
from tests.helpers.workers import run_workers

from .conftest import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    USER_ID,
    configure,
    make_conversions,
    mirror_tag,
)

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 10


def add_accounts(emulator: EmulatorServer, count: int) -> list[EventTag]:
    """``count`` more accounts of the test user, each with a pixel and a purchase tag,
    here and at X (the emulator); created in this order, so by primary key."""
    tags = []
    for n in range(count):
        account_id, pixel_id = f"18ce54d4y{n:02d}", f"f{n:02d}px"
        emulator.add_account(account_id, name=f"Shop {n}", users={USER_ID: ["ACCOUNT_ADMIN"]})
        emulator.add_pixel(account_id, pixel_id)
        account = AdAccount(account_id=account_id, name=f"Shop {n}")
        account.set_tokens(ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
        account.save()
        pixel = Pixel.objects.create(pixel_id=pixel_id, account=account)
        tags.append(mirror_tag(emulator, pixel, f"purchase_{n}", "PURCHASE"))
    return tags


def batches_in_order(emulator: EmulatorServer) -> list[str]:
    """The pixel of each conversions request, in order of arrival."""
    return [entry["pixel_id"] for entry in emulator.conversion_requests()]


def test_each_pixel_gets_its_next_batch_before_any_gets_two_more(
    settings: Any, emulator: EmulatorServer
) -> None:
    configure(settings, BATCH_SIZE=BATCH)
    tags = add_accounts(emulator, 4)
    # Backlogs of 6, 4, 4 and 2 batches: the first account's must not go first.
    for n, (tag, batches) in enumerate(zip(tags, (6, 4, 4, 2), strict=True)):
        make_conversions(tag, batches * BATCH, start=n * 1000)

    summary = delivery.send_pending()

    assert summary.sent == 160 and summary.requests == 16
    order = batches_in_order(emulator)
    assert Counter(order) == {"f00px": 6, "f01px": 4, "f02px": 4, "f03px": 2}
    totals, seen = Counter(order), Counter[str]()
    for position, pixel_id in enumerate(order):
        seen[pixel_id] += 1
        # A pixel's k-th batch leaves only once every pixel has had its (k-1)-th (or
        # all it had): turns, not one backlog after the other.
        k = seen[pixel_id]
        lagging = [p for p in totals if seen[p] < min(k - 1, totals[p])]
        assert not lagging, (position, order)


def test_a_slow_account_holds_up_no_other(settings: Any, emulator: EmulatorServer) -> None:
    configure(settings, BATCH_SIZE=BATCH)
    slow, *quick = add_accounts(emulator, 3)
    assert slow.pixel is not None
    make_conversions(slow, 2 * BATCH)
    for n, tag in enumerate(quick, start=1):
        make_conversions(tag, 8 * BATCH, start=n * 1000)
    # Every answer to the slow pixel comes 2.5 s late (processed on arrival).
    emulator.faults.only_pixels = [slow.pixel.pixel_id]
    emulator.faults.slow_seconds = 2.5
    emulator.faults.set_rates(timeout=1.0)

    summary = delivery.send_pending()

    assert summary.sent == 2 * BATCH + 16 * BATCH
    requests = emulator.conversion_requests()
    slow_arrivals = [r["monotonic"] for r in requests if r["pixel_id"] == slow.pixel.pixel_id]
    quick_arrivals = [r["monotonic"] for r in requests if r["pixel_id"] != slow.pixel.pixel_id]
    assert len(slow_arrivals) == 2 and len(quick_arrivals) == 16
    # The slow account's second batch waits for its first answer; the others do not.
    assert max(quick_arrivals) < slow_arrivals[1], batches_in_order(emulator)
    assert Counter(Conversion.objects.values_list("status", flat=True)) == {"sent": 180}


def test_a_pixels_bug_ends_the_run_with_nothing_left_in_flight(
    settings: Any, monkeypatch: Any, emulator: EmulatorServer
) -> None:
    configure(settings, BATCH_SIZE=BATCH)
    broken, healthy = add_accounts(emulator, 2)
    make_conversions(broken, 3 * BATCH)
    make_conversions(healthy, 3 * BATCH, start=1000)
    real = delivery.claim
    claims: list[str] = []

    def claim(target: Pixel, count: int, **kwargs: Any) -> delivery.Claim:
        claims.append(target.pixel_id)
        if target.pk == broken.pixel_id and claims.count(target.pixel_id) >= 2:
            raise RuntimeError("a bug in this pixel's second batch")
        return real(target, count, **kwargs)

    monkeypatch.setattr(delivery, "claim", claim)
    with pytest.raises(RuntimeError, match="second batch"):
        delivery.send_pending()
    # What had left was written: nothing waits in "sending" for its lease to run out.
    statuses = Counter(Conversion.objects.values_list("status", flat=True))
    assert "sending" not in statuses, statuses
    assert statuses["sent"] == len(emulator.received) >= 2 * BATCH

    # With a handler the run goes on without that pixel and sends all the others have.
    errors: list[str] = []
    summary = delivery.send_pending(on_pixel_error=lambda pixel, exc: errors.append(pixel.pixel_id))
    assert errors == [broken.pixel.pixel_id]
    healthy_rows = Conversion.objects.filter(event_tag=healthy)
    assert set(healthy_rows.values_list("status", flat=True)) == {"sent"}
    assert Conversion.objects.filter(event_tag=broken, status="pending").count() == 2 * BATCH
    assert summary.sent + statuses["sent"] == 4 * BATCH


def test_a_pixel_due_during_a_long_pass_joins_the_turns(
    settings: Any, monkeypatch: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    configure(settings, BATCH_SIZE=BATCH, LOOP_IDLE_SECONDS=0.05)
    monkeypatch.setattr(worker_module, "PASS_SECONDS", 0.2)
    (newcomer,) = add_accounts(emulator, 1)
    make_conversions(purchase_tag, 40 * BATCH)
    emulator.faults.delay_seconds = 0.03  # the backlog takes 40 answers, over 1.2 s
    stop = threading.Event()
    worker = Worker(stop=stop, limit=40 * BATCH + 1)
    thread = threading.Thread(target=lambda: (worker.run(), close_connections()))
    thread.start()
    try:
        wait_until(emulator.conversion_requests, 20, "the backlog never started sending")
        make_conversions(newcomer, 1, start=5000)  # due now, while the backlog drains
        thread.join(30)
    finally:
        stop.set()
        thread.join(10)
    assert worker.totals.sent == 40 * BATCH + 1
    order = batches_in_order(emulator)
    assert newcomer.pixel is not None and purchase_tag.pixel is not None
    # It went out between the backlog's batches, not after them.
    assert order.index(newcomer.pixel.pixel_id) < len(order) - 1, order
    assert order[-1] == purchase_tag.pixel.pixel_id


@pytest.mark.postgres
def test_concurrent_workers_reserve_for_the_least_served_account_only(
    settings: Any, monkeypatch: Any, emulator: EmulatorServer
) -> None:
    # Six accounts with five batches each and three workers picking at once. Every
    # reservation must be taken for an account served no more than any other, as the
    # database holds it at that moment: then no account is ever a batch ahead of another
    # (the spread of events served is at most one batch), whatever the timing. Two
    # workers picking the same least-served account before either reserved broke it.
    configure(settings, BATCH_SIZE=BATCH)
    # One request in flight per worker: a worker then never claims while one of its own
    # accounts waits for an answer (an account it leaves out of the turn so that a slow
    # one holds up no other), and "served no more than any other" is exact.
    monkeypatch.setattr(rounds, "MAX_IN_FLIGHT", 1)
    tags = add_accounts(emulator, 6)
    for n, tag in enumerate(tags):
        make_conversions(tag, 5 * BATCH, start=n * 1000)
    accounts = [tag.account_id for tag in tags]
    emulator.faults.delay_seconds = 0.02  # requests overlap; workers pick while others send
    real_reserve = budget.reserve
    reservations: list[tuple[int, int, int]] = []

    def reserve(account_id: int, wanted: int, now: Any = None) -> budget.Grant:
        # In the claim's transaction, before this reservation: the account's count and the
        # lowest count of the others (which only ever grow).
        used = dict(AdAccount.objects.filter(pk__in=accounts).values_list("pk", "budget_used"))
        mine = used.pop(account_id)
        reservations.append((account_id, mine, min(used.values())))
        return real_reserve(account_id, wanted, now)

    monkeypatch.setattr(budget, "reserve", reserve)
    budget_open = [real_reserve(pk, 0) for pk in accounts]  # every window open, counts at 0
    assert all(grant.events == 0 for grant in budget_open)

    assert not run_workers(3, delivery.send_pending)

    assert Counter(Conversion.objects.values_list("status", flat=True)) == {"sent": 30 * BATCH}
    assert Counter(batches_in_order(emulator)) == {tag.pixel.pixel_id: 5 for tag in tags}  # type: ignore[union-attr]
    ahead = [(pk, mine, least) for pk, mine, least in reservations if mine > least]
    assert not ahead, f"reserved for an account a batch ahead: {ahead} of {reservations}"
