"""Match readiness: the per-day tally of identifiers carried by recorded conversions.

A new small table only: nothing is read or locked on the conversion table.
"""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("xconversions", "0006_write_path")]

    operations: list[migrations.operations.base.Operation] = [
        migrations.CreateModel(
            name="ReadinessTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("time_zone", models.CharField(max_length=64)),
                ("counts", models.JSONField(default=dict)),
                ("counted_until", models.DateTimeField()),
            ],
            options={
                "verbose_name": "match readiness",
                "verbose_name_plural": "match readiness",
            },
        ),
        migrations.AddConstraint(
            model_name="readinesstally",
            constraint=models.UniqueConstraint(
                fields=("time_zone", "day"), name="xconv_readiness_day"
            ),
        ),
    ]
