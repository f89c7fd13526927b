"""On PostgreSQL a committed conversion wakes an idle --loop worker at once (NOTIFY after
the commit, one per transaction and pixel; LISTEN on the worker's own connection), also
after that connection was lost; NOTIFY_ON_COMMIT = False leaves the workers polling."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from django_xconversions import track, wakeup
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import Conversion, EventTag, Pixel
from django_xconversions.worker import Worker, close_connections
from tests.helpers import wait_until
from tests.helpers.workers import database_url

from .conftest import configure, make_conversions, mirror_tag

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Far longer than any wait below: a conversion sent sooner was not found by polling.
POLL_SECONDS = 60.0
# "Well under the poll interval", and generous for a loaded 2-core machine.
WOKEN_WITHIN = 5.0


class IdleWorker:
    """A --loop worker on a thread of its own, told apart when it waits between passes."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.worker = Worker(stop=self.stop)
        self.waits = 0
        real_wait = self.worker.wakeup.wait

        def counting_wait(timeout: float) -> bool:
            self.waits += 1
            return real_wait(timeout)

        self.worker.wakeup.wait = counting_wait  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.worker.run()
        finally:
            close_connections()

    def waiting(self, passes_done: int = 1) -> None:
        """Block until the worker has finished ``passes_done`` idle passes and waits."""
        wait_until(lambda: self.waits >= passes_done, 20, "the worker never went idle")


@pytest.fixture
def idle_worker(settings: Any, emulator: EmulatorServer) -> Iterator[IdleWorker]:
    configure(settings, LOOP_IDLE_SECONDS=POLL_SECONDS)
    idle = IdleWorker()
    idle.thread.start()
    try:
        yield idle
    finally:
        idle.stop.set()
        idle.thread.join(10)
    assert not idle.thread.is_alive(), "a stop request ends the wait promptly"


def sent(conversion: Conversion) -> Callable[[], bool]:
    return lambda: Conversion.objects.get(pk=conversion.pk).status == "sent"


def test_a_committed_conversion_wakes_a_waiting_worker(
    idle_worker: IdleWorker, purchase_tag: EventTag
) -> None:
    idle_worker.waiting()
    assert idle_worker.worker.wakeup.listening
    for n in range(3):
        conversion = track("purchase", twclid=f"click{n}", conversion_id=f"order-{n}")
        seconds = wait_until(sent(conversion), WOKEN_WITHIN, "no worker woke up for the commit")
        assert seconds < WOKEN_WITHIN < POLL_SECONDS
        # Each conversion found its worker waiting again (not still in a pass).
        idle_worker.waiting(n + 2)


def test_the_listening_connection_is_reopened_when_its_backend_is_terminated(
    caplog: Any, idle_worker: IdleWorker, purchase_tag: EventTag
) -> None:
    caplog.set_level(logging.INFO, logger="django_xconversions.wakeup")
    idle_worker.waiting()
    listener = idle_worker.worker.wakeup
    pid = listener._wrapper.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: listener.opened == 2, 10, "the listening connection was not reopened")
    idle_worker.waiting(2)
    conversion = track("purchase", twclid="click1", conversion_id="after-the-loss")
    wait_until(sent(conversion), WOKEN_WITHIN, "the reopened connection did not wake the worker")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Not listening for committed conversions" in m for m in messages) == 1
    assert sum("Listening for committed conversions again" in m for m in messages) == 1


@pytest.mark.slow
def test_the_worker_listens_again_after_a_postgres_restart(
    idle_worker: IdleWorker, purchase_tag: EventTag
) -> None:
    from tests import pg_plugin

    idle_worker.waiting()
    pg_plugin.restart_server()
    connection.close()  # ours was cut too
    listener = idle_worker.worker.wakeup
    wait_until(lambda: listener.opened == 2, 20, "the worker did not listen again")
    conversion = track("purchase", twclid="click1", conversion_id="after-the-restart")
    # The worker's own connection was cut too: its next pass waits that outage out first.
    wait_until(sent(conversion), 2 * WOKEN_WITHIN, "no worker woke up after the restart")


def test_polling_is_the_fallback_for_rows_written_without_a_notify(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    configure(settings, LOOP_IDLE_SECONDS=0.2)
    stop = threading.Event()
    worker = Worker(stop=stop, limit=1)
    thread = threading.Thread(target=lambda: (worker.run(), close_connections()))
    thread.start()
    try:
        (conversion,) = make_conversions(purchase_tag, 1)  # bulk_create: no NOTIFY
        thread.join(10)
    finally:
        stop.set()
        thread.join(10)
    assert Conversion.objects.get(pk=conversion.pk).status == "sent"


# -- the NOTIFY side -------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"LISTEN {wakeup.CHANNEL}")
        yield conn


def notified(conn: psycopg.Connection[Any], settle: float = 0.3) -> list[str]:
    """Payloads received within ``settle`` seconds."""
    return sorted(n.payload for n in conn.notifies(timeout=settle))


@pytest.fixture
def two_pixels(emulator: EmulatorServer, purchase_tag: EventTag, pixel: Pixel) -> Pixel:
    emulator.add_pixel(pixel.account.account_id, "second")
    second = Pixel.objects.create(pixel_id="second", account=pixel.account)
    mirror_tag(emulator, second, "sign_up", "SIGN_UP")
    return second


def test_one_notify_per_transaction_and_pixel_after_the_commit(
    listener: psycopg.Connection[Any], two_pixels: Pixel, pixel: Pixel
) -> None:
    with transaction.atomic():
        for n in range(5):
            track("purchase", twclid=f"click{n}", conversion_id=f"p{n}")
        for n in range(3):
            track("sign_up", twclid=f"click{n}", conversion_id=f"s{n}")
        assert notified(listener, 0.2) == [], "nothing before the commit"
    assert notified(listener) == sorted([str(pixel.pk), str(two_pixels.pk)])
    # Outside a transaction each stored conversion commits, and notifies, on its own.
    track("purchase", twclid="click9", conversion_id="alone")
    assert notified(listener) == [str(pixel.pk)]


def test_a_rolled_back_transaction_notifies_nothing_and_blocks_no_later_notify(
    listener: psycopg.Connection[Any], purchase_tag: EventTag, pixel: Pixel
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        track("purchase", twclid="click1", conversion_id="rolled-back")
        raise RuntimeError("the order failed")
    assert notified(listener) == []
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint
            track("purchase", twclid="click2", conversion_id="savepoint")
            raise RuntimeError("this line failed")
        track("purchase", twclid="click3", conversion_id="kept")
    assert notified(listener) == [str(pixel.pk)]


def test_notify_on_commit_off_sends_nothing_and_workers_poll(
    settings: Any, listener: psycopg.Connection[Any], purchase_tag: EventTag
) -> None:
    configure(settings, NOTIFY_ON_COMMIT=False)
    track("purchase", twclid="click1", conversion_id="quiet")
    assert notified(listener) == []
    waiting = wakeup.Wakeup(threading.Event())
    assert not waiting.enabled and not waiting.open()
    started = time.monotonic()
    assert waiting.wait(0.2) is False
    assert time.monotonic() - started >= 0.2
