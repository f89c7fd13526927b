"""Placeholder: operations are written here by hand."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("xconversions", "0005_admin_scale")]

    operations: list[migrations.operations.base.Operation] = []
