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
