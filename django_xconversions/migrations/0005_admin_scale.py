"""Indexes for the admin and health at scale, and the per-day tally of sent conversions.

On PostgreSQL the indexes are built CONCURRENTLY: on an outbox of millions of rows a plain
CREATE INDEX would block capture's writes for minutes.
"""

from __future__ import annotations

from django.db import migrations, models

from django_xconversions.db_operations import AddIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("xconversions", "0004_claim_index")]

    operations: list[migrations.operations.base.Operation] = [
        migrations.CreateModel(
            name="SentTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("time_zone", models.CharField(max_length=64)),
                ("sent", models.PositiveBigIntegerField(default=0)),
                ("counted_until", models.DateTimeField()),
            ],
            options={"verbose_name": "sent tally"},
        ),
        migrations.AddConstraint(
            model_name="senttally",
            constraint=models.UniqueConstraint(fields=("time_zone", "day"), name="xconv_tally_day"),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="conversion",
            index=models.Index(fields=["created_at", "id"], name="xconv_created"),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="conversion",
            index=models.Index(
                condition=models.Q(("error_reason", ""), _negated=True),
                fields=["error_reason", "created_at"],
                name="xconv_reason_created",
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="conversion",
            index=models.Index(
                condition=models.Q(("status", "held")),
                fields=["error_reason", "event_key"],
                name="xconv_held_reason",
            ),
        ),
    ]
