"""The claim is one statement that marks the rows and returns them, and its budget
reservation commits (or rolls back) with it."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_xconversions import budget, claimed, claiming, delivery
from django_xconversions.models import AdAccount, Conversion, EventTag
from tests.conftest import configure, make_conversions

pytestmark = pytest.mark.django_db

HASH = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"


def claim_sql(captured: CaptureQueriesContext) -> list[str]:
    # UPDATE ... RETURNING, after the CTE that picks the rows on PostgreSQL.
    return [
        q["sql"]
        for q in captured
        if q["sql"].startswith(("UPDATE", "WITH")) and "RETURNING" in q["sql"]
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"value": Decimal("19.99"), "currency": "USD", "number_items": 2},
        {"value": Decimal("0.0001"), "hashed_email": HASH, "hashed_phone": HASH},
        {"value": Decimal("12345678.9999"), "ip_address": "2001:db8::1", "user_agent": "UA"},
        {"ip_address": "192.0.2.1", "description": "Two items, one gift-wrapped"},
        {"contents": [{"content_id": "a", "content_price": "9.99", "num_items": 1}, {}]},
    ],
)
def test_the_claim_returns_each_row_as_reading_it_back_would(
    purchase_tag: EventTag, fields: dict[str, Any]
) -> None:
    assert claiming.returns_rows()
    rows = make_conversions(purchase_tag, 3)
    Conversion.objects.filter(pk__in=[r.pk for r in rows]).update(**fields)
    with CaptureQueriesContext(connection) as captured:
        claim = delivery.claim(purchase_tag.pixel, 3)  # type: ignore[arg-type]
    assert len(claim_sql(captured)) == 1
    assert not [q for q in captured if q["sql"].startswith("SELECT")], "no read-back"
    mine = Conversion.objects.filter(claim_token=claim.token).order_by("next_attempt_at", "pk")
    assert claim.rows == claimed.fetch(mine)
    assert [r.pk for r in claim.rows] == [r.pk for r in rows]
    assert set(mine.values_list("status", flat=True)) == {"sending"}


def test_databases_without_update_returning_claim_then_read_back(
    monkeypatch: pytest.MonkeyPatch, purchase_tag: EventTag
) -> None:
    rows = make_conversions(purchase_tag, 5, value=Decimal("19.99"), currency="USD")
    expected = delivery.claim(purchase_tag.pixel, 2).rows  # type: ignore[arg-type]
    Conversion.objects.update(status="pending", claim_token=None, lease_expires_at=None)
    monkeypatch.setattr(claiming, "returns_rows", lambda: False)
    with CaptureQueriesContext(connection) as captured:
        claim = delivery.claim(purchase_tag.pixel, 2)  # type: ignore[arg-type]
    assert not claim_sql(captured)
    assert claim.rows == expected and [r.pk for r in claim.rows] == [r.pk for r in rows[:2]]
    assert Conversion.objects.filter(claim_token=claim.token).count() == 2


def test_rows_come_in_due_order_then_id(purchase_tag: EventTag) -> None:
    rows = make_conversions(purchase_tag, 6)
    now = timezone.now()
    # Two rows share the earliest due time, the first-made row is due last.
    dues = [3, 1, 1, 2, 5, 4]
    for row, minutes in zip(rows, dues, strict=True):
        Conversion.objects.filter(pk=row.pk).update(
            next_attempt_at=now - dt.timedelta(minutes=10 - minutes)
        )
    claim = delivery.claim(purchase_tag.pixel, 4)  # type: ignore[arg-type]
    assert [r.pk for r in claim.rows] == [rows[1].pk, rows[2].pk, rows[3].pk, rows[0].pk]


def test_the_reservation_joins_the_claim(
    settings: Any, account: AdAccount, purchase_tag: EventTag
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=100, RATE_LIMIT_WINDOW=60)
    make_conversions(purchase_tag, 30)
    with CaptureQueriesContext(connection) as captured:
        claim = delivery.claim(purchase_tag.pixel, 50, within_budget=True)  # type: ignore[arg-type]
    # The backlog ran out first: only what was claimed is counted, and no wait is due.
    assert len(claim.rows) == 30 and claim.wait_until is None
    account.refresh_from_db()
    assert account.budget_used == 30
    # Opening the window reads the account; then the claim, and the 20 events given back.
    statements = [q["sql"].split()[0] for q in captured if q["sql"].split()[0] != "SAVEPOINT"]
    assert statements.count("SELECT") <= 1 and len(statements) <= 6, statements
    make_conversions(purchase_tag, 100, start=30)
    claim = delivery.claim(purchase_tag.pixel, 100, within_budget=True)  # type: ignore[arg-type]
    # Now the budget held it short: 70 left of 100, and when it allows more.
    assert len(claim.rows) == 70 and claim.wait_until is not None
    claim = delivery.claim(purchase_tag.pixel, 100, within_budget=True)  # type: ignore[arg-type]
    assert claim.rows == [] and claim.wait_until is not None


def test_a_claim_within_an_open_window_is_two_statements(
    settings: Any, account: AdAccount, purchase_tag: EventTag
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=10_000, RATE_LIMIT_WINDOW=60)
    make_conversions(purchase_tag, 100)
    delivery.claim(purchase_tag.pixel, 50, within_budget=True)  # type: ignore[arg-type]
    with CaptureQueriesContext(connection) as captured:
        claim = delivery.claim(purchase_tag.pixel, 50, within_budget=True)  # type: ignore[arg-type]
    assert len(claim.rows) == 50
    statements = [q["sql"] for q in captured if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == 2, statements
    account.refresh_from_db()
    assert account.budget_used == 100


# A real transaction: the claim's own atomic block is the outermost one, as when a worker
# calls it (inside a test's transaction its rollback would be left to the test's block).
@pytest.mark.django_db(transaction=True)
def test_a_failed_claim_takes_no_budget(
    monkeypatch: pytest.MonkeyPatch, settings: Any, account: AdAccount, purchase_tag: EventTag
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=100, RATE_LIMIT_WINDOW=60)
    make_conversions(purchase_tag, 10)
    assert budget.reserve(account.pk, 5).events == 5

    def broken(*args: Any, **kwargs: Any) -> list[claimed.ClaimedRow]:
        Conversion.objects.update(status=Conversion.Status.SENDING)
        raise RuntimeError("connection lost mid-claim")

    monkeypatch.setattr(claiming, "claim_rows", broken)
    with pytest.raises(RuntimeError):
        delivery.claim(purchase_tag.pixel, 10, within_budget=True)  # type: ignore[arg-type]
    account.refresh_from_db()
    assert account.budget_used == 5
    assert set(Conversion.objects.values_list("status", flat=True)) == {"pending"}


def test_observe_is_one_statement(settings: Any, account: AdAccount) -> None:
    configure(settings, RATE_LIMIT_EVENTS=60_000)
    reset = (timezone.now() + dt.timedelta(minutes=10)).timestamp()
    with CaptureQueriesContext(connection) as captured:
        budget.observe(account.pk, limit=60_000, remaining=59_000, reset_at=reset)
    assert len(captured) == 1
    account.refresh_from_db()
    assert (account.budget_used, account.budget_limit) == (1_000, 60_000)
    assert account.budget_window_from_x


def test_x_saying_more_remain_than_its_limit_counts_nothing_used(
    settings: Any, account: AdAccount
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=60_000)
    reset = (timezone.now() + dt.timedelta(minutes=10)).timestamp()
    budget.observe(account.pk, limit=100, remaining=500, reset_at=reset)
    account.refresh_from_db()
    assert (account.budget_used, account.budget_limit) == (0, 100)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_overlap_nor_exceed_their_count(purchase_tag: EventTag) -> None:
    # One due time for all: the case where IN (subquery LIMIT n) may claim more than n.
    make_conversions(purchase_tag, 2000)
    claims: list[list[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            start.wait()
            while True:
                rows = delivery.claim(purchase_tag.pixel, 37).rows  # type: ignore[arg-type]
                if not rows:
                    return
                with lock:
                    claims.append([r.pk for r in rows])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert all(len(pks) <= 37 for pks in claims)
    claimed_ids = [pk for pks in claims for pk in pks]
    assert len(claimed_ids) == len(set(claimed_ids)) == 2000
