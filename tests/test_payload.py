from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from decimal import Decimal

import pytest

from django_xconversions import payload
from django_xconversions.payload import Violation
from tests.x_messages import DOCUMENTED_400, INFERRED_400

HASH = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"


def event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "conversion_time": "2022-02-18T01:14:00.603Z",
        "event_id": "o87ne",
        "identifiers": [{"twclid": "23opevjt88psuo13lu8d020qkn"}],
        "conversion_id": "23294827",
    }
    base.update(overrides)
    return base


def messages(found: list[Violation]) -> list[str]:
    return [v.message for v in found]


# -- conversion_time ---------------------------------------------------------------------


def test_aware_utc_time_has_milliseconds_and_z() -> None:
    value = dt.datetime(2022, 2, 18, 1, 14, 0, 603_999, tzinfo=dt.timezone.utc)
    assert payload.format_conversion_time(value) == "2022-02-18T01:14:00.603Z"


def test_aware_non_utc_time_is_converted_to_utc() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    value = dt.datetime(2022, 2, 18, 2, 14, 0, 603_000, tzinfo=paris)
    assert payload.format_conversion_time(value) == "2022-02-18T01:14:00.603Z"


def test_naive_time_is_read_in_time_zone_setting(settings) -> None:
    settings.TIME_ZONE = "America/New_York"
    value = dt.datetime(2022, 2, 17, 20, 14, 0, 0)
    assert payload.format_conversion_time(value) == "2022-02-18T01:14:00.000Z"


def test_isoformat_would_be_rejected_but_ours_is_accepted() -> None:
    value = dt.datetime(2022, 2, 18, 1, 14, tzinfo=dt.timezone.utc)
    expected = 'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "{}" for conversion_time'
    found = payload.validate(event(conversion_time=value.isoformat()))
    assert messages(found) == [expected.format("2022-02-18T01:14:00+00:00")]
    assert payload.validate(event(conversion_time=payload.format_conversion_time(value))) == []


# -- documented messages -------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message", "parameter"), DOCUMENTED_400 + INFERRED_400)
def test_each_rule_reports_x_message(
    overrides: dict[str, object], message: str, parameter: str
) -> None:
    found = payload.validate({**event(), **overrides})
    assert [(v.message, v.parameter) for v in found] == [(message, parameter)]


def test_ip_and_user_agent_together_count_as_two_identifiers() -> None:
    assert (
        payload.validate(event(identifiers=[{"ip_address": "1.0.0.0", "user_agent": "UA"}])) == []
    )


def test_ip_with_email_is_fine() -> None:
    assert (
        payload.validate(event(identifiers=[{"hashed_email": HASH}, {"ip_address": "::1"}])) == []
    )


def test_batch_of_501_is_refused_with_x_message() -> None:
    assert messages(payload.validate_batch([event()] * 501)) == ["Conversion count limit is 500"]
    assert payload.validate_batch([event()] * 500) == []


def test_docs_example_event_is_valid() -> None:
    example = event(
        identifiers=[
            {"twclid": "23opevjt88psuo13lu8d020qkn"},
            {"hashed_email": HASH},
            {"ip_address": "1.0.0.0", "user_agent": "Mozilla/5.0"},
        ],
        value="20.00",
        number_items=3,
        price_currency="USD",
        contents=[{"content_id": "1", "content_price": 100.99, "num_items": 1}],
    )
    assert payload.validate(example) == []


# -- building ------------------------------------------------------------------------------


def test_identifiers_keep_ip_and_ua_in_one_object_like_x_example() -> None:
    built = payload.build_identifiers(twclid="abc", ip_address="1.0.0.0", user_agent="UA")
    assert built == [{"twclid": "abc"}, {"ip_address": "1.0.0.0", "user_agent": "UA"}]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("20"), "20.00"),
        (Decimal("20.0000"), "20.00"),
        (Decimal("1.2345"), "1.2345"),
        (Decimal("1E+3"), "1000.00"),
    ],
)
def test_value_is_decimal_text(value: Decimal, text: str) -> None:
    assert payload.decimal_text(value) == text


def test_content_price_is_a_json_number_never_a_string() -> None:
    built = payload.build_contents(
        [{"content_id": "1", "content_price": Decimal("100.99"), "num_items": 1}]
    )
    assert json.dumps(built) == '[{"content_id": "1", "content_price": 100.99, "num_items": 1}]'
    assert payload.validate(event(contents=built)) == []
