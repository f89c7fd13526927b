"""Fewer index entries per send.

Sending a conversion writes its row twice (the claim marks it ``sending``, the outcome
``sent``), and a status change adds an entry to every index the new row version falls in.
Three indexes took such entries without serving the hot path:

- the pixel foreign key's own index: the due index (pixel, next_attempt_at, id) leads
  with the pixel;
- the claim token's index: outcomes are written by primary key, guarded by the token,
  and a worker's rows in flight are found through the lease index;
- (status, created_at) over every row: now only over rows at rest before a send
  (pending, failed, skipped, held), which the admin's status filter and health's counts
  read; rows in flight have the lease index, sent rows xconv_created and xconv_sent_at.

On PostgreSQL the indexes are built and dropped CONCURRENTLY (capture keeps writing while
a large table is indexed); the new index is in place before the one it replaces goes.
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
