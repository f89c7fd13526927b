"""The --loop worker in process: transient database errors are waited out with a bounded,
jittered backoff and logged once per outage; other errors are logged with a traceback and
the worker goes on with the next pixel; the heartbeat says who works on what."""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import InterfaceError, OperationalError

from django_xconversions import delivery, routing, track, tracking
from django_xconversions.delivery import SendSummary
from django_xconversions.emulator import EmulatorServer
from django_xconversions.heartbeat import Heartbeat
from django_xconversions.models import Conversion, EventTag, Pixel, WorkerHeartbeat
from django_xconversions.worker import (
    BACKOFF_MAX,
    Backoff,
    Worker,
    close_connections,
    is_transient,
)

from .conftest import ACCOUNT_ID, configure, make_conversions, mirror_tag, received_ids

pytestmark = pytest.mark.django_db(transaction=True)

FAST = Backoff(first=0.01, cap=0.05, rng=random.Random(1))


def faulty_send(faults: list[BaseException | None]) -> tuple[Callable[..., SendSummary], list[int]]:
    """send_pending raising the next fault of ``faults`` on each call until none are
    left; how many conversions each call processed (-1: it raised)."""
    real = delivery.send_pending
    calls: list[int] = []

    def send(**kwargs: Any) -> SendSummary:
        if faults:
            fault = faults.pop(0)
            if fault is not None:
                calls.append(-1)
                raise fault
        summary = real(**kwargs)
        calls.append(summary.processed)
        return summary

    return send, calls


@pytest.mark.parametrize(
    "fault",
    [
        OperationalError("database is locked"),
        OperationalError("could not serialize access due to concurrent update"),
        OperationalError("server closed the connection unexpectedly"),
        InterfaceError("connection already closed"),
        sqlite3.OperationalError("database is locked"),
        psycopg.OperationalError("the connection is lost"),
    ],
    ids=["locked", "serialization", "closed", "interface", "sqlite3", "psycopg"],
)
def test_transient_database_errors_are_waited_out_and_logged_once(
    monkeypatch: Any,
    caplog: Any,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    fault: BaseException,
) -> None:
    make_conversions(purchase_tag, 30)
    send, calls = faulty_send([fault, fault, fault])
    monkeypatch.setattr(delivery, "send_pending", send)
    caplog.set_level(logging.INFO, logger="django_xconversions.worker")
    worker = Worker(stop=threading.Event(), limit=30, backoff=FAST)
    totals = worker.run()
    assert totals.sent == 30 and calls == [-1, -1, -1, 30]
    assert sorted(received_ids(emulator)) == sorted(f"order:{n}" for n in range(30))
    messages = [r.getMessage() for r in caplog.records]
    away = [m for m in messages if m.startswith("Database unavailable")]
    assert len(away) == 1 and str(fault) in away[0], messages
    back = [m for m in messages if m.startswith("Database available again")]
    assert len(back) == 1 and "(3 failed attempts)" in back[0], messages


def test_transient_errors_before_sending_are_waited_out_too(
    monkeypatch: Any, caplog: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 5)
    faults = [OperationalError("the database system is starting up")] * 2
    real = routing.route_held

    def route_held() -> Any:
        if faults:
            raise faults.pop()
        return real()

    monkeypatch.setattr(routing, "route_held", route_held)
    assert Worker(stop=threading.Event(), limit=5, backoff=FAST).run().sent == 5
    assert not faults


