"""The event's wire text, stored with the row when it is recorded.

A nullable column without a default: PostgreSQL and SQLite add it without rewriting the
table. Rows recorded before it have none and are built from their fields when sent.
"""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("xconversions", "0007_match_readiness")]

    operations: list[migrations.operations.base.Operation] = [
        migrations.AddField(
            model_name="conversion",
            name="wire_text",
            field=models.TextField(blank=True, editable=False, null=True),
        ),
    ]
