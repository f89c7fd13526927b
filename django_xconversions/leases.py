"""Leases of claimed rows, kept alive for as long as their worker is alive and busy.

A claim marks rows ``sending`` until ``lease_expires_at``, timed from the claim; past it
any worker returns them to ``pending``, since their owner is presumed dead. A live
worker can hold rows far longer than one lease: a slow X, a long isolation search, a
retry-after wait. So while ``send_pending`` runs, a small thread renews the leases of
the claims it still holds every LEASE_SECONDS / 3. If the worker dies, the thread dies
with it and the lease runs out as before.

The thread uses its own database connection (closed when it stops) and writes one tiny
UPDATE per renewal, and only when a claim has been held that long, so a short run on
SQLite never touches the database from a second thread at all.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
import uuid
from types import TracebackType

from django.db import DatabaseError, connections

from django_xconversions import clock
from django_xconversions.conf import xsettings
from django_xconversions.models import Conversion

logger = logging.getLogger(__name__)


# A claim token is a UUID in version 8's layout whose first 32 bits are the claiming
# process's id and the rest random: a row in flight tells which worker holds it.
_VERSION_8 = 0x8 << 76
_VERSION_MASK = 0xF << 76
_VARIANT_RFC_4122 = 0x2 << 62
_VARIANT_MASK = 0x3 << 62


def new_claim_token() -> uuid.UUID:
    value = (os.getpid() & 0xFFFFFFFF) << 96 | secrets.randbits(96)
    value = (value & ~_VERSION_MASK) | _VERSION_8
    value = (value & ~_VARIANT_MASK) | _VARIANT_RFC_4122
    return uuid.UUID(int=value)


def claim_token_pid(token: uuid.UUID) -> int | None:
    """The id of the process that made the claim (on its host); None for a token not
    made by ``new_claim_token``."""
    if token.version != 8:
        return None
    return token.int >> 96


def lease_seconds() -> float:
    return xsettings.LEASE_SECONDS


def lease_from_now() -> dt.datetime:
    return clock.now() + dt.timedelta(seconds=lease_seconds())


class LeaseKeeper:
    """Renews the leases of the claims a worker holds; use as a context manager.

    Inside a transaction (an admin action under ATOMIC_REQUESTS, say) nothing is renewed:
    no other worker sees those claims before the commit, and a second connection would
    wait on their row locks while this one waited for it.
    """

    def __init__(self, *, renewing: bool = True) -> None:
        self.renewing = renewing
        self._held: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval = lease_seconds() / 3

    def hold(self, token: uuid.UUID) -> None:
        with self._lock:
            self._held.add(token)

    def release(self, token: uuid.UUID) -> None:
        with self._lock:
            self._held.discard(token)

    def renew(self) -> int:
        """Push the leases of the held claims a full lease from now; how many rows."""
        with self._lock:
            tokens = list(self._held)
        if not tokens:
            return 0
        # Rows whose claim moved on carry another token and are left alone. The status
        # reads them through the index of rows in flight (the token has no index).
        return Conversion.objects.filter(
            claim_token__in=tokens, status=Conversion.Status.SENDING
        ).update(lease_expires_at=lease_from_now())

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.renew()
                except DatabaseError as exc:
                    # The next renewal may get through; if none does, the lease runs out
                    # and the outcomes of those rows are counted as lost claims.
                    logger.warning("Could not renew the leases of rows in flight: %s", exc)
                    connections.close_all()
        finally:
            connections.close_all()  # this thread's connections only

    def __enter__(self) -> LeaseKeeper:
        if not self.renewing:
            return self
        self._thread = threading.Thread(target=self._run, name="xconversions-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
