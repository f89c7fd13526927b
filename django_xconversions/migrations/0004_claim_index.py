"""The claim's index (filled in by the engine work)."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("xconversions", "0003_outcome_names")]

    operations: list[migrations.operations.base.Operation] = []
