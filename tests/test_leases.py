"""Leases belong to claims and to live workers: a healthy worker's rows are never taken over.

A run that outlasts LEASE_SECONDS, or one batch busy longer than it (slow answers, a long
isolation search), keeps its rows; a second worker started meanwhile sends only what is
still due. Over real HTTP to the emulator, on PostgreSQL with the second worker on its own
connection.

The lease is on the product's clock (``clock`` fixture): a run lasts longer than its lease
when the test moves the clock past it, not after seconds of waiting. The lease keeper
renews on real time (every LEASE_SECONDS / 3), as the moment it would have renewed during
those seconds: the second worker arrives once it has.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from django_xconversions import clock as product_clock
from django_xconversions import delivery
from django_xconversions.batch import BatchSender
from django_xconversions.connections import client_for
from django_xconversions.emulator import EmulatorServer
from django_xconversions.leases import LeaseKeeper
from django_xconversions.models import Conversion, EventTag
from tests.helpers import ShiftedClock, wait_until

from .conftest import configure, make_conversions, received_ids

LEASE = 3.0
# Slow enough answers that a batch is still in flight while the test moves the clock.
ANSWER_DELAY = 0.1
COUNT = 300  # 15 batches of 20


def answers_late(emulator: EmulatorServer, seconds: float) -> None:
    """Every conversions answer comes ``seconds`` late (processed on arrival)."""
    emulator.faults.delay_seconds = seconds


class SecondWorker:
    """Another looping worker on its own thread and database connection."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.summary = delivery.SendSummary()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="second-worker")

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                summary = delivery.send_pending(should_stop=self.stop.is_set)
                self.summary.merge(summary)
                if summary.processed == 0:
                    self.stop.wait(0.1)  # idle, as --loop is between runs
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the second worker did not stop"
        assert self.error is None, repr(self.error)


@pytest.fixture
def second_worker() -> Iterator[SecondWorker]:
    worker = SecondWorker()
    yield worker
    if worker.thread.is_alive():
        worker.stop.set()
        worker.thread.join(timeout=20)


def run_past_the_lease(clock: ShiftedClock, seconds: float, *, held: int | None = None) -> None:
    """Time moves ``seconds`` on (past the lease of every row in flight) and the lease
    keeper catches up, as it renews held claims while time passes: every row in flight
    has a lease running again; with ``held``, that many rows, still in flight."""
    clock.advance(seconds)

    def renewed() -> bool:
        rows = Conversion.objects.filter(status=Conversion.Status.SENDING).aggregate(
            total=Count("pk"),
            running=Count("pk", filter=Q(lease_expires_at__gt=product_clock.now())),
        )
        return rows["running"] == (rows["total"] if held is None else held)

    wait_until(renewed, LEASE, "the leases of rows in flight were not renewed")


def assert_each_received_once(emulator: EmulatorServer, count: int) -> None:
    repeated = {cid: n for cid, n in Counter(received_ids(emulator)).items() if n > 1}
    assert repeated == {}, f"{len(repeated)} conversions sent more than once"
    assert set(received_ids(emulator)) == {f"order:{n}" for n in range(count)}
    assert Counter(Conversion.objects.values_list("status", flat=True)) == {"sent": count}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_run_longer_than_the_lease_with_a_second_worker_sends_each_once(
    settings: Any,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    second_worker: SecondWorker,
    clock: ShiftedClock,
) -> None:
    configure(settings, LEASE_SECONDS=LEASE, BATCH_SIZE=20)
    answers_late(emulator, ANSWER_DELAY)
    make_conversions(purchase_tag, COUNT)
    started = clock.monotonic()
    lease_passed = threading.Event()

    def progress(count: int) -> None:
        # After the first batch the run lasts longer than a lease. The second worker
        # arrives at the next batch sent while this run holds rows it claimed since (their
        # lease timed from the run's start would have run out), most rows still to send.
        if not lease_passed.is_set():
            run_past_the_lease(clock, LEASE + 0.5)
            lease_passed.set()
        elif second_worker.thread.ident is None and (
            Conversion.objects.filter(status=Conversion.Status.SENDING).exists()
        ):
            second_worker.start()

    first = delivery.send_pending(on_progress=progress)
    assert second_worker.thread.ident is not None, "the run ended before the lease passed"
    assert clock.monotonic() - started > LEASE
    # The second worker may still hold a batch (waiting for the account's turn) when the
    # first run ends: stopping it then would release that batch unsent.
    wait_until(
        lambda: not Conversion.objects.exclude(status="sent").exists(),
        20,
        "the two workers did not send everything",
    )
    second_worker.finish()
    assert first.sent > 0 and second_worker.summary.sent > 0
    assert first.sent + second_worker.summary.sent == COUNT
    assert first.lost_claims == 0 and second_worker.summary.lost_claims == 0
    assert_each_received_once(emulator, COUNT)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_batch_busy_longer_than_its_lease_keeps_its_rows(
    settings: Any,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    second_worker: SecondWorker,
    clock: ShiftedClock,
) -> None:
    """One refused batch: the isolation search takes many slow answers, far past the lease
    the rows were claimed with; the lease is renewed, so nobody takes them over."""
    configure(settings, LEASE_SECONDS=LEASE, BATCH_SIZE=100)
    answers_late(emulator, ANSWER_DELAY)
    make_conversions(purchase_tag, 100)
    emulator.reject_event_ids("order:5", "order:40", "order:77")
    watcher_error: list[BaseException] = []

    def start_second_worker_mid_search() -> None:
        # A few answers into the search, it lasts longer than a lease; the second worker
        # arrives then, and keeps looking for due rows while the search goes on.
        try:
            wait_until(lambda: len(emulator.requests) >= 3, 20, "the search never began")
            run_past_the_lease(clock, LEASE + 1.0, held=100)
            second_worker.start()
        except BaseException as exc:
            watcher_error.append(exc)
        finally:
            connection.close()  # this thread's

    watcher = threading.Thread(target=start_second_worker_mid_search)
    watcher.start()
    started = clock.monotonic()
    summary = delivery.send_pending()
    elapsed = clock.monotonic() - started
    watcher.join(timeout=20)
    assert watcher_error == []
    second_worker.finish()
    assert elapsed > LEASE + 1.0, f"the search took {elapsed:.1f} s, not past the lease"
    assert summary.sent == 97 and summary.failed == Counter({"rejected": 3})
    assert second_worker.summary.processed == 0 and second_worker.summary.requests == 0
    ids = received_ids(emulator)
    assert len(ids) == len(set(ids)) == 97


