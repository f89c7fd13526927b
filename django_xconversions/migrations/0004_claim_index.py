"""The claim's index ends in the primary key.

A claim takes the first rows of a pixel in (next_attempt_at, id) order. Without id in
the index, PostgreSQL sorted every pending row that shared a due time ("Send now",
requeue and bulk imports give one due time to many rows) for each claim; with it, a
claim reads just the index entries of the rows it takes.

On PostgreSQL both indexes are built and dropped CONCURRENTLY (so capture keeps writing
while a large table is indexed); the new one is in place before the old one goes.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


def _concurrently(schema_editor: Any) -> bool:
    connection = schema_editor.connection
    return bool(connection.vendor == "postgresql" and not connection.in_atomic_block)


class AddIndexConcurrentlyOnPostgreSQL(migrations.AddIndex):
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if not _concurrently(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)
        return None


class RemoveIndexConcurrentlyOnPostgreSQL(migrations.RemoveIndex):
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if not _concurrently(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            schema_editor.remove_index(model, index, concurrently=True)
        return None


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
