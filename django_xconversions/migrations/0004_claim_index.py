"""The claim's index ends in the primary key.

A claim takes the first rows of a pixel in (next_attempt_at, id) order. Without id in
the index, PostgreSQL sorted every pending row that shared a due time ("Send now",
requeue and bulk imports give one due time to many rows) for each claim; with it, a
claim reads just the index entries of the rows it takes.

On PostgreSQL both indexes are built and dropped CONCURRENTLY (so capture keeps writing
while a large table is indexed); the new one is in place before the old one goes.
"""

from __future__ import annotations

from django.db import migrations, models

from django_xconversions.db_operations import (
    AddIndexConcurrentlyOnPostgreSQL,
    RemoveIndexConcurrentlyOnPostgreSQL,
)


class Migration(migrations.Migration):
    # CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("xconversions", "0003_outcome_names")]

    operations: list[migrations.operations.base.Operation] = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="conversion",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["pixel", "next_attempt_at", "id"],
                name="xconv_due_pending_pk",
            ),
        ),
        RemoveIndexConcurrentlyOnPostgreSQL(model_name="conversion", name="xconv_due_pending"),
    ]
