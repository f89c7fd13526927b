"""On PostgreSQL an accepted batch's outcome is written on a connection of its own while
the sending thread claims the next batch. Written behind, an outcome still keeps its rows'
lease and its account until it is committed, X's stop is written after it, and a
connection lost while writing loses no conversion.

Each test runs the sender on a thread of its own and holds the writer at a chosen moment
(an Event), so the test can look at the database from a third connection meanwhile.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.db.models import Count, Q

from django_xconversions import budget, claiming, delivery, rounds
from django_xconversions import clock as product_clock
from django_xconversions.batch import BatchSender
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag
from tests.helpers import ShiftedClock, holds_for, wait_until

from .conftest import configure, make_conversions, received_ids

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT = 10.0  # seconds any step may take before the test gives up on it


class HeldWriter:
    """Holds the first outcome write until ``let_go()``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.holding = threading.Event()
        self.go = threading.Event()
        self.threads: list[str] = []
        self.backend_pid: int | None = None
        self.writes = 0
        write = BatchSender._write

        def held_write(sender: BatchSender) -> None:
            self.writes += 1
            self.threads.append(threading.current_thread().name)
            if self.writes == 1:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self.backend_pid = cursor.fetchone()[0]
                self.holding.set()
                assert self.go.wait(WAIT), "the test never let the writer go"
            write(sender)

        monkeypatch.setattr(BatchSender, "_write", held_write)

    def wait_held(self) -> None:
        assert self.holding.wait(WAIT), "the first outcome was never written"

    def let_go(self) -> None:
        self.go.set()


class SenderThread:
    """``delivery.send_pending()`` on a thread (and connection) of its own."""

    def __init__(self, **kwargs: Any) -> None:
        self.summary: delivery.SendSummary | None = None
        self.error: BaseException | None = None
        self.progress: list[int] = []
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, name="sender")

    def _run(self, **kwargs: Any) -> None:
        try:
            self.summary = delivery.send_pending(on_progress=self.progress.append, **kwargs)
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def start(self) -> SenderThread:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(timeout=WAIT * 3)
        assert not self.thread.is_alive(), "the sender did not finish"

    def finish(self) -> None:
        """Joined, and ended without an error."""
        self.join()
        assert self.error is None, repr(self.error)


@pytest.fixture
def sender_threads() -> Iterator[list[SenderThread]]:
    started: list[SenderThread] = []
    yield started
    for sender in started:
        sender.thread.join(timeout=WAIT * 3)


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> HeldWriter:
    return HeldWriter(monkeypatch)


@pytest.fixture
def batches_of_100(settings: Any) -> None:
    configure(settings, BATCH_SIZE=100)


@pytest.fixture
def batches_of_100_leased(settings: Any) -> float:
    """Batches of 100 and a lease of 5 s (the product's clock moves it on); the lease."""
    configure(settings, BATCH_SIZE=100, LEASE_SECONDS=5.0)
    return 5.0


def start_sender(started: list[SenderThread], **kwargs: Any) -> SenderThread:
    sender = SenderThread(**kwargs)
    started.append(sender)
    return sender.start()


def send_again_after_the_lease(
    clock: ShiftedClock, lease: float, started: list[SenderThread]
) -> None:
    """Another run once the lease of rows left in flight has run out: it takes them over."""
    clock.advance(lease + 1)
    start_sender(started).finish()


def statuses() -> Counter[str]:
    return Counter(Conversion.objects.values_list("status", flat=True))


def sessions_of_this_database() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def account_is_free(account: AdAccount) -> bool:
    """Whether another worker could take the account's sending lock right now."""
    key = budget.lock_key(account.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_lock(%s::int4, %s::int4)", [budget.SENDING_LOCK, key]
        )
        free = bool(cursor.fetchone()[0])
        if free:
            cursor.execute(
                "SELECT pg_advisory_unlock(%s::int4, %s::int4)", [budget.SENDING_LOCK, key]
            )
    return free


