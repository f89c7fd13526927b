"""The public signals: each fires once its work has committed, with the documented
arguments, never for work rolled back; a receiver that raises breaks neither the send nor
the customer's save."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.dispatch import Signal

from django_xconversions import delivery, signals, track
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from tests.conftest import make_conversions
from tests.shop.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


class Received:
    """Records every call of a signal (sender and arguments)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        self.calls.append({"sender": sender, **kwargs})


@pytest.fixture
def listen() -> Iterator[Callable[[Signal], Received]]:
    connected: list[tuple[Signal, Received]] = []

    def connect(signal: Signal) -> Received:
        received = Received()
        signal.connect(received, weak=False)
        connected.append((signal, received))
        return received

    yield connect
    for signal, received in connected:
        signal.disconnect(received)


@pytest.fixture
def raising() -> Iterator[Callable[[Signal], list[Signal]]]:
    """Connects a receiver that raises; returns the list of signals it was called for."""
    connected: list[tuple[Signal, Callable[..., None]]] = []
    called: list[Signal] = []

    def connect(signal: Signal) -> list[Signal]:
        def receiver(sender: Any, signal: Signal, **kwargs: Any) -> None:
            called.append(signal)
            raise RuntimeError("a receiver's own bug")

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return called

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


# -- conversion_recorded -----------------------------------------------------------------


def test_conversion_recorded_after_commit_with_the_stored_row_and_created(
    listen: Callable[[Signal], Received], shop_tags: dict[str, EventTag]
) -> None:
    recorded = listen(signals.conversion_recorded)
    with transaction.atomic():
        stored = track("purchase", email="a@example.com", conversion_id="o-1")
        assert recorded.calls == []  # not before the commit
    assert len(recorded.calls) == 1
    call = recorded.calls[0]
    assert call["sender"] is Conversion
    assert call["created"] is True
    assert call["conversion"].pk == stored.pk
    assert call["conversion"].status == "pending"

    again = track("purchase", email="a@example.com", conversion_id="o-1")
    assert again.pk == stored.pk
    assert len(recorded.calls) == 2
    assert recorded.calls[1]["created"] is False
    assert recorded.calls[1]["conversion"].pk == stored.pk


def test_conversion_recorded_not_sent_for_a_rolled_back_order(
    listen: Callable[[Signal], Received], shop_tags: dict[str, EventTag]
) -> None:
    recorded = listen(signals.conversion_recorded)
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(email="a@example.com", total=Decimal("5"), status="paid")
        raise RuntimeError("payment declined")
    assert Conversion.objects.count() == 0
    assert recorded.calls == []


def test_conversion_recorded_for_held_and_failed_rows(
    listen: Callable[[Signal], Received], shop_tags: dict[str, EventTag]
) -> None:
    recorded = listen(signals.conversion_recorded)
    held = track("no_such_key", email="a@example.com")
    # A bound order whose email breaks the rules is stored failed with the field.
    Order.objects.create(email="not-an-email", total=Decimal("5"), status="paid")
    statuses = [(c["conversion"].status, c["created"]) for c in recorded.calls]
    assert statuses == [("held", True), ("failed", True)]
    assert recorded.calls[0]["conversion"].pk == held.pk
    assert recorded.calls[1]["conversion"].error_reason == Conversion.ErrorReason.INVALID


def test_a_raising_receiver_breaks_neither_track_nor_the_orders_save(
    raising: Callable[[Signal], list[Signal]],
    shop_tags: dict[str, EventTag],
    caplog: pytest.LogCaptureFixture,
) -> None:
    called = raising(signals.conversion_recorded)
    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        order = Order.objects.create(email="a@example.com", total=Decimal("5"), status="paid")
        stored = track("sign_up", email="b@example.com")
    assert Order.objects.filter(pk=order.pk).exists()
    assert Conversion.objects.filter(pk=stored.pk, status="pending").exists()
    assert Conversion.objects.count() == 2
    assert len(called) == 2  # the receiver ran for both, and its error was logged
    assert len([r for r in caplog.records if r.name == "django.dispatch"]) == 2


