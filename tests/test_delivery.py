"""The delivery engine against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from typing import Any

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_xconversions import actions, budget, delivery, rounds
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, DeliveryAttempt, EventTag
from tests.helpers import ShiftedClock

from .conftest import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, configure, make_conversions, received_ids

pytestmark = pytest.mark.django_db


def statuses() -> Counter[str]:
    return Counter(Conversion.objects.values_list("status", flat=True))


def conversion_requests(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return [r for r in emulator.requests if "/measurement/conversions/" in r["path"]]


def test_1234_conversions_go_out_in_3_requests_each_once(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 1234)
    summary = delivery.send_pending()
    assert summary.sent == 1234 and summary.requests == 3
    assert [r["events"] for r in conversion_requests(emulator)] == [500, 500, 234]
    ids = received_ids(emulator)
    assert len(ids) == 1234 and set(ids) == {f"order:{n}" for n in range(1234)}
    assert statuses() == {"sent": 1234}
    assert Conversion.objects.exclude(debug_id="").count() == 1234
    assert DeliveryAttempt.objects.filter(http_status=200).count() == 3


def queries_for_one_batch(settings: Any, tag: EventTag, size: int) -> int:
    configure(settings, BATCH_SIZE=size)
    Conversion.objects.all().delete()
    make_conversions(tag, size)
    with CaptureQueriesContext(connection) as captured:
        summary = delivery.send_pending(limit=size)
    assert summary.sent == size and summary.requests == 1
    return len(captured)


def test_queries_per_batch_do_not_grow_with_batch_size(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    budget.reserve(purchase_tag.account_id, 0)  # the budget's window is open for both
    assert queries_for_one_batch(settings, purchase_tag, 10) == queries_for_one_batch(
        settings, purchase_tag, 500
    )


def test_rejected_events_are_isolated_by_splitting(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 500)
    bad = {"order:7", "order:250", "order:499"}
    emulator.reject_event_ids(*bad)
    summary = delivery.send_pending()
    assert summary.sent == 497
    assert summary.failed == Counter({"rejected": 3})
    # The whole batch, then about 9 requests per bad event (see isolation.py).
    assert summary.requests <= 1 + 3 * 9
    failed = Conversion.objects.filter(status="failed")
    assert set(failed.values_list("conversion_id", flat=True)) == bad
    for row in failed:
        assert row.last_error == "hashed_email (rejected) is not a valid SHA-256 hash"
    assert set(received_ids(emulator)) == {f"order:{n}" for n in range(500)} - bad


def test_locally_invalid_events_never_reach_x(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    good, bad = make_conversions(purchase_tag, 2)
    Conversion.objects.filter(pk=bad.pk).update(twclid="", currency="XYZ")
    summary = delivery.send_pending()
    bad.refresh_from_db()
    assert summary.sent == 1 and summary.failed == Counter({"invalid": 1})
    assert bad.status == "failed" and bad.error_reason == "invalid"
    assert "At least one user identifier must be provided" in bad.last_error
    assert "price_currency (XYZ) is not a valid ISO-4217 currency code" in bad.last_error
    assert received_ids(emulator) == [good.conversion_id]


@pytest.mark.parametrize("price", ["sNaN", "-sNaN7", "NaN", "1e999", "twelve"])
def test_a_stored_price_no_number_can_hold_fails_its_row_alone(
    emulator: EmulatorServer, purchase_tag: EventTag, price: str
) -> None:
    # track() refuses such prices; a row written around it must not wedge its pixel.
    good, bad = make_conversions(purchase_tag, 2)
    Conversion.objects.filter(pk=bad.pk).update(contents=[{"content_price": price}])
    summary = delivery.send_pending()
    bad.refresh_from_db()
    assert summary.sent == 1 and summary.failed == Counter({"invalid": 1})
    assert bad.status == "failed" and "content_price" in bad.last_error
    assert received_ids(emulator) == [good.conversion_id]


def test_401_pauses_account_keeps_events_pending_until_credentials_fixed(
    emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag
) -> None:
    account.set_tokens(ACCESS_TOKEN, "wrong-secret")
    account.save()
    make_conversions(purchase_tag, 20)
    summary = delivery.send_pending()
    account.refresh_from_db()
    assert account.status == "paused" and "X refused the credentials" in account.paused_reason
    assert summary.paused == {account.account_id: account.paused_reason}
    assert statuses() == {"pending": 20}
    assert set(Conversion.objects.values_list("attempts", flat=True)) == {0}
    # While paused nothing is attempted.
    assert delivery.send_pending().requests == 0
    account.set_tokens(ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
    account.save()
    account.resume()
    assert delivery.send_pending().sent == 20
    assert statuses() == {"sent": 20}


def test_429_waits_for_reset_without_counting_an_attempt(
    emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag, clock: ShiftedClock
) -> None:
    emulator.faults.rate_limit_reset_seconds = 2
    emulator.faults.script(["429"])
    make_conversions(purchase_tag, 30)
    first = delivery.send_pending()
    assert first.sent == 0 and account.account_id in first.rate_limited
    assert statuses() == {"pending": 30}
    assert set(Conversion.objects.values_list("attempts", flat=True)) == {0}
    before = len(emulator.requests)
    assert delivery.send_pending().sent == 0
    assert len(emulator.requests) == before, "nothing may be sent before the reset"
    account.refresh_from_db()
    assert account.rate_limited_until is not None
    clock.advance_past(account.rate_limited_until)
    assert delivery.send_pending().sent == 30
    assert len(received_ids(emulator)) == 30


def test_transient_failures_back_off_then_succeed(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    configure(settings, RETRY_BACKOFF_BASE=0.2, RETRY_BACKOFF_MAX=10.0, READ_TIMEOUT=0.5)
    emulator.faults.slow_seconds = 1.0
    emulator.faults.script(["500", "503", "timeout", "reset"])
    make_conversions(purchase_tag, 5)
    for attempt in range(1, 5):
        started = timezone.now()
        summary = delivery.send_pending()
        assert summary.retrying == 5 and summary.sent == 0
        rows = list(Conversion.objects.all())
        assert {r.attempts for r in rows} == {attempt}
        assert {r.status for r in rows} == {"pending"}
        ceiling = 0.2 * 2 ** (attempt - 1)
        delays = [(r.next_attempt_at - started).total_seconds() for r in rows]
        # 503 carries retry-after (1 s by default), which wins over a shorter backoff.
        floor = max(ceiling / 2, 1.0 if attempt == 2 else 0.0)
        assert all(floor - 0.05 <= d <= max(ceiling, floor) + 1.0 for d in delays), delays
        Conversion.objects.update(next_attempt_at=timezone.now())
    assert delivery.send_pending().sent == 5
    assert statuses() == {"sent": 5}


def test_gives_up_after_max_attempts_then_retry_sends(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    configure(settings, MAX_ATTEMPTS=3, RETRY_BACKOFF_BASE=0.01)
    emulator.faults.script(["500", "500", "500"])
    make_conversions(purchase_tag, 4)
    for _ in range(3):
        delivery.send_pending()
        Conversion.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    rows = list(Conversion.objects.all())
    assert {r.status for r in rows} == {"failed"}
    assert {r.error_reason for r in rows} == {"max_attempts"}
    assert all("Internal error" in r.last_error for r in rows)
    assert actions.requeue(Conversion.objects.filter(status="failed")).queued == 4
    assert delivery.send_pending().sent == 4


def test_expired_lease_returns_rows_to_another_worker(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 10)
    claimed = delivery.claim(purchase_tag.pixel, 10)  # a worker that then died
    assert len(claimed.rows) == 10 and statuses() == {"sending": 10}
    assert delivery.send_pending().sent == 0, "a live lease is respected"
    Conversion.objects.update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert delivery.send_pending().sent == 10
    assert sorted(received_ids(emulator)) == sorted(f"order:{n}" for n in range(10))


def test_budget_caps_events_per_window(
    settings: Any, emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=120, RATE_LIMIT_WINDOW=60, BATCH_SIZE=50)
    make_conversions(purchase_tag, 300)
    summary = delivery.send_pending()
    assert summary.sent == 120
    assert account.account_id in summary.budget_exhausted
    assert delivery.send_pending().sent == 0
    assert statuses() == {"sent": 120, "pending": 180}


def test_budget_spent_while_isolating_leaves_the_rest_pending_and_says_so(
    settings: Any, emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag
) -> None:
    # 100 for the refused batch, then 60 more: the search stops part-way.
    configure(settings, RATE_LIMIT_EVENTS=160, RATE_LIMIT_WINDOW=60, BATCH_SIZE=100)
    make_conversions(purchase_tag, 100)
    emulator.reject_event_ids("order:90")
    summary = delivery.send_pending()
    assert account.account_id in summary.budget_exhausted
    assert 0 < summary.sent < 99 and summary.failed == Counter()
    assert statuses() == {"sent": summary.sent, "pending": 100 - summary.sent}
    configure(settings, RATE_LIMIT_EVENTS=10_000)
    AdAccount.objects.filter(pk=account.pk).update(budget_window_ends_at=None)
    delivery.send_pending()
    assert statuses() == {"sent": 99, "failed": 1}


def test_dry_run_sends_nothing_and_reports_invalid(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    _, bad = make_conversions(purchase_tag, 2)
    Conversion.objects.filter(pk=bad.pk).update(twclid="")
    summary = delivery.dry_run()
    assert len(summary.payloads) == 2 and summary.failed == Counter({"invalid": 1})
    assert emulator.requests == [] and statuses() == {"pending": 2}


def test_account_without_tokens_is_paused_not_crashed(
    emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag
) -> None:
    account.set_tokens("", "")
    account.save()
    make_conversions(purchase_tag, 3)
    summary = delivery.send_pending()
    account.refresh_from_db()
    assert account.status == "paused" and "Credentials missing" in account.paused_reason
    assert statuses() == {"pending": 3} and emulator.requests == []
    assert summary.paused


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2022, 2, 18, 1, 14, 0, 603_000, tzinfo=dt.timezone.utc),
        dt.datetime(2022, 2, 18, 1, 14, 0, 603_999, tzinfo=dt.timezone.utc),
        dt.datetime(2022, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.timezone.utc),
        dt.datetime(2022, 2, 18, 1, 14, 0, 0, tzinfo=dt.timezone.utc),
    ],
)
def test_database_formats_conversion_time_like_python(
    purchase_tag: EventTag, moment: dt.datetime
) -> None:
    from django_xconversions.payload import format_conversion_time

    [row] = make_conversions(purchase_tag, 1)
    Conversion.objects.filter(pk=row.pk).update(conversion_time=moment)
    [claimed] = delivery.claim(purchase_tag.pixel, 1).rows
    assert claimed.conversion_time == format_conversion_time(moment)


def foreign_tag(emulator: EmulatorServer, tag: EventTag, name: str) -> EventTag:
    """A local tag whose event belongs to another account on X: X's 404 names it with
    "does not belong to provided account" only."""
    if "18ce54d4x7v" not in emulator.world.accounts:
        emulator.add_account("18ce54d4x7v", name="Someone else", users={})
    remote = emulator.add_tag("18ce54d4x7v", name=name, type="PURCHASE")
    return EventTag.objects.create(
        account=tag.account,
        pixel=tag.pixel,
        remote_id=remote["id"],
        website_tag_id=remote["website_tag_id"],
        key=name,
        name=name,
        type="PURCHASE",
    )


@pytest.mark.parametrize(
    ("messages", "named"),
    [
        (["event_id (abc) does not belong to provided account"], {"abc"}),
        (["event_id abc does not belong to provided account"], {"abc"}),
        (
            [
                "event_id o87ne does not belong to provided account",
                "event_id (o87nf) does not belong to provided account",
                "event_id (o87ne) is not a single event tag (SET)",
            ],
            {"o87ne", "o87nf"},
        ),
        (["event_id (a1, b2) does not belong to provided account"], {"a1", "b2"}),
        (["event_ids a1, b2 do not belong to provided account"], {"a1", "b2"}),
        (["The requested resource could not be found"], set()),
        (["event_id () does not belong to provided account"], set()),
    ],
)
def test_404_messages_name_their_event_ids(messages: list[str], named: set[str]) -> None:
    from django_xconversions.batch import event_ids_not_found

    assert event_ids_not_found(messages) == named


@pytest.mark.parametrize("wording", ["parenthesized", "plain"])
def test_404_in_each_wording_fails_exactly_the_named_events(
    emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag, wording: str
) -> None:
    emulator.faults.not_found_wording = wording
    make_conversions(purchase_tag, 30)
    make_conversions(foreign_tag(emulator, purchase_tag, "refund"), 2, start=30)
    make_conversions(foreign_tag(emulator, purchase_tag, "donation"), 3, start=40)
    summary = delivery.send_pending()
    failed = Conversion.objects.filter(status="failed")
    assert set(failed.values_list("conversion_id", flat=True)) == {
        "order:30",
        "order:31",
        "order:40",
        "order:41",
        "order:42",
    }
    assert set(failed.values_list("error_reason", flat=True)) == {Conversion.ErrorReason.NOT_FOUND}
    assert all("does not belong to provided account" in row.last_error for row in failed)
    assert summary.sent == 30 and summary.failed == Counter({"not_found": 5})
    assert sorted(received_ids(emulator)) == sorted(f"order:{n}" for n in range(30))
    account.refresh_from_db()
    assert account.status == AdAccount.Status.ACTIVE and summary.paused == {}
    assert [r["status"] for r in conversion_requests(emulator)] == [404, 200]


def test_held_conversions_are_never_claimed_counted_or_dry_run(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 2)
    now = timezone.now()
    Conversion.objects.create(
        event_tag=None,
        event_key="refund",
        pixel=None,
        status=Conversion.Status.HELD,
        error_reason=Conversion.ErrorReason.NO_TAG,
        conversion_time=now,
        conversion_id="held:1",
        twclid="click",
        next_attempt_at=now - dt.timedelta(minutes=1),
    )
    assert delivery.pending_count() == 2
    dry = delivery.dry_run()
    assert len(dry.payloads) == 2 and dry.pending_left == 2
    summary = delivery.send_pending()
    assert summary.sent == 2 and summary.pending_left == 0
    assert Conversion.objects.get(conversion_id="held:1").status == "held"
    assert sorted(received_ids(emulator)) == ["order:0", "order:1"]


def test_dry_run_reports_a_row_that_lost_its_tag_instead_of_crashing(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    [row] = make_conversions(purchase_tag, 1)
    # A pending row without a tag (written by hand or by an older version).
    Conversion.objects.filter(pk=row.pk).update(event_tag=None)
    summary = delivery.dry_run()
    assert summary.failed == Counter({"invalid": 1})
    [entry] = summary.payloads
    assert any("event tag" in message for message in entry["errors"])


def test_attempt_outcomes_and_error_reasons_are_their_choices(
    settings: Any, emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag
) -> None:
    configure(settings, BATCH_SIZE=10, RETRY_BACKOFF_BASE=0.01, READ_TIMEOUT=0.3)
    emulator.faults.slow_seconds = 1.0
    make_conversions(purchase_tag, 10)
    emulator.faults.script(["500", "timeout", "reset"])
    for _ in range(3):
        delivery.send_pending()
        Conversion.objects.update(next_attempt_at=timezone.now())
    assert set(Conversion.objects.values_list("error_reason", flat=True)) == {
        Conversion.ErrorReason.TRANSIENT
    }
    emulator.reject_event_ids("order:3")
    assert delivery.send_pending().sent == 9
    Conversion.objects.filter(status="sent").update(status="pending")
    emulator.faults.script(["429"])
    delivery.send_pending()
    outcomes = list(DeliveryAttempt.objects.order_by("pk").values_list("outcome", flat=True))
    assert outcomes[:4] == [
        DeliveryAttempt.Outcome.SERVER_ERROR,
        DeliveryAttempt.Outcome.TIMEOUT,
        DeliveryAttempt.Outcome.TRANSPORT_ERROR,
        DeliveryAttempt.Outcome.BAD_REQUEST,
    ]
    assert DeliveryAttempt.Outcome.SENT in outcomes
    assert outcomes[-1] == DeliveryAttempt.Outcome.RATE_LIMITED
    assert set(outcomes) <= set(DeliveryAttempt.Outcome.values)
    failed = Conversion.objects.get(status="failed")
    assert failed.error_reason == Conversion.ErrorReason.REJECTED


@pytest.mark.parametrize(
    ("exception", "outcome"),
    [
        ("BadRequest", "bad_request"),
        ("Unauthorized", "unauthorized"),
        ("Forbidden", "forbidden"),
        ("NotFound", "not_found"),
        ("RateLimited", "rate_limited"),
        ("ServerError", "server_error"),
        ("ClientError", "client_error"),
        ("RequestTimeout", "timeout"),
        ("TransportError", "transport_error"),
        ("ImproperlyConfiguredAccount", "not_configured"),
        ("UnreadableSecret", "not_configured"),
    ],
)
def test_each_client_exception_has_its_outcome(exception: str, outcome: str) -> None:
    from django_xconversions import errors
    from django_xconversions.batch import outcome_of

    cls = getattr(errors, exception)
    exc = cls("x") if issubclass(cls, errors.XAdsError) else cls("missing")
    assert outcome_of(exc) == DeliveryAttempt.Outcome(outcome)
    assert outcome_of(None) == DeliveryAttempt.Outcome.SENT


class _Statements:
    """Counts the statements and commits of every connection (on PostgreSQL the outcomes
    are written on a connection of their own); those of the account gate
    (rounds.AccountGate: the cross-worker lock and the re-read of the account, made when a
    turn begins rather than per batch) are counted apart."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.gate_statements: list[str] = []
        self.gate_thread: int | None = None
        self.commits = 0

    def record(self, sql: str) -> None:
        # Transactions are counted by their commits (SQLite says BEGIN as a statement).
        if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN")):
            in_gate = self.gate_thread == threading.get_ident()
            (self.gate_statements if in_gate else self.statements).append(sql)

    def watch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        execute_with_wrappers = CursorWrapper._execute_with_wrappers

        def counted_execute(cursor: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            self.record(sql)
            return execute_with_wrappers(cursor, sql, *args, **kwargs)

        monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", counted_execute)
        backend = type(connections["default"])
        commit = backend.commit

        def counted_commit(wrapper: BaseDatabaseWrapper) -> None:
            self.commits += 1
            commit(wrapper)

        monkeypatch.setattr(backend, "commit", counted_commit)
        for name in ("enter", "_unlock", "_stop_waiting"):
            original = getattr(rounds.AccountGate, name)

            def gated(gate: Any, account: int, _original: Any = original) -> Any:
                self.gate_thread = threading.get_ident()
                try:
                    return _original(gate, account)
                finally:
                    self.gate_thread = None

            monkeypatch.setattr(rounds.AccountGate, name, gated)


def statements_and_commits(
    monkeypatch: pytest.MonkeyPatch, tag: EventTag, batches: int
) -> tuple[int, int, int]:
    """Statements and commits of sending ``batches`` batches, and the gate's statements."""
    make_conversions(tag, 100 * batches, start=Conversion.objects.count())
    counted = _Statements()
    counted.watch(monkeypatch)
    assert delivery.send_pending().sent == 100 * batches
    monkeypatch.undo()
    return len(counted.statements), counted.commits, len(counted.gate_statements)


@pytest.mark.django_db(transaction=True)
def test_a_batch_costs_five_statements_and_two_commits(
    monkeypatch: pytest.MonkeyPatch, settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    # Was 8 statements and 3 commits per batch (16 with BEGIN, COMMIT and a savepoint):
    # reserve, claim, read back; outcomes with the budget's read-and-write.
    configure(settings, BATCH_SIZE=100)
    budget.reserve(purchase_tag.account_id, 0)  # the budget's window is open
    statements_2, commits_2, gate_2 = statements_and_commits(monkeypatch, purchase_tag, 2)
    statements_6, commits_6, gate_6 = statements_and_commits(monkeypatch, purchase_tag, 6)
    # Per batch: the budget and the claim (one transaction); the outcomes, the delivery
    # log and X's rate-limit headers (another).
    assert (statements_6 - statements_2) / 4 <= 5
    # The account gate: at most one turn per batch (lock, re-read, unlock); fewer when
    # the account's next batch is ready before its previous outcome is written.
    assert (gate_6 - gate_2) / 4 <= 3
    assert (commits_6 - commits_2) / 4 == 2


@pytest.mark.django_db(transaction=True)
def test_events_are_built_on_the_sending_threads_not_the_writing_one(
    monkeypatch: pytest.MonkeyPatch, settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    """The build, most of a batch's own work, runs with its request on a helper thread,
    while this thread writes the previous outcomes and claims the next batch."""
    import threading

    from django_xconversions import batch

    configure(settings, BATCH_SIZE=50)
    make_conversions(purchase_tag, 200)
    building: set[str] = set()
    # Events surely valid are written as JSON text, the others built as dicts.
    originals = {name: getattr(batch, name) for name in ("build_event", "wire_event")}

    def recording(name: str) -> Any:
        def build(row: Any) -> Any:
            building.add(threading.current_thread().name)
            return originals[name](row)

        return build

    for name in originals:
        monkeypatch.setattr(batch, name, recording(name))
    assert delivery.send_pending().sent == 200
    assert building and threading.current_thread().name not in building, building


@pytest.mark.django_db(transaction=True)
def test_events_reserved_for_rows_failed_before_sending_go_back_to_the_budget(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=1000, RATE_LIMIT_WINDOW=900, BATCH_SIZE=10)
    rows = make_conversions(purchase_tag, 10)
    Conversion.objects.filter(pk__in=[r.pk for r in rows[:3]]).update(twclid="", currency="XYZ")
    summary = delivery.send_pending()
    assert summary.sent == 7 and summary.failed == Counter({"invalid": 3})
    account = AdAccount.objects.get(pk=purchase_tag.account_id)
    assert account.budget_used == 7  # the three failed rows took nothing from X's budget


@pytest.mark.django_db(transaction=True)
def test_outcomes_are_written_only_to_rows_still_under_the_claim(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    """Outcomes are found by primary key, guarded by the claim token: a row whose lease
    ran out and that another claim took meanwhile keeps that claim's state."""
    from django_xconversions.batch import BatchSender
    from django_xconversions.connections import client_with

    make_conversions(purchase_tag, 6)
    claimed = delivery.claim(purchase_tag.pixel, 6)  # type: ignore[arg-type]
    taken = [row.pk for row in claimed.rows[:2]]
    Conversion.objects.filter(pk__in=taken).update(claim_token=None, status="pending")
    other = delivery.claim(purchase_tag.pixel, 6)  # type: ignore[arg-type]
    assert sorted(row.pk for row in other.rows) == sorted(taken)
    pixel = purchase_tag.pixel
    assert pixel is not None
    summary = delivery.SendSummary()
    client = client_with(pixel.account.credentials(pixel))
    try:
        BatchSender(client, pixel, claimed, summary).run()
    finally:
        client.close()
    assert summary.sent == 4 and summary.lost_claims == 2
    assert statuses() == {"sent": 4, "sending": 2}
    assert set(
        Conversion.objects.filter(status="sending").values_list("claim_token", flat=True)
    ) == {other.token}
