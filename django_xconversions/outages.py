"""Which errors say "the database is not available now" rather than "never"."""

from __future__ import annotations

import sqlite3

from django.db import InterfaceError, OperationalError


def _transient_errors() -> tuple[type[BaseException], ...]:
    """The DB-API's OperationalError and InterfaceError (Django's wrappers and the
    drivers' own)."""
    errors: list[type[BaseException]] = [
        OperationalError,
        InterfaceError,
        sqlite3.OperationalError,
        sqlite3.InterfaceError,
    ]
    try:
        import psycopg

        errors += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:  # pragma: no cover (psycopg is optional)
        pass
    return tuple(errors)


TRANSIENT_ERRORS = _transient_errors()


def is_transient(exc: BaseException) -> bool:
    """Connection loss, server restarts, ``database is locked``, serialization failures
    and deadlocks (all OperationalError or InterfaceError in the DB-API)."""
    return isinstance(exc, TRANSIENT_ERRORS)
