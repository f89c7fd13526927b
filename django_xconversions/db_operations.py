"""Migration operations that build and drop indexes CONCURRENTLY on PostgreSQL.

On an outbox of millions of rows a plain CREATE or DROP INDEX blocks capture's writes for
minutes. PostgreSQL cannot do it CONCURRENTLY inside a transaction, so a migration using
these sets ``atomic = False``; inside a transaction, on other databases, and backwards,
they do what the Django operation they extend does.

Kept outside ``migrations/`` (Django would take a module there for a migration).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

__all__ = [
    "AddIndexConcurrentlyOnPostgreSQL",
    "DropFieldIndexConcurrentlyOnPostgreSQL",
    "RemoveIndexConcurrentlyOnPostgreSQL",
]


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


class DropFieldIndexConcurrentlyOnPostgreSQL(migrations.AlterField):
    """``db_index=False`` on a field: its own index is dropped CONCURRENTLY on PostgreSQL
    (elsewhere, and backwards, as AlterField does it)."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if not _concurrently(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return None
        column = model._meta.get_field(self.name).column
        # The field's own index: on that column alone, not unique, not a constraint's.
        for name in schema_editor._constraint_names(
            model, [column], index=True, unique=False, primary_key=False
        ):
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}"
            )
        return None