def test_the_next_batch_is_claimed_while_an_outcome_is_written(
    batches_of_100: None,
    monkeypatch: pytest.MonkeyPatch,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    sender_threads: list[SenderThread],
    writer: HeldWriter,
) -> None:
    make_conversions(purchase_tag, 300)
    handed_over = threading.Event()
    write_behind = rounds.Rounds._write_behind

    def watched_write_behind(self: rounds.Rounds, *args: Any) -> None:
        handed_over.set()
        write_behind(self, *args)

    monkeypatch.setattr(rounds.Rounds, "_write_behind", watched_write_behind)
    claims_while_held: list[int] = []
    claim_rows = claiming.claim_rows

    def watched_claim(*args: Any, **kwargs: Any) -> Any:
        rows = claim_rows(*args, **kwargs)
        if handed_over.is_set() and not writer.go.is_set():
            claims_while_held.append(len(rows))
            writer.let_go()  # the third batch was claimed with the first being written
        return rows

    monkeypatch.setattr(claiming, "claim_rows", watched_claim)
    before = sessions_of_this_database()
    sender = start_sender(sender_threads)
    sender.finish()
    # Written synchronously, the held write would have blocked every later claim.
    assert claims_while_held == [100]
    assert set(writer.threads) == {"xconversions-write_0"}
    assert sender.summary is not None
    assert (sender.summary.sent, sender.summary.requests) == (300, 3)
    assert sum(sender.progress) == 300
    assert statuses() == {"sent": 300}
    assert sorted(received_ids(emulator)) == sorted(f"order:{n}" for n in range(300))
    # The writer's connection ended with the run (the sender's own closed with its thread).
    wait_until(lambda: sessions_of_this_database() <= before, WAIT, "a connection was left open")


def test_an_outcome_being_written_keeps_its_lease_and_its_account(
    settings: Any,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    clock: ShiftedClock,
    sender_threads: list[SenderThread],
    writer: HeldWriter,
) -> None:
    lease = 0.6  # renewed every 0.2 s
    configure(settings, BATCH_SIZE=100, LEASE_SECONDS=lease)
    make_conversions(purchase_tag, 100)
    sender = start_sender(sender_threads)
    writer.wait_held()
    # X accepted the batch; its outcome is not written yet. Time passes far beyond the
    # lease: the lease keeper still renews these rows, so no other worker takes them.
    clock.advance(lease * 5)

    def renewed() -> bool:
        rows = Conversion.objects.aggregate(
            sending=Count("pk", filter=Q(status="sending")),
            running=Count("pk", filter=Q(lease_expires_at__gt=product_clock.now())),
        )
        return rows == {"sending": 100, "running": 100}

    wait_until(renewed, WAIT, "the rows being written lost their lease")
    assert delivery.recover_expired_leases() == 0
    # Nor does another worker send for the account before its outcome is committed.
    assert not account_is_free(purchase_tag.account)
    writer.let_go()
    sender.finish()
    assert statuses() == {"sent": 100}
    assert account_is_free(purchase_tag.account)
    assert len(received_ids(emulator)) == 100


def test_x_saying_stop_is_written_after_the_outcomes_before_it(
    batches_of_100: None,
    monkeypatch: pytest.MonkeyPatch,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    sender_threads: list[SenderThread],
    writer: HeldWriter,
) -> None:
    make_conversions(purchase_tag, 300)
    emulator.faults.rate_limit_reset_seconds = 60
    emulator.faults.script(["ok", "429"])
    sent_when_stopped: list[int] = []
    wait_out = budget.wait_out_rate_limit

    def watched_wait_out(*args: Any, **kwargs: Any) -> None:
        sent_when_stopped.append(Conversion.objects.filter(status="sent").count())
        wait_out(*args, **kwargs)

    monkeypatch.setattr(budget, "wait_out_rate_limit", watched_wait_out)
    sender = start_sender(sender_threads)
    writer.wait_held()
    # X's 429 to the second batch arrives while the first batch's outcome is held.
    wait_until(lambda: len(emulator.requests) >= 2, WAIT, "the second batch never left")
    writer.let_go()
    sender.finish()
    # The rate limit was written once the first batch's rows were marked sent.
    assert sent_when_stopped == [100]
    assert sender.summary is not None
    assert (sender.summary.sent, sender.summary.requests) == (100, 2)
    assert purchase_tag.account.account_id in sender.summary.rate_limited
    assert statuses() == {"sent": 100, "pending": 200}
    assert len(emulator.requests) == 2  # not one more request after the 429
    account = AdAccount.objects.get(pk=purchase_tag.account_id)
    assert account.rate_limited_until is not None


