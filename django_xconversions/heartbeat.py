"""Worker heartbeats: each ``send_conversions --loop`` process records a sign of life, so
health can tell a dead or stuck sender from an idle one."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import threading
import uuid

from django.db import DatabaseError, connection
from django.db.models import QuerySet
from django.utils import timezone

from django_xconversions.models import WorkerHeartbeat

# How often a worker beats; it counts as live while its last beat is this recent times 3.
BEAT_SECONDS = 5.0
LIVE_FACTOR = 3
# Rows of workers not seen for this long are deleted when a worker starts.
FORGET_AFTER = dt.timedelta(days=7)


def live_within() -> dt.timedelta:
    return dt.timedelta(seconds=BEAT_SECONDS * LIVE_FACTOR)


def is_live(row: WorkerHeartbeat, now: dt.datetime | None = None) -> bool:
    """Beating recently and not stopped."""
    now = now or timezone.now()
    return row.stopped_at is None and row.last_beat_at >= now - live_within()


def live_workers(now: dt.datetime | None = None) -> QuerySet[WorkerHeartbeat]:
    now = now or timezone.now()
    return WorkerHeartbeat.objects.filter(
        stopped_at__isnull=True, last_beat_at__gte=now - live_within()
    )


def forget_old_workers(now: dt.datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - FORGET_AFTER
    return WorkerHeartbeat.objects.filter(last_beat_at__lt=cutoff).delete()[0]


class Heartbeat:
    """One worker's heartbeat row, written by a daemon thread every ``BEAT_SECONDS``.

    A thread (with its own database connection) rather than the sending loop, so a long
    request to X does not make a working sender look dead; a process that dies or hangs
    whole stops beating. Database faults are swallowed here: the loop reports them.
    """

    def __init__(self, interval: float = BEAT_SECONDS) -> None:
        self.worker_id = uuid.uuid4().hex
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self.started_at = timezone.now()
        self.interval = interval
        self.current_pixel = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Upsert this worker's row with the time and the pixel it works on."""
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={"last_beat_at": timezone.now(), "current_pixel": self.current_pixel},
            create_defaults={
                "host": self.host,
                "pid": self.pid,
                "started_at": self.started_at,
                "last_beat_at": timezone.now(),
                "current_pixel": self.current_pixel,
            },
        )

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="xconversions-heartbeat", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            try:
                forget_old_workers()
            except DatabaseError:
                connection.close()
            while True:
                try:
                    self.beat()
                except DatabaseError:
                    connection.close()  # reconnect on the next beat
                if self._stop.wait(self.interval):
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop beating and record a clean exit."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)
        # If the database is away, the row ages into "gone", as for a crash.
        with contextlib.suppress(DatabaseError):
            WorkerHeartbeat.objects.filter(worker_id=self.worker_id).update(
                stopped_at=timezone.now(), current_pixel=""
            )
