"""Waking an idle ``send_conversions --loop`` worker when a conversion is committed.

On PostgreSQL, each transaction that stores pending conversions sends one
``NOTIFY xconversions, '<pixel pk>'`` per pixel once it commits (immediate.py's on-commit
hook calls :func:`notify`); an idle worker ``LISTEN``s on a connection of its own
(:class:`Wakeup`) and runs its next pass as soon as one arrives, instead of sleeping
``LOOP_IDLE_SECONDS``. It still wakes after ``LOOP_IDLE_SECONDS`` without one: rows
written by other means (``bulk_create``, another program, a retry coming due) and
notifications missed while the listening connection was away are found by that poll.
SQLite has no such channel: its workers poll. ``NOTIFY_ON_COMMIT = False`` turns both
sides off.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from django.db import connections, router

from django_xconversions.conf import xsettings

logger = logging.getLogger(__name__)

CHANNEL = "xconversions"
# How often a waiting worker looks at its stop event: a SIGTERM is honoured this fast.
STOP_CHECK_SECONDS = 0.2
# How often a worker tries to listen again once its connection is lost.
REOPEN_SECONDS = 1.0


def database_alias() -> str:
    """The database conversions are written to (the router's choice)."""
    from django_xconversions.models import Conversion

    return router.db_for_write(Conversion) or "default"


def supported(alias: str) -> bool:
    """Whether commits on ``alias`` notify and workers listen (NOTIFY_ON_COMMIT on,
    PostgreSQL through psycopg >= 3.2)."""
    return (
        xsettings.NOTIFY_ON_COMMIT
        and connections[alias].vendor == "postgresql"
        and _psycopg_waits()
    )


@functools.cache
def _psycopg_waits() -> bool:
    """Connection.notifies(timeout=...) arrived in psycopg 3.2 (psycopg2: poll)."""
    try:
        import psycopg
    except ImportError:
        return False
    major, minor = (int(part) for part in psycopg.__version__.split(".")[:2])
    return (major, minor) >= (3, 2)


def notify(pixel_pk: int, using: str | None = None) -> None:
    """Tell listening workers that conversions of ``pixel_pk`` were committed (called
    after the commit; a no-op unless NOTIFY_ON_COMMIT is on and the database PostgreSQL)."""
    alias = using or database_alias()
    if not supported(alias):
        return
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(pixel_pk)])


class Wakeup:
    """A worker's wait between passes: until a conversion is committed, ``stop`` is set
    or the poll interval passes, whichever comes first.

    The ``LISTEN`` runs on a connection of its own (never the worker's), opened by
    :meth:`open` before the first pass so nothing committed during that pass is missed.
    A lost connection (a PostgreSQL restart, a terminated backend) is reopened as soon as
    the server takes connections again (tried every REOPEN_SECONDS), and a pass follows
    for what was committed meanwhile; until then the worker polls. Losing it and getting
    it back are logged once each.
    """

    def __init__(self, stop: threading.Event, using: str | None = None) -> None:
        self.stop = stop
        self.alias = using or database_alias()
        self.enabled = supported(self.alias)
        self._wrapper: Any = None
        self._lost_since: float | None = None
        # Times the listening connection was (re)opened: tests and logs.
        self.opened = 0

    @property
    def listening(self) -> bool:
        return self._wrapper is not None

    def open(self) -> bool:
        """Start listening unless already listening; False when it cannot (polling then)."""
        if not self.enabled:
            return False
        if self._wrapper is not None:
            return True
        wrapper = connections.create_connection(self.alias)
        try:
            wrapper.connect()
            wrapper.connection.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:
            self._close(wrapper)
            self._lost(exc)
            return False
        self._wrapper = wrapper
        self.opened += 1
        if self._lost_since is not None:
            logger.warning(
                "Listening for committed conversions again after %.1f s.",
                time.monotonic() - self._lost_since,
            )
            self._lost_since = None
        return True

    def discard_pending(self) -> int:
        """Drop notifications already received: the pass about to start covers them."""
        if self._wrapper is None:
            return 0
        try:
            return sum(1 for _ in self._wrapper.connection.notifies(timeout=0))
        except Exception as exc:
            self._drop(exc)
            return 0

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True when woken by a committed conversion (or
        by getting the listening connection back, since notifications may have been
        missed meanwhile), False on timeout or stop."""
        if not self.enabled:
            self.stop.wait(timeout)
            return False
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._wrapper is None:
                if self.open():
                    if self.opened > 1:
                        return True  # back: run a pass for what was missed meanwhile
                    continue
                # The database is away: try again shortly, polling meanwhile.
                self.stop.wait(min(left, REOPEN_SECONDS))
                continue
            try:
                for _ in self._wrapper.connection.notifies(
                    timeout=min(left, STOP_CHECK_SECONDS), stop_after=1
                ):
                    return True
            except Exception as exc:
                self._drop(exc)
        return False

    def close(self) -> None:
        if self._wrapper is not None:
            self._close(self._wrapper)
            self._wrapper = None

    def _drop(self, exc: BaseException) -> None:
        self.close()
        self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        if self._lost_since is not None:
            return
        self._lost_since = time.monotonic()
        logger.warning(
            "Not listening for committed conversions (%s: %s); polling every %s s until "
            "the connection is back.",
            type(exc).__name__,
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            xsettings.LOOP_IDLE_SECONDS,
        )

    @staticmethod
    def _close(wrapper: Any) -> None:
        try:
            wrapper.close()
        except Exception:
            wrapper.connection = None
