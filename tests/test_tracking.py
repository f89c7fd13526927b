from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.test import RequestFactory

from django_xconversions import track
from django_xconversions.identifiers import hash_email, hash_phone
from django_xconversions.models import Conversion, EventTag

pytestmark = pytest.mark.django_db


def test_track_stores_hashes_only_and_defaults(tag: EventTag) -> None:
    row = track(
        "purchase",
        email=" Test-Email@test.com ",
        phone="(123) 456-7890",
        value="20",
        number_items=2,
        contents=[{"content_id": "1", "content_price": "10.00", "num_items": 2}],
    )
    assert row.hashed_email == hash_email("test-email@test.com")
    assert row.hashed_phone == hash_phone("+11234567890")
    assert row.value == Decimal("20") and row.currency == "USD"
    assert row.contents == [{"content_id": "1", "content_price": "10.00", "num_items": 2}]
    assert row.status == "pending" and row.pixel_id == tag.pixel_id and len(row.conversion_id) == 32
    stored = Conversion.objects.values().get(pk=row.pk)
    assert "test-email@test.com" not in str(stored) and "456-7890" not in str(stored)


def test_same_conversion_id_returns_the_stored_row(tag: EventTag) -> None:
    first = track("purchase", twclid="abc", conversion_id="order:1")
    again = track("purchase", twclid="abc", conversion_id="order:1", value=5)
    assert first.pk == again.pk and Conversion.objects.count() == 1


def test_every_bad_field_is_named_and_nothing_written(tag: EventTag) -> None:
    with pytest.raises(ValidationError) as info:
        track(
            "purchase",
            email="not-an-email",
            phone="12",
            ip_address="999.1.1.1",
            value="ten",
            currency="usd1",
            number_items=0,
            contents=[{"price": 1}],
        )
    assert set(info.value.message_dict) == {
        "email",
        "phone",
        "ip_address",
        "value",
        "currency",
        "number_items",
        "contents[0]",
    }
    assert "not-an-email" not in str(info.value)
    assert Conversion.objects.count() == 0


def test_unknown_event_key_is_held_with_the_fix(tag: EventTag) -> None:
    row = track("refund", twclid="abc")
    assert (row.status, row.error_reason, row.event_tag_id, row.pixel_id) == (
        "held",
        "no_tag",
        None,
        None,
    )
    assert row.last_error.startswith("No event tag has the key 'refund'")


# -- commit=False ---------------------------------------------------------------------------

# What differs between any two rows: their ids and the times they were written.
STORED_ALIKE = {"id", "conversion_id", "created_at", "updated_at", "next_attempt_at"}


def _columns(row: Conversion) -> dict[str, object]:
    return {k: v for k, v in model_to_dict(row).items() if k not in STORED_ALIKE}


def test_commit_false_writes_nothing_and_save_stores_what_track_stores(
    tag: EventTag, django_assert_num_queries: Any
) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    arguments: dict[str, Any] = {
        "email": " Ann@Example.com ",
        "phone": "+12125550100",
        "value": "12.5",
        "contents": [{"content_id": "sku-1", "content_price": "12.50", "num_items": 1}],
        "conversion_time": when,
        "description": "web order",
    }
    track("purchase", conversion_id="warm-up", twclid="x")  # routes and caches the tag
    with django_assert_num_queries(0):
        built = track("purchase", commit=False, conversion_id="built", **arguments)
    assert built.pk is None and built._state.adding
    assert Conversion.objects.filter(conversion_id="built").count() == 0
    built.save()
    tracked = track("purchase", conversion_id="tracked", **arguments)
    stored = Conversion.objects.get(conversion_id="built")
    assert _columns(stored) == _columns(tracked)
    assert stored.status == "pending" and stored.hashed_email == hash_email("ann@example.com")


def test_commit_false_checks_every_argument_as_track_does(tag: EventTag) -> None:
    with pytest.raises(ValidationError) as info:
        track("purchase", commit=False, email="not-an-email", value="ten")
    assert set(info.value.message_dict) == {"email", "value"}
    assert Conversion.objects.count() == 0


def test_commit_false_gives_an_unroutable_event_held_unsaved(tag: EventTag) -> None:
    row = track("refund", commit=False, twclid="abc")
    assert (row.pk, row.status, row.error_reason) == (None, "held", "no_tag")
    assert row.last_error.startswith("No event tag has the key 'refund'")
    assert not Conversion.objects.exists()


def test_an_argument_track_does_not_take_is_a_type_error(tag: EventTag) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'emial'"):
        track("purchase", emial="a@example.com")  # type: ignore[call-arg]
    assert not Conversion.objects.exists()


def test_identifiers_required_and_ip_alone_is_not_enough(tag: EventTag) -> None:
    with pytest.raises(ValidationError) as info:
        track("purchase", ip_address="1.2.3.4")
    assert "At least one user identifier" in info.value.message_dict["identifiers"][0]
    assert track("purchase", ip_address="1.2.3.4", user_agent="UA").ip_address == "1.2.3.4"


def test_request_supplies_ip_user_agent_and_captured_twclid(tag: EventTag) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Browser/1")
    request.session = {"xconversions_twclid": {"twclid": "clickid", "at": time.time()}}  # type: ignore[assignment]
    row = track("purchase", request=request, email="a@example.com")
    assert (row.twclid, row.ip_address, row.user_agent) == ("clickid", "203.0.113.9", "Browser/1")


def test_naive_time_is_read_in_default_time_zone(settings, tag: EventTag) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    row = track("purchase", twclid="abc", conversion_time=dt.datetime(2024, 1, 1, 12, 0))
    assert row.conversion_time == dt.datetime(2024, 1, 1, 11, 0, tzinfo=dt.timezone.utc)
