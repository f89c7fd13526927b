"""Stable logger names and their structured ``extra`` fields, as the README lists them:
what a log pipeline (JSON formatter, Sentry, Loki) can index without parsing messages,
and never a raw identifier."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from django_xconversions import delivery, sources, track
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag
from tests.conftest import PIXEL_ID, make_conversions
from tests.shop.models import Order

DELIVERY = "django_xconversions.delivery"
CAPTURE = "django_xconversions.capture"
EMAIL = "private.person@example.com"


def records(caplog: pytest.LogCaptureFixture, name: str, start: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and r.getMessage().startswith(start)]


@pytest.mark.django_db(transaction=True)
def test_a_drains_records_carry_the_documented_fields(
    caplog: pytest.LogCaptureFixture,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    account: AdAccount,
) -> None:
    make_conversions(purchase_tag, 20)
    track("purchase", email=EMAIL, conversion_id="tracked")
    emulator.reject_event_ids("order:5")
    with caplog.at_level(logging.DEBUG, logger=DELIVERY):
        summary = delivery.send_pending()
    assert summary.sent == 20

    requests = records(caplog, DELIVERY, "POST ")
    assert len(requests) == summary.requests
    for record in requests:
        assert record.account_id == account.account_id  # type: ignore[attr-defined]
        assert record.pixel_id == PIXEL_ID  # type: ignore[attr-defined]
        assert record.events >= 1  # type: ignore[attr-defined]
        assert record.http_status in (200, 400)  # type: ignore[attr-defined]
        assert record.outcome in ("sent", "bad_request")  # type: ignore[attr-defined]
        assert record.seconds >= 0  # type: ignore[attr-defined]
    assert sum(r.http_status == 200 for r in requests) >= 1  # type: ignore[attr-defined]

    sent = records(caplog, DELIVERY, "Sent ")
    assert sum(r.events for r in sent) == 20  # type: ignore[attr-defined]
    for record in sent:
        assert record.levelno == logging.INFO
        assert record.account_id == account.account_id  # type: ignore[attr-defined]
        assert record.pixel_id == PIXEL_ID  # type: ignore[attr-defined]
        assert record.debug_id  # type: ignore[attr-defined]

    (failed,) = records(caplog, DELIVERY, "Failed ")
    assert failed.levelno == logging.WARNING
    assert failed.reason == Conversion.ErrorReason.REJECTED  # type: ignore[attr-defined]
    assert failed.events == 1  # type: ignore[attr-defined]
    assert failed.pixel_id == PIXEL_ID  # type: ignore[attr-defined]

    # Hashes only reach X; no record holds the raw email, in its message or its fields.
    for record in caplog.records:
        assert EMAIL not in record.getMessage()
        assert EMAIL not in repr(vars(record))


@pytest.mark.django_db(transaction=True)
def test_a_paused_account_is_logged_with_its_id_and_reason(
    caplog: pytest.LogCaptureFixture,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    account: AdAccount,
) -> None:
    make_conversions(purchase_tag, 3)
    emulator.faults.script(["403"])
    with caplog.at_level(logging.INFO, logger=DELIVERY):
        delivery.send_pending()
    (paused,) = records(caplog, DELIVERY, "Paused account")
    assert paused.levelno == logging.WARNING
    assert paused.account_id == account.account_id  # type: ignore[attr-defined]
    assert paused.reason.startswith("X refused the credentials")  # type: ignore[attr-defined]


def test_captures_unexpected_errors_name_the_source_event_and_problem(
    caplog: pytest.LogCaptureFixture,
    shop_tags: dict[str, EventTag],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(source: Any, instance: Any) -> None:
        raise RuntimeError("the database said no")

    monkeypatch.setattr(sources, "record", broken)
    with caplog.at_level(logging.ERROR, logger=CAPTURE):
        Order.objects.create(email=EMAIL, total=Decimal("5"), status="paid")
    label = 'XCONVERSIONS["SOURCES"][0] (shop.Order)'
    (record,) = records(caplog, CAPTURE, label)
    assert record.source == label  # type: ignore[attr-defined]
    assert record.event == "purchase"  # type: ignore[attr-defined]
    assert record.problem == "RuntimeError"  # type: ignore[attr-defined]
    assert EMAIL not in repr(vars(record))
    stored = Conversion.objects.get()
    assert stored.status == "failed"
    assert "logged by django_xconversions.capture" in stored.last_error
