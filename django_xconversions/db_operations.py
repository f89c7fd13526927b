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
from django.db.migrations.operations.base import Operation

__all__ = [
    "AddIndexConcurrentlyOnPostgreSQL",
    "DropFieldIndexConcurrentlyOnPostgreSQL",
    "RemoveIndexConcurrentlyOnPostgreSQL",
]


class _ConcurrentlyOnPostgreSQL(Operation):
    """Forwards on PostgreSQL outside a transaction: ``concurrently``; otherwise the
    Django operation's own."""

    model_name: str
    # The model as the operation leaves it (adding an index), or as it finds it (dropping).
    model_after = False

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        connection = schema_editor.connection
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        state = to_state if self.model_after else from_state
        model = state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(connection.alias, model):
            self.concurrently(app_label, schema_editor, model, from_state)
        return None

    def concurrently(self, app_label: str, schema_editor: Any, model: Any, from_state: Any) -> None:
        raise NotImplementedError


class AddIndexConcurrentlyOnPostgreSQL(_ConcurrentlyOnPostgreSQL, migrations.AddIndex):
    model_after = True

    def concurrently(self, app_label: str, schema_editor: Any, model: Any, from_state: Any) -> None:
        schema_editor.add_index(model, self.index, concurrently=True)


class RemoveIndexConcurrentlyOnPostgreSQL(_ConcurrentlyOnPostgreSQL, migrations.RemoveIndex):
    def concurrently(self, app_label: str, schema_editor: Any, model: Any, from_state: Any) -> None:
        index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
        schema_editor.remove_index(model, index, concurrently=True)


class DropFieldIndexConcurrentlyOnPostgreSQL(_ConcurrentlyOnPostgreSQL, migrations.AlterField):
    """``db_index=False`` on a field: its own index is dropped CONCURRENTLY on PostgreSQL
    (elsewhere, and backwards, as AlterField does it)."""

    def concurrently(self, app_label: str, schema_editor: Any, model: Any, from_state: Any) -> None:
        column = model._meta.get_field(self.name).column
        # The field's own index: on that column alone, not unique, not a constraint's.
        for name in schema_editor._constraint_names(
            model, [column], index=True, unique=False, primary_key=False
        ):
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}"
            )