# -- conversions_sent, conversions_failed --------------------------------------------------


def test_conversions_sent_with_pixel_pks_debug_id_and_count(
    listen: Callable[[Signal], Received],
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    settings: Any,
) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "BATCH_SIZE": 100}
    rows = make_conversions(purchase_tag, 250)
    sent = listen(signals.conversions_sent)
    assert delivery.send_pending().sent == 250
    assert [call["count"] for call in sent.calls] == [100, 100, 50]
    assert sorted(pk for call in sent.calls for pk in call["pks"]) == sorted(r.pk for r in rows)
    for call in sent.calls:
        assert call["sender"] is Pixel
        assert call["pixel"].pk == purchase_tag.pixel_id
        assert call["debug_id"]
        assert len(call["pks"]) == call["count"]
        stored = Conversion.objects.filter(pk__in=call["pks"])
        assert set(stored.values_list("status", "debug_id")) == {("sent", call["debug_id"])}


def test_conversions_failed_names_the_rows_reason_and_message(
    listen: Callable[[Signal], Received], emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    rows = make_conversions(purchase_tag, 20)
    emulator.reject_event_ids("order:3", "order:11")
    failed = listen(signals.conversions_failed)
    sent = listen(signals.conversions_sent)
    summary = delivery.send_pending()
    assert summary.sent == 18
    bad = sorted(r.pk for r in rows if r.conversion_id in {"order:3", "order:11"})
    assert sorted(pk for call in failed.calls for pk in call["pks"]) == bad
    for call in failed.calls:
        assert call["sender"] is Pixel
        assert call["pixel"].pk == purchase_tag.pixel_id
        assert call["reason"] == Conversion.ErrorReason.REJECTED
        assert call["message"] == "hashed_email (rejected) is not a valid SHA-256 hash"
        assert call["count"] == len(call["pks"])
    assert sum(call["count"] for call in sent.calls) == 18


def test_no_signal_for_outcomes_rolled_back_with_the_callers_transaction(
    listen: Callable[[Signal], Received], emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 5)
    sent = listen(signals.conversions_sent)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert delivery.send_pending().sent == 5
        raise RuntimeError("the caller gives up")
    assert sent.calls == []
    assert set(Conversion.objects.values_list("status", flat=True)) == {"pending"}
    assert delivery.send_pending().sent == 5
    assert sum(call["count"] for call in sent.calls) == 5


def test_a_raising_receiver_does_not_break_sending(
    raising: Callable[[Signal], list[Signal]],
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "BATCH_SIZE": 10}
    make_conversions(purchase_tag, 30)
    emulator.reject_event_ids("order:4")
    raising(signals.conversions_sent)
    called = raising(signals.conversions_failed)
    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        summary = delivery.send_pending()
    assert summary.sent == 29 and summary.failed == {"rejected": 1}
    assert Conversion.objects.filter(status="sent").count() == 29
    assert Conversion.objects.filter(status="failed").count() == 1
    # Every call raised, and each was logged rather than raised.
    assert signals.conversions_sent in called and signals.conversions_failed in called
    logged = [r for r in caplog.records if r.name == "django.dispatch"]
    assert len(logged) == len(called)


# -- account_paused ------------------------------------------------------------------------


def test_account_paused_with_the_paused_account_and_reason(
    listen: Callable[[Signal], Received],
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    account: AdAccount,
) -> None:
    make_conversions(purchase_tag, 5)
    emulator.faults.script(["401"])
    paused = listen(signals.account_paused)
    summary = delivery.send_pending()
    assert summary.sent == 0
    assert len(paused.calls) == 1
    call = paused.calls[0]
    assert call["sender"] is AdAccount
    assert call["account"].pk == account.pk
    assert call["account"].status == AdAccount.Status.PAUSED
    assert call["reason"] == summary.paused[account.account_id]
    assert call["reason"].startswith("X refused the credentials")
