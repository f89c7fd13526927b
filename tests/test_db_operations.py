"""The index migrations build and drop CONCURRENTLY on PostgreSQL outside a transaction
(capture keeps writing while a large outbox is indexed), and plainly inside one."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.postgres

CONCURRENT_0004 = [
    'CREATE INDEX CONCURRENTLY "xconv_due_pending_pk" ON "xconversions_conversion" '
    '("pixel_id", "next_attempt_at", "id") WHERE "status" = \'pending\';',
    'DROP INDEX CONCURRENTLY IF EXISTS "xconv_due_pending";',
]
CONCURRENT_0005 = [
    'CREATE INDEX CONCURRENTLY "xconv_created" ON "xconversions_conversion" ("created_at", "id");',
    'CREATE INDEX CONCURRENTLY "xconv_reason_created" ON "xconversions_conversion" '
    '("error_reason", "created_at") WHERE NOT ("error_reason" = \'\');',
    'CREATE INDEX CONCURRENTLY "xconv_held_reason" ON "xconversions_conversion" '
    '("error_reason", "event_key") WHERE "status" = \'held\';',
]


def index_statements(migration: str) -> list[str]:
    out = io.StringIO()
    call_command("sqlmigrate", "xconversions", migration, stdout=out)
    return [line for line in out.getvalue().splitlines() if "INDEX" in line]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("migration", "expected"), [("0004", CONCURRENT_0004), ("0005", CONCURRENT_0005)]
)
def test_outside_a_transaction_indexes_change_concurrently(
    migration: str, expected: list[str]
) -> None:
    assert index_statements(migration) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("migration", "expected"), [("0004", CONCURRENT_0004), ("0005", CONCURRENT_0005)]
)
def test_inside_a_transaction_they_change_plainly(migration: str, expected: list[str]) -> None:
    plain = [statement.replace("INDEX CONCURRENTLY ", "INDEX ") for statement in expected]
    assert index_statements(migration) == plain


@pytest.mark.django_db(transaction=True)
def test_a_fields_own_index_is_dropped_concurrently() -> None:
    """0006 drops the pixel foreign key's index, whatever name the database gave it; an
    index of the column alone is found (migrated databases no longer have one)."""
    with connection.cursor() as cursor:
        cursor.execute('CREATE INDEX "pixel_alone" ON "xconversions_conversion" ("pixel_id")')
    try:
        assert 'DROP INDEX CONCURRENTLY IF EXISTS "pixel_alone";' in index_statements("0006")
    finally:
        with connection.cursor() as cursor:
            cursor.execute('DROP INDEX "pixel_alone"')
