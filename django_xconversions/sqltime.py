"""conversion_time formatted as X wants it (``YYYY-MM-DDTHH:MM:SS.sssZ``) by the database.

Parsing every timestamp into a datetime and formatting it again is the largest per-row
cost of building a batch; SQLite and PostgreSQL can produce X's text directly. Other
databases, and projects with USE_TZ off (whose stored times are not UTC), use Python.
The format strings travel as query parameters, so no literal % appears in the SQL.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import CharField, DateTimeField, F, Func, Value

# SQLite holds what Django wrote, UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]"; cutting it up
# truncates to milliseconds exactly as Python does (strftime's %f would round).
SQLITE_TEMPLATE = (
    "substr(%(expressions)s, 1, 10) || 'T' || substr(%(expressions)s, 12, 8) || '.' || "
    "substr(%(expressions)s || '.000', 21, 3) || 'Z'"
)
POSTGRESQL_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
POSTGRESQL_UTC = "(%(expressions)s AT TIME ZONE 'UTC')"


def conversion_time_column() -> Any:
    """What to select for conversion_time: X's text when the database can make it."""
    column = F("conversion_time")
    if not settings.USE_TZ:
        return column
    if connection.vendor == "sqlite":
        return Func(column, template=SQLITE_TEMPLATE, output_field=CharField())
    if connection.vendor == "postgresql":
        utc = Func(column, template=POSTGRESQL_UTC, output_field=DateTimeField())
        return Func(utc, Value(POSTGRESQL_FORMAT), function="to_char", output_field=CharField())
    return column


def formats_in_sql() -> bool:
    """Whether ``conversion_time_sql`` applies (else Python formats the time)."""
    return bool(settings.USE_TZ) and connection.vendor in ("sqlite", "postgresql")


def conversion_time_sql(column: str) -> tuple[str, list[Any]]:
    """X's text for the SQL expression ``column`` (a quoted column) in a raw statement,
    and its parameters (only where ``formats_in_sql()``)."""
    if connection.vendor == "sqlite":
        return SQLITE_TEMPLATE % {"expressions": column}, []
    return f"to_char({POSTGRESQL_UTC % {'expressions': column}}, %s)", [POSTGRESQL_FORMAT]