def test_lease_is_timed_from_the_claim_not_the_run(settings: Any, purchase_tag: EventTag) -> None:
    configure(settings, LEASE_SECONDS=LEASE)
    make_conversions(purchase_tag, 3)
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    Conversion.objects.update(next_attempt_at=an_hour_ago)
    # A run that began half an hour ago claims now: the lease counts from now.
    claim = delivery.claim(purchase_tag.pixel, 3, due_by=an_hour_ago + dt.timedelta(minutes=30))
    assert len(claim.rows) == 3
    leases = set(Conversion.objects.values_list("lease_expires_at", flat=True))
    [expires] = leases
    assert expires is not None
    assert LEASE - 1 < (expires - timezone.now()).total_seconds() <= LEASE


def test_keeper_renews_only_the_claims_it_holds(settings: Any, purchase_tag: EventTag) -> None:
    configure(settings, LEASE_SECONDS=LEASE)
    make_conversions(purchase_tag, 6)
    mine = delivery.claim(purchase_tag.pixel, 3)
    other = delivery.claim(purchase_tag.pixel, 3)
    past = timezone.now() - dt.timedelta(seconds=1)
    Conversion.objects.update(lease_expires_at=past)
    keeper = LeaseKeeper()
    keeper.hold(mine.token)
    assert keeper.renew() == 3
    renewed = Conversion.objects.filter(claim_token=mine.token)
    assert all(row.lease_expires_at > timezone.now() for row in renewed)
    assert set(
        Conversion.objects.filter(claim_token=other.token).values_list(
            "lease_expires_at", flat=True
        )
    ) == {past}
    keeper.release(mine.token)
    assert keeper.renew() == 0


def test_outcomes_of_a_claim_that_moved_on_are_counted_not_written(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 10)
    claim = delivery.claim(purchase_tag.pixel, 10)
    summary = delivery.SendSummary()
    target = purchase_tag.pixel
    assert target is not None
    sender = BatchSender(client_for(target.account, target), target, claim, summary)
    sender.prepare()
    transmission = sender.transmit()
    # Meanwhile (say the lease ran out while the database was unreachable) another worker
    # took four of the rows over.
    taken = [row.pk for row in claim.rows[:4]]
    other = uuid.uuid4()
    Conversion.objects.filter(pk__in=taken).update(claim_token=other)
    sender.complete(transmission)
    assert summary.sent == 6 and summary.lost_claims == 4
    assert summary.as_dict()["lost_claims"] == 4
    assert set(Conversion.objects.filter(pk__in=taken).values_list("status", "claim_token")) == {
        ("sending", other)
    }


def test_a_claim_token_names_the_process_holding_the_rows(purchase_tag: EventTag) -> None:
    make_conversions(purchase_tag, 2)
    claim = delivery.claim(purchase_tag.pixel, 2)
    assert delivery.claim_token_pid(claim.token) == os.getpid()
    stored = set(Conversion.objects.values_list("claim_token", flat=True))
    assert stored == {claim.token}
    tokens = {delivery.claim(purchase_tag.pixel, 1).token for _ in range(3)}
    assert len(tokens) == 3 and all(t.variant == uuid.RFC_4122 for t in tokens)
    assert delivery.claim_token_pid(uuid.uuid4()) is None


@pytest.mark.django_db(transaction=True)
def test_keeper_thread_renews_held_claims_until_it_stops(
    settings: Any, purchase_tag: EventTag
) -> None:
    configure(settings, LEASE_SECONDS=0.6)  # renewed every 0.2 s
    make_conversions(purchase_tag, 4)
    claim = delivery.claim(purchase_tag.pixel, 4)
    first_lease = Conversion.objects.values_list("lease_expires_at", flat=True)[0]
    assert first_lease is not None
    with LeaseKeeper() as keeper:
        keeper.hold(claim.token)
        wait_until(
            lambda: Conversion.objects.filter(lease_expires_at__gt=first_lease).count() == 4,
            10,
            "the leases were never renewed",
        )
        thread = keeper._thread
    assert thread is not None and not thread.is_alive()
    # Nothing renews them any more: the rows return to pending once the lease runs out.
    renewed = Conversion.objects.values_list("lease_expires_at", flat=True)[0]
    assert renewed is not None
    assert delivery.recover_expired_leases(renewed + dt.timedelta(seconds=0.01)) == 4
