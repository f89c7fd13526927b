"""Indexes for the admin and health at scale (filled in by the admin work)."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("xconversions", "0004_claim_index")]

    operations: list[migrations.operations.base.Operation] = []
