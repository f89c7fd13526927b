"""A claim reads about as many index entries as it claims, whatever the backlog and
however many rows share a due time ("Send now", requeue and bulk imports all give one
due time to many rows)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_xconversions import delivery
from django_xconversions.models import Conversion, EventTag

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

BACKLOG = 20_000
BATCH = 500


def seed_one_due_time(tag: EventTag, count: int) -> None:
    due = timezone.now() - dt.timedelta(seconds=1)
    Conversion.objects.bulk_create(
        (
            Conversion(
                event_tag=tag,
                pixel_id=tag.pixel_id,
                conversion_time=due,
                conversion_id=f"order:{n}",
                twclid=f"click{n}",
                next_attempt_at=due,
            )
            for n in range(count)
        ),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Conversion._meta.db_table}")


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


def claim_statement(tag: EventTag) -> str:
    """The SQL of one claim, as the engine sent it to PostgreSQL."""
    with CaptureQueriesContext(connection) as captured:
        claimed = delivery.claim(tag.pixel, BATCH)  # type: ignore[arg-type]
    assert len(claimed.rows) == BATCH
    claims = [q["sql"] for q in captured if "FOR UPDATE" in q["sql"].upper()]
    assert len(claims) == 1, captured.captured_queries
    return claims[0]


def test_claim_walks_the_due_index_in_order_without_sorting_the_backlog(
    purchase_tag: EventTag,
) -> None:
    seed_one_due_time(purchase_tag, BACKLOG)
    statement = claim_statement(purchase_tag)
    with connection.cursor() as cursor:
        # Executed (the test's transaction rolls it back): actual row counts, not guesses.
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
        (plan,) = cursor.fetchone()[0]
    nodes = list(plan_nodes(plan["Plan"]))
    table = Conversion._meta.db_table
    kinds = [node["Node Type"] for node in nodes]
    assert not [k for k in kinds if "Sort" in k], kinds
    # Small tables (the tag read for event_id) may be scanned whole once analysed; the
    # conversion table never is.
    scans = [n for n in nodes if n["Node Type"].endswith("Seq Scan")]
    assert not [n for n in scans if n.get("Relation Name") == table], kinds
    # The scan that picks the due rows (the claimed rows are then updated by primary key).
    (picking,) = [
        n
        for n in nodes
        if n.get("Relation Name") == table and "next_attempt_at" in n.get("Index Cond", "")
    ]
    assert picking["Index Name"] == "xconv_due_pending_pk", picking
    # It hands up the rows it claims, not the backlog. (The first claim's rows, taken
    # earlier in this transaction, are passed over as no longer pending.)
    assert picking["Actual Rows"] * picking["Actual Loops"] == BATCH, picking


# -- what a send writes ------------------------------------------------------------------


def indexes_holding(pk: int) -> set[str]:
    """The conversion table's indexes with an entry for the current version of row ``pk``
    (every index without a condition, and those whose condition the row meets)."""
    table = Conversion._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
            [table],
        )
        indexes = cursor.fetchall()
        holding = set()
        for name, condition in indexes:
            if condition is None:
                holding.add(name)
                continue
            # The condition is the catalogue's own text for the index.
            exists = f"SELECT EXISTS (SELECT 1 FROM {table} WHERE id = %s AND ({condition}))"  # noqa: S608
            cursor.execute(exists, [pk])
            if cursor.fetchone()[0]:
                holding.add(name)
    return holding


def test_each_write_of_a_send_adds_entries_to_six_indexes(purchase_tag: EventTag) -> None:
    """A status change writes a new row version, with an entry in every index that holds
    it: the claim's and the outcome's versions are each held by six (were eight and
    seven: the claim token's index and (status, created_at) for every row took entries
    that no claim, outcome or page reads; the pixel's own index became (pixel,
    created_at, id), which the admin's pixel filter reads)."""
    seed_one_due_time(purchase_tag, 1)
    (pk,) = Conversion.objects.values_list("pk", flat=True)
    table = Conversion._meta.db_table
    everywhere = {
        f"{table}_pkey",
        "xconv_unique_tag_conversion_id",
        "xconv_source",
        "xconv_created",
        "xconv_pixel_created",
    }
    claimed = delivery.claim(purchase_tag.pixel, 1)  # type: ignore[arg-type]
    assert [row.pk for row in claimed.rows] == [pk]
    assert indexes_holding(pk) == everywhere | {"xconv_sending_lease"}
    Conversion.objects.filter(pk=pk).update(
        status="sent", sent_at=timezone.now(), claim_token=None, lease_expires_at=None
    )
    assert indexes_holding(pk) == everywhere | {"xconv_sent_at"}
    # At rest before a send, for the admin's status filter and the due claims.
    Conversion.objects.filter(pk=pk).update(status="pending")
    assert indexes_holding(pk) == everywhere | {"xconv_unsent_created", "xconv_due_pending_pk"}


def index_plan(sql: str, params: Any) -> list[dict[str, Any]]:
    """The plan's nodes, with sequential scans ruled out unless nothing else can run it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        (plan,) = cursor.fetchone()[0]
        cursor.execute("SET LOCAL enable_seqscan = on")
    return list(plan_nodes(plan["Plan"]))


def indexes_read(nodes: list[dict[str, Any]]) -> set[str]:
    """The indexes a plan reads; it fails if the conversion table is scanned whole."""
    table = Conversion._meta.db_table
    whole = [n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == table]
    assert not whole, nodes
    return {n["Index Name"] for n in nodes if "Index Name" in n}


def test_outcomes_renewals_and_read_backs_find_claimed_rows_through_an_index(
    purchase_tag: EventTag, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an index of the claim token: outcomes are written by primary key (the token
    still guards them), leases renewed and claims read back through the index of rows in
    flight. None of them scans the table."""
    from django_xconversions.batch import BatchSender
    from django_xconversions.leases import LeaseKeeper

    seed_one_due_time(purchase_tag, 2 * BATCH)
    claimed = delivery.claim(purchase_tag.pixel, BATCH)  # type: ignore[arg-type]
    statements: list[tuple[str, Any]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql, params))
        return execute(sql, params, many, context)

    sender = BatchSender(None, purchase_tag.pixel, claimed, delivery.SendSummary())  # type: ignore[arg-type]
    keeper = LeaseKeeper(renewing=False)
    keeper.hold(claimed.token)
    with connection.execute_wrapper(capture):
        assert keeper.renew() == BATCH
        assert sender._update([row.pk for row in claimed.rows], status="sent") == BATCH
    renewal, outcome = (s for s in statements if s[0].startswith("UPDATE"))
    assert indexes_read(index_plan(*renewal)) == {"xconv_sending_lease"}
    assert indexes_read(index_plan(*outcome)) == {f"{Conversion._meta.db_table}_pkey"}

    monkeypatch.setattr(delivery.claiming, "returns_rows", lambda: False)
    with CaptureQueriesContext(connection) as captured:
        again = delivery.claim(purchase_tag.pixel, BATCH)  # type: ignore[arg-type]
    assert len(again.rows) == BATCH
    (read_back,) = [q["sql"] for q in captured if q["sql"].startswith("SELECT")]
    assert "xconv_sending_lease" in indexes_read(index_plan(read_back, None))