def test_backoff_doubles_from_half_a_second_with_jitter_and_stays_bounded() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(BACKOFF_MAX, 0.5 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= BACKOFF_MAX and len(set(delays)) == len(delays), "jittered"
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_other_errors_are_not_transient() -> None:
    assert not is_transient(ValueError("bug"))
    assert not is_transient(psycopg.errors.UniqueViolation("duplicate"))
    assert is_transient(psycopg.errors.SerializationFailure("serialize"))
    assert is_transient(psycopg.errors.AdminShutdown("terminating connection"))


def test_a_failing_pixel_is_logged_with_its_traceback_and_the_others_are_sent(
    settings: Any,
    monkeypatch: Any,
    caplog: Any,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    pixel: Pixel,
) -> None:
    configure(settings, LOOP_IDLE_SECONDS=0.05)
    emulator.add_pixel(ACCOUNT_ID, "second")
    second = Pixel.objects.create(pixel_id="second", account=pixel.account)
    other_tag = mirror_tag(emulator, second, "sign_up", "SIGN_UP")
    make_conversions(purchase_tag, 10)
    make_conversions(other_tag, 10, start=100)
    bug = RuntimeError("a bug in the first pixel's batch")
    faults = [bug, bug]
    claims: list[str] = []
    real = delivery.claim

    def claim(target: Pixel, count: int, **kwargs: Any) -> delivery.Claim:
        claims.append(target.pixel_id)
        if target.pk == pixel.pk and faults:
            raise faults.pop()
        return real(target, count, **kwargs)

    monkeypatch.setattr(delivery, "claim", claim)
    caplog.set_level(logging.INFO, logger="django_xconversions.worker")
    worker = Worker(stop=threading.Event(), limit=20, backoff=FAST)
    worker.run()
    # The second pixel was sent while the first failed; the first went through later.
    assert claims[:2] == [pixel.pixel_id, "second"]
    assert worker.totals.sent == 20 and len(set(received_ids(emulator))) == 20
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failures[0].exc_info is not None and failures[0].exc_info[1] is bug
    assert "going on with the next pixel" in failures[0].getMessage()
    assert failures[1].exc_info is None and "still failing" in failures[1].getMessage()
    assert len(failures) == 2


def test_stop_ends_the_loop_even_while_the_database_is_away(monkeypatch: Any, db: None) -> None:
    stop = threading.Event()

    def away() -> None:
        stop.set()  # as SIGTERM does, during the outage's backoff
        raise OperationalError("connection refused")

    monkeypatch.setattr(delivery, "recover_expired_leases", away)
    assert Worker(stop=stop, backoff=Backoff(first=60, cap=60)).run().sent == 0


def test_heartbeat_records_the_worker_and_the_pixel_it_sends(
    monkeypatch: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 3)
    beat = Heartbeat(interval=0.05)
    seen: list[str] = []
    real = delivery.claim

    def claim(*args: Any, **kwargs: Any) -> delivery.Claim:
        beat.beat()
        seen.append(WorkerHeartbeat.objects.get(worker_id=beat.worker_id).current_pixel)
        return real(*args, **kwargs)

    monkeypatch.setattr(delivery, "claim", claim)
    Worker(stop=threading.Event(), limit=3, heartbeat=beat).run()
    assert seen == [purchase_tag.pixel.pixel_id]
    row = WorkerHeartbeat.objects.get(worker_id=beat.worker_id)
    assert (row.pid, row.current_pixel) == (beat.pid, "")
    assert row.stopped_at is not None and row.started_at <= row.last_beat_at <= row.stopped_at
    assert Conversion.objects.filter(status="sent").count() == 3


def test_each_pass_routes_held_conversions_fixed_without_a_signal(
    emulator: EmulatorServer, purchase_tag: EventTag, pixel: Pixel
) -> None:
    # A tag given its pixel by a bulk update (no post_save): only the worker's pass sees it.
    EventTag.objects.filter(pk=purchase_tag.pk).update(pixel=None)
    tracking.clear_tag_cache()
    held = track("purchase", twclid="click1", conversion_id="held-1")
    assert held.status == "held"
    EventTag.objects.filter(pk=purchase_tag.pk).update(pixel=pixel)
    stop = threading.Event()
    worker = Worker(stop=stop, limit=1, backoff=FAST)

    def run() -> None:
        try:
            worker.run()
        finally:
            close_connections()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=15)
    stop.set()  # bounded: a worker that never routes it would loop on
    thread.join(timeout=15)
    assert Conversion.objects.get(pk=held.pk).status == "sent"
    assert received_ids(emulator) == ["held-1"]