def test_a_connection_lost_while_writing_loses_nothing(
    batches_of_100_leased: float,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    clock: ShiftedClock,
    sender_threads: list[SenderThread],
    writer: HeldWriter,
) -> None:
    lease = batches_of_100_leased
    make_conversions(purchase_tag, 100)
    sender = start_sender(sender_threads)
    writer.wait_held()
    # The writer's connection is cut (a failover, a restart) before it writes.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [writer.backend_pid])
    writer.let_go()
    sender.join()
    # An outage ends the run, as one on the sending thread does (the worker retries).
    assert isinstance(sender.error, DatabaseError), repr(sender.error)
    # X has the batch but its outcome was lost: the rows stay in flight until their
    # lease runs out; nothing is marked sent that was not, nothing disappears.
    assert statuses() == {"sending": 100}
    assert account_is_free(purchase_tag.account)
    send_again_after_the_lease(clock, lease, sender_threads)
    assert statuses() == {"sent": 100}
    # At least once: the batch whose outcome was lost reached X twice, nothing else.
    assert Counter(received_ids(emulator)) == {f"order:{n}": 2 for n in range(100)}


def test_outcomes_queued_behind_a_lost_connection_are_written_on_a_new_one(
    batches_of_100_leased: float,
    monkeypatch: pytest.MonkeyPatch,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    clock: ShiftedClock,
    sender_threads: list[SenderThread],
) -> None:
    lease = batches_of_100_leased
    make_conversions(purchase_tag, 200)
    handed_over: list[BatchSender] = []
    write_behind = rounds.Rounds._write_behind

    def counted_write_behind(self: rounds.Rounds, sender: BatchSender, *args: Any) -> None:
        handed_over.append(sender)
        write_behind(self, sender, *args)

    monkeypatch.setattr(rounds.Rounds, "_write_behind", counted_write_behind)
    write = BatchSender._write
    writes: list[BatchSender] = []

    def first_write_cut(sender: BatchSender) -> None:
        writes.append(sender)
        if len(writes) == 1:
            # The second batch's outcome waits behind this one when its connection is cut.
            wait_until(lambda: len(handed_over) == 2, WAIT, "the second batch never returned")
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        write(sender)

    monkeypatch.setattr(BatchSender, "_write", first_write_cut)
    sender = start_sender(sender_threads)
    sender.join()
    assert isinstance(sender.error, DatabaseError), repr(sender.error)
    first = {row.pk for row in writes[0].rows}
    # The second outcome was written on a fresh connection; the first waits for its lease.
    assert statuses() == {"sending": 100, "sent": 100}
    assert set(Conversion.objects.filter(status="sending").values_list("pk", flat=True)) == first
    send_again_after_the_lease(clock, lease, sender_threads)
    assert statuses() == {"sent": 200}
    twice = {cid for cid, n in Counter(received_ids(emulator)).items() if n == 2}
    assert len(twice) == 100 and len(received_ids(emulator)) == 300


def test_a_writer_that_falls_behind_slows_the_claims(
    batches_of_100: None,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    sender_threads: list[SenderThread],
    writer: HeldWriter,
) -> None:
    """Outcomes waiting for the writer hold their rows in memory: at most MAX_IN_FLIGHT of
    them queue up, then nothing more is claimed until the writer catches up."""
    make_conversions(purchase_tag, 1000)
    sender = start_sender(sender_threads)
    writer.wait_held()
    # Four outcomes queue behind the held one's place, the batch claimed before the
    # queue filled leaves too; a sixth request would mean the queue kept growing.
    bound = rounds.MAX_IN_FLIGHT + 1
    wait_until(lambda: len(emulator.requests) >= bound, WAIT, "the batches never left")
    try:
        holds_for(
            lambda: len(emulator.requests) <= bound,
            1.0,
            lambda: f"{len(emulator.requests)} requests left with the writer held",
        )
    finally:
        writer.let_go()
    sender.finish()
    assert statuses() == {"sent": 1000}
