"""A conversion's event is written as X's text when it is recorded (Conversion.wire_text)
and passed on as it stands when sent; a row whose event fields change afterwards, however
they are changed, is built from its fields again. What X receives is always what the
row's fields say."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hypothesis_settings

from django_xconversions import claimed, claiming, delivery, payload
from django_xconversions.claimed import ClaimedRow, StoredRow
from django_xconversions.client.transport import json_text
from django_xconversions.emulator.server import EmulatorServer
from django_xconversions.models import Conversion, EventTag
from django_xconversions.tracking import track
from tests.conftest import configure, make_conversions
from tests.test_claimed import rows as claimed_rows

HASH = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"
RICH: dict[str, Any] = {
    "email": "Jane.Doe@example.com",
    "phone": "+1 (555) 010-0199",
    "ip_address": "2001:DB8::1",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) \u2603",
    "value": "83.90",
    "currency": "eur",
    "number_items": 3,
    "description": 'Order "A-1": caf\u00e9 cr\u00e8me \u2615, 2 products',
    "contents": [
        {"content_id": "sku-1", "content_name": "Socks", "content_price": "14.90", "num_items": 1},
        {"content_id": "sku-2", "content_price": 34.5, "num_items": 2, "content_type": "product"},
    ],
}


def _record(n: int, **overrides: Any) -> Conversion:
    arguments = {**RICH, "twclid": f"click{n}", "conversion_id": f"order:{n}", **overrides}
    return track("purchase", **arguments)


def _sent_from_fields(tag: EventTag, pk: int) -> dict[str, Any]:
    """The event the row's stored fields give, as X reads it."""
    stored = Conversion.objects.get(pk=pk)
    return json.loads(json_text(payload.conversion_to_event(stored, tag.website_tag_id)))


def _claim(tag: EventTag, count: int) -> list[claimed.Claimed]:
    now = timezone.now()
    return claiming.claim_rows(
        tag.pixel_id, count, due_by=now + dt.timedelta(seconds=1), token=uuid.uuid4(), lease=now
    )


# -- what is written ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_recorded_conversion_is_sent_as_its_fields_say(tag: EventTag) -> None:
    recorded = _record(1)
    assert recorded.wire_text is not None
    assert '"event_id"' not in recorded.wire_text  # the tag's, read when sent
    (row,) = _claim(tag, 1)
    assert isinstance(row, StoredRow) and row.pk == recorded.pk
    assert json.loads(claimed.stored_event(row)) == _sent_from_fields(tag, recorded.pk)


@pytest.mark.django_db
def test_the_wire_text_follows_the_tags_current_id(tag: EventTag) -> None:
    recorded = _record(1)
    EventTag.objects.filter(pk=tag.pk).update(website_tag_id="tw9zz")
    (row,) = _claim(tag, 1)
    assert isinstance(row, StoredRow)
    assert json.loads(claimed.stored_event(row))["event_id"] == "tw9zz"
    tag.refresh_from_db()
    assert json.loads(claimed.stored_event(row)) == _sent_from_fields(tag, recorded.pk)


def refuse_everyone(request: Any) -> bool:
    return False


@pytest.mark.django_db
def test_held_rows_carry_it_and_refused_visitors_rows_do_not(
    tag: EventTag, rf: Any, settings: Any
) -> None:
    held = track("sign_up", email="a@example.com")  # no tag has this key yet
    assert held.status == Conversion.Status.HELD and held.wire_text is not None
    # A skipped row (the visitor refused) is never sent and keeps no identifiers.
    configure(settings, CONSENT_CHECK=f"{__name__}.refuse_everyone")
    skipped = track("purchase", request=rf.get("/"), email="b@example.com")
    assert skipped.status == Conversion.Status.SKIPPED and skipped.wire_text is None


