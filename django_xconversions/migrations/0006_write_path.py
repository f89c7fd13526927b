"""Fewer index entries per send.

Sending a conversion writes its row twice (the claim marks it ``sending``, the outcome
``sent``), and a status change adds an entry to every index the new row version falls in.
Three indexes took such entries without serving the hot path:

- the pixel foreign key's own index: the due index (pixel, next_attempt_at, id) leads
  with the pixel for the engine, and (pixel, created_at, id) serves the admin's pixel
  filter in its newest-first order (and the PROTECT check of a pixel's deletion);
- the claim token's index: outcomes are written by primary key, guarded by the token,
  and a worker's rows in flight are found through the lease index;
- (status, created_at) over every row: now only over rows at rest before a send
  (pending, failed, skipped, held), which the admin's status filter and health's counts
  read; rows in flight have the lease index, sent rows xconv_created and xconv_sent_at.

On PostgreSQL the indexes are built and dropped CONCURRENTLY (capture keeps writing while
a large table is indexed); the new index is in place before the one it replaces goes.
"""

from __future__ import annotations

from django.db import migrations, models

from django_xconversions.db_operations import (
    AddIndexConcurrentlyOnPostgreSQL,
    DropFieldIndexConcurrentlyOnPostgreSQL,
    RemoveIndexConcurrentlyOnPostgreSQL,
)


class Migration(migrations.Migration):
    # CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("xconversions", "0005_admin_scale")]

    operations: list[migrations.operations.base.Operation] = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="conversion",
            index=models.Index(
                condition=models.Q(("status__in", ["pending", "failed", "skipped", "held"])),
                fields=["status", "created_at"],
                name="xconv_unsent_created",
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="conversion",
            index=models.Index(fields=["pixel", "created_at", "id"], name="xconv_pixel_created"),
        ),
        RemoveIndexConcurrentlyOnPostgreSQL(model_name="conversion", name="xconv_status_created"),
        RemoveIndexConcurrentlyOnPostgreSQL(model_name="conversion", name="xconv_claim_token"),
        DropFieldIndexConcurrentlyOnPostgreSQL(
            model_name="conversion",
            name="pixel",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=models.deletion.PROTECT,
                related_name="conversions",
                to="xconversions.pixel",
            ),
        ),
    ]
