"""The claim as one statement: ``UPDATE ... RETURNING`` marks due rows ``sending`` and
hands them back, read as claimed.ClaimedRow tuples.

Django has no UPDATE ... RETURNING, so the statement is SQL built from the model's table
and column names, with every value a parameter. PostgreSQL and SQLite (3.35 and later)
run it; elsewhere (and with USE_TZ off) ``returns_rows`` is False and the caller updates,
then reads the rows back by their claim token.

The rows are picked in (next_attempt_at, id) order, the order of the partial index
``xconv_due_pending_pk``, so a claim reads the index entries of the rows it takes and no
more, however large the backlog and however many rows share a due time.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from functools import cache
from operator import itemgetter
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model

from django_xconversions.claimed import Claimed, ClaimedRow, StoredRow, decimal_value
from django_xconversions.models import EVENT_FIELDS, Conversion, EventTag
from django_xconversions.sqltime import conversion_time_sql, formats_in_sql

# What the select list reads after id, due time, attempts, event id and X's time text,
# in ClaimedRow's order.
_ROW_COLUMNS = EVENT_FIELDS[1:]


# (due time, id): the second and first columns the statement returns.
_claim_order = itemgetter(1, 0)


def returns_rows() -> bool:
    """Whether this database claims and reads the rows in one statement."""
    if not formats_in_sql():
        return False
    return connection.vendor == "postgresql" or sqlite3.sqlite_version_info >= (3, 35)


def _q(name: str) -> str:
    return str(connection.ops.quote_name(name))


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    return cast("Field[Any, Any]", model._meta.get_field(name))


def _column(name: str) -> str:
    return _q(str(_field(Conversion, name).column))


def qualified_column(name: str) -> str:
    """The conversion table's column for the field ``name``, quoted, with its table."""
    return f"{_q(Conversion._meta.db_table)}.{_column(name)}"


@cache
def _statement(vendor: str) -> tuple[str, list[Any], bool]:
    """The claim's SQL for ``vendor`` and the parameters its select list needs.

    Identifiers come from the models' meta and every value is a parameter.
    """
    table = _q(Conversion._meta.db_table)
    pk = _column("id")
    due = _column("next_attempt_at")
    status = _column("status")
    tag_table = _q(EventTag._meta.db_table)
    tag_pk = _q(str(_field(EventTag, "id").column))
    website_tag_id = _q(str(_field(EventTag, "website_tag_id").column))
    time_sql, time_params = conversion_time_sql(f"{table}.{_column('conversion_time')}")
    columns = [f"{table}.{_column(name)}" for name in _ROW_COLUMNS]
    if vendor == "postgresql":
        # The address without a netmask; the JSON as text, parsed once in claimed.py.
        ip, contents = _ROW_COLUMNS.index("ip_address"), _ROW_COLUMNS.index("contents")
        columns[ip] = f"host({columns[ip]})"
        columns[contents] = f"({columns[contents]})::text"
    # The statuses are the model's constants, written into the SQL so that the planner
    # sees the partial index's own condition.
    pending = f"'{Conversion.Status.PENDING.value}'"
    picked_columns = f"{pk}, {_column('wire_text')}" if vendor == "postgresql" else pk
    picked = (
        f"SELECT {picked_columns} FROM {table} WHERE {status} = {pending} "  # noqa: S608
        f"AND {_column('pixel')} = %s AND {due} <= %s ORDER BY {due}, {pk} LIMIT %s"
    )
    # On SQLite the due time is read as its text (which sorts as the time does) rather than
    # parsed into a datetime for each row.
    due_key = f"{table}.{due}" if vendor == "postgresql" else f"{table}.{due} || ''"
    claim_token, lease = _column("claim_token"), _column("lease_expires_at")
    sending = f"{status} = '{Conversion.Status.SENDING.value}'"
    if vendor == "postgresql":
        # The picked rows' event text is read from the CTE (the row before the UPDATE)
        # and dropped from the row: the claim's new row version, written to the heap and
        # the WAL, is half the size. A row that goes back to pending (a retry, a worker
        # that died) is built from its fields.
        wire_text = f"picked.{_column('wire_text')}"
        set_text = f", {_column('wire_text')} = NULL"
    else:
        wire_text = f"{table}.{_column('wire_text')}"
        set_text = ""
    # Not "IS NULL": in an UPDATE's RETURNING, SQLite 3.40 answers it wrongly.
    without_text = f"COALESCE({wire_text}, '') = ''"
    returning = ", ".join(
        [
            f"{table}.{pk}",
            due_key,
            f"{table}.{_column('attempts')}",
            f"(SELECT {website_tag_id} FROM {tag_table} "  # noqa: S608
            f"WHERE {tag_table}.{tag_pk} = {table}.{_column('event_tag')})",
            wire_text,
            # A row with its event's text needs none of its fields: reading them would
            # cost a batch a tenth of its time.
            *(f"CASE WHEN {without_text} THEN {field} END" for field in [time_sql, *columns]),
        ]
    )
    if vendor == "postgresql":
        # FOR UPDATE SKIP LOCKED: workers never wait on each other's rows. MATERIALIZED:
        # the pick runs once (rechecking its conditions on each row it locks).
        sql = (
            f"WITH picked AS MATERIALIZED ({picked} FOR UPDATE SKIP LOCKED) "  # noqa: S608
            f"UPDATE {table} SET {sending}, {claim_token} = %s, {lease} = %s{set_text} "
            # The = ANY(ARRAY()) finds the rows by primary key, whatever the join's plan.
            f"FROM picked WHERE {table}.{pk} = ANY(ARRAY(SELECT {pk} FROM picked)) "
            f"AND {table}.{pk} = picked.{pk} RETURNING {returning}"
        )
        return sql, time_params, True
    # SQLite runs the statement under its single write lock. No status guard on the
    # outer UPDATE: SQLite would scan every pending row to apply one.
    sql = (
        f"UPDATE {table} SET {sending}, {claim_token} = %s, {lease} = %s "  # noqa: S608
        f"WHERE {pk} IN ({picked}) RETURNING {returning}"
    )
    return sql, time_params, False


def _prepared(name: str, value: Any) -> Any:
    return _field(Conversion, name).get_db_prep_value(value, connection)


def claim_rows(
    pixel_id: int, count: int, *, due_by: dt.datetime, token: uuid.UUID, lease: dt.datetime
) -> list[Claimed]:
    """Mark up to ``count`` due rows of the pixel ``sending`` under ``token`` until
    ``lease``; return them in claim order. Only where ``returns_rows()``."""
    sql, time_params, picks_first = _statement(connection.vendor)
    marking = [_prepared("claim_token", token), _prepared("lease_expires_at", lease)]
    picking = [pixel_id, _prepared("next_attempt_at", due_by), count]
    # In the order of the text; RETURNING comes last.
    params = [*(picking + marking if picks_first else marking + picking), *time_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    # RETURNING comes in no particular order: the claim's order is (due time, id).
    fetched.sort(key=_claim_order)
    return [
        StoredRow(pk, attempts, tag or "", wire_text)
        if wire_text
        else ClaimedRow(
            pk, attempts, tag or "", time, conversion_id, twclid, email, phone, ip, agent,
            decimal_value(value), currency, number_items, description, contents,
        )
        for (pk, _, attempts, tag, wire_text, time, conversion_id, twclid, email, phone, ip,
             agent, value, currency, number_items, description, contents) in fetched
    ]  # fmt: skip