def test_an_event_validate_would_refuse_gets_none() -> None:
    fields = {
        "conversion_time": dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc),
        "conversion_id": "order:1",
        "twclid": "",
        "hashed_email": HASH,
        "hashed_phone": "",
        "ip_address": None,
        "user_agent": "",
        "value": None,
        "currency": "",
        "number_items": None,
        "description": "",
        "contents": [],
    }
    assert claimed.wire_text_of(SimpleNamespace(**fields)) is not None
    for broken in [
        {"number_items": 0},
        {"currency": "XYZ"},
        {"hashed_email": HASH + "\n"},
        {"value": Decimal("NaN")},
        {"contents": [{"content_price": "1e400"}]},
        {"conversion_time": "2026-13-01T00:00:00.000Z"},
    ]:
        recorded = SimpleNamespace(**{**fields, **broken})
        assert claimed.wire_text_of(recorded) is None, broken
        assert payload.validate(payload.conversion_to_event(recorded, "ny3od")), broken


@seed(20261130)
@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=claimed_rows)
def test_the_text_written_when_recorded_is_the_text_the_fields_give(row: ClaimedRow) -> None:
    # The same verdict and the same event as the sending path builds from the fields.
    fields = row._asdict()
    contents = fields.pop("stored_contents")
    recorded = SimpleNamespace(**fields, contents=contents)
    members = claimed.wire_text_of(recorded)
    # An IPv6 address as the database stores it (compressed).
    address = Conversion._meta.get_field("ip_address").get_prep_value(row.ip_address)
    built = claimed.wire_event(row._replace(ip_address=address))
    if not row.website_tag_id:
        assert built is None
        return
    assert (members is None) == (built is None)
    if members is not None and built is not None:
        sent = claimed.with_event_id(members, row.website_tag_id)
        assert json.loads(sent) == json.loads(built)


# -- changed afterwards: built from the fields again ----------------------------------------


def _changed(how: str, conversion: Conversion) -> None:
    if how == "update":
        Conversion.objects.filter(pk=conversion.pk).update(value=Decimal("5.00"))
    elif how == "bulk_update":
        loaded = Conversion.objects.get(pk=conversion.pk)
        loaded.value = Decimal("5.00")
        Conversion.objects.bulk_update([loaded], ["value"])
    elif how == "save_update_fields":
        loaded = Conversion.objects.get(pk=conversion.pk)
        loaded.value = Decimal("5.00")
        loaded.save(update_fields=["value"])
    elif how == "save":
        loaded = Conversion.objects.get(pk=conversion.pk)
        loaded.value = Decimal("5.00")
        loaded.save()
    elif how == "save_deferred":
        loaded = Conversion.objects.defer("wire_text", "contents").get(pk=conversion.pk)
        loaded.value = Decimal("5.00")
        loaded.save()
    elif how == "changed_before_save":
        conversion.value = Decimal("5.00")
        conversion.save()
    else:
        raise AssertionError(how)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "how",
    ["update", "bulk_update", "save_update_fields", "save", "save_deferred", "changed_before_save"],
)
def test_a_row_changed_after_it_was_recorded_is_sent_as_it_is_now(tag: EventTag, how: str) -> None:
    recorded = _record(1)
    _changed(how, recorded)
    stored = Conversion.objects.get(pk=recorded.pk)
    assert stored.value == Decimal("5.00") and stored.wire_text is None
    (row,) = _claim(tag, 1)
    assert isinstance(row, ClaimedRow)
    text = claimed.wire_event(row)
    assert text is not None and json.loads(text)["value"] == "5.00"


@pytest.mark.django_db
def test_changes_to_other_fields_keep_it(tag: EventTag) -> None:
    recorded = _record(1)
    Conversion.objects.filter(pk=recorded.pk).update(next_attempt_at=timezone.now())
    loaded = Conversion.objects.get(pk=recorded.pk)
    loaded.last_error = "noted"
    loaded.save(update_fields=["last_error"])
    assert Conversion.objects.get(pk=recorded.pk).wire_text == recorded.wire_text


@pytest.mark.django_db
def test_a_copy_of_a_recorded_row_is_built_from_its_own_fields(tag: EventTag) -> None:
    recorded = _record(1)
    copy = Conversion.objects.get(pk=recorded.pk)
    copy.pk = None
    copy.conversion_id = "order:copy"
    copy.save()
    assert Conversion.objects.get(pk=copy.pk).wire_text is None
    assert Conversion.objects.get(pk=recorded.pk).wire_text is not None


@pytest.mark.django_db
def test_contents_changed_in_place_before_the_write_drop_it(tag: EventTag) -> None:
    unsaved = track("purchase", commit=False, **{**RICH, "twclid": "click1"})
    assert unsaved.wire_text is not None
    unsaved.contents[0]["content_price"] = "99.00"  # the same list, changed in place
    Conversion.objects.bulk_create([unsaved])
    assert Conversion.objects.get(conversion_id=unsaved.conversion_id).wire_text is None


@pytest.mark.django_db
def test_commit_false_then_save_keeps_it(tag: EventTag) -> None:
    unsaved = track("purchase", commit=False, **{**RICH, "twclid": "click1"})
    unsaved.save()
    assert Conversion.objects.get(pk=unsaved.pk).wire_text == unsaved.wire_text


# -- sending ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_x_receives_what_each_rows_fields_say_stored_or_not(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    recorded = [_record(n, ip_address="192.0.2.7" if n % 2 else "2001:db8::7") for n in range(6)]
    # Changed after recording: sent as changed.
    Conversion.objects.filter(pk=recorded[1].pk).update(description="changed")
    legacy = make_conversions(purchase_tag, 2, start=100)  # written without it
    summary = delivery.send_pending()
    assert summary.sent == 8 and summary.requests == 1
    received = {r["conversion"]["conversion_id"]: r["conversion"] for r in emulator.received}
    for row in [*recorded, *legacy]:
        assert received[row.conversion_id] == _sent_from_fields(purchase_tag, row.pk)
    assert received["order:1"]["description"] == "changed"
    # Sent rows keep their fields only.
    assert not Conversion.objects.filter(wire_text__isnull=False).exists()
    assert Conversion.objects.filter(status="sent").count() == 8


@pytest.mark.django_db(transaction=True)
def test_a_retried_row_is_sent_as_its_fields_say_on_its_next_attempt(
    emulator: EmulatorServer, purchase_tag: EventTag, clock: Any
) -> None:
    recorded = _record(1)
    emulator.faults.script(["503"])
    assert delivery.send_pending().retrying == 1
    retried = Conversion.objects.get(pk=recorded.pk)
    assert retried.status == "pending"
    if connection.vendor == "postgresql":
        assert retried.wire_text is None  # dropped by the claim, the row kept small
    clock.advance_past(retried.next_attempt_at)
    assert delivery.send_pending().sent == 1
    (received,) = [r["conversion"] for r in emulator.received]
    assert received == _sent_from_fields(purchase_tag, recorded.pk)


@pytest.mark.django_db(transaction=True)
def test_a_wire_text_x_refuses_fails_its_row_alone_with_xs_message(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    # Written by other means than the capture (raw SQL): X's refusal is kept on the row.
    good = [_record(n) for n in range(4)]
    bad = _record(9)
    broken = bad.wire_text.replace(f'"{RICH["currency"].upper()}"', '"XYZ"')  # type: ignore[union-attr]
    table = connection.ops.quote_name(Conversion._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET wire_text = %s WHERE id = %s", [broken, bad.pk])  # noqa: S608
    summary = delivery.send_pending()
    assert summary.sent == 4
    failed = Conversion.objects.get(pk=bad.pk)
    assert failed.status == "failed" and failed.error_reason == "rejected"
    assert "price_currency" in failed.last_error
    assert {c.pk for c in good} == set(
        Conversion.objects.filter(status="sent").values_list("pk", flat=True)
    )
