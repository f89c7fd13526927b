"""The sending hot path builds exactly the events payload.py builds, and its quick check
never lets through an event payload.validate would refuse."""

from __future__ import annotations

import datetime as dt
import gc
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from requests.exceptions import InvalidJSONError

from django_xconversions import claimed, claiming, payload
from django_xconversions.claimed import ClaimedRow
from django_xconversions.client import EventJSON
from django_xconversions.client.transport import json_text
from django_xconversions.models import Conversion, EventTag
from tests.conftest import make_conversions

HASH = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"

texts = st.one_of(
    st.just(""),
    st.just(" "),
    st.sampled_from(
        [HASH, HASH.upper(), f"{HASH}\n", "abc", "192.0.2.1", "::1", "300.1.1.1", "USD", "xx"]
    ),
    # Addresses only Python's ipaddress tells apart.
    st.sampled_from(["2001:db8::1", "1::2::3", "fe80::1%eth0", "::ffff:192.0.2.1", "01.2.3.4"]),
    st.text(max_size=12),
)
rows = st.builds(
    ClaimedRow,
    pk=st.just(1),
    attempts=st.just(0),
    website_tag_id=st.sampled_from(["o87ne", ""]),
    conversion_time=st.sampled_from(
        [
            "2022-02-18T01:14:00.603Z",
            "2022-02-18 01:14:00",
            "",
            "2022-02-18T01:14:00Z",
            "2022-13-45T25:00:00.000Z",
        ]
    ),
    conversion_id=st.text(max_size=8),
    twclid=texts,
    hashed_email=texts,
    hashed_phone=texts,
    ip_address=st.one_of(st.none(), texts),
    user_agent=texts,
    value=st.one_of(
        st.none(),
        st.decimals(allow_nan=False, allow_infinity=True, places=4),
        st.just(Decimal("NaN")),  # PostgreSQL's numeric can hold it
    ),
    currency=st.sampled_from(["", "USD", "JPY", "usd", "XYZ"]),
    number_items=st.one_of(st.none(), st.integers(min_value=-2, max_value=3)),
    description=st.text(max_size=5),
    stored_contents=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "content_id": st.text(max_size=4),
                "content_price": st.one_of(
                    st.none(),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(),
                    st.booleans(),
                    st.text(max_size=4),
                    # As track() stores prices, and text only Decimal reads as a number.
                    st.sampled_from(["9.99", "10.00", "0", "-1.5", "1e3", "NaN", "Infinity"]),
                ),
                "num_items": st.one_of(st.integers(-1, 3), st.booleans(), st.text(max_size=2)),
            },
        ),
        max_size=3,
    ),
)


@seed(20261122)
@hypothesis_settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows)
def test_quick_check_is_never_looser_than_validate(row: ClaimedRow) -> None:
    event, surely_valid = claimed.build_event(row)
    # Compared as JSON: a NaN price is no equal of another NaN.
    expected = payload.conversion_to_event(row, row.website_tag_id)
    assert json.dumps(event, sort_keys=True) == json.dumps(expected, sort_keys=True)
    if surely_valid:
        assert payload.validate(event) == []


@seed(20261130)
@hypothesis_settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows)
def test_event_text_is_what_the_client_writes_of_the_event(row: ClaimedRow) -> None:
    event, surely_valid = claimed.build_event(row)
    text = claimed.wire_event(row)
    # Written only for events that surely pass validate; then byte for byte the body's.
    assert (text is not None) == surely_valid
    if text is not None:
        assert isinstance(text, EventJSON)
        assert text == json_text(event).decode()


@seed(20261201)
@hypothesis_settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    row=rows,
    layout=st.sampled_from(
        [
            {},  # as Django writes JSON (and PostgreSQL's jsonb reads back)
            {"separators": (",", ":")},
            {"ensure_ascii": False},
            {"indent": 1},
        ]
    ),
)
def test_event_text_with_the_stored_contents_sends_what_the_dict_sends(
    row: ClaimedRow, layout: dict[str, Any]
) -> None:
    stored = json.dumps(row.contents, **layout)
    row = row._replace(stored_contents=stored)
    event, surely_valid = claimed.build_event(row)
    text = claimed.wire_event(row)
    assert (text is not None) == surely_valid
    if text is not None:
        # Value for value (a price "10.00" may go as 10.00 where the dict gives 10.0).
        assert json.loads(text) == json.loads(json_text(event))


@pytest.mark.parametrize(
    "stored",
    [
        '[{"content_price": "9.99", "num_items": 2}]',
        '[{"content_price": "014.90"}]',  # no JSON number as it stands
        '[{"content_price": "1e3"}, {"content_price": "5", "n": {"content_price": "7"}}]',
        '[{"content_price": "5", "content_price": "6"}]',  # json.loads keeps the last
        '[{"content_price": "\u0663"}]',  # an Arabic-Indic 3: Decimal reads it
        json.dumps([{"content_name": "x\\", "content_price": "1"}]),
        json.dumps([{"content_name": '{"content_price": "2"}', "content_price": "3"}]),
        json.dumps([{'a": ': '": ', "content_price": 2}]),
        '{"content_price": "4"}',
        '[{"content_price": 12345678901234567890.5, "num_items": 1}]',
    ],
)
def test_stored_contents_text_is_passed_on_only_as_python_reads_it(stored: str) -> None:
    row = ClaimedRow(
        1, 0, "o87ne", "2022-02-18T01:14:00.603Z", "order:1", "click", "", "", None, "",
        None, "", None, "", stored,
    )  # fmt: skip
    event, surely_valid = claimed.build_event(row)
    text = claimed.wire_event(row)
    assert surely_valid and text is not None
    sent = json.loads(text)
    assert sent == json.loads(json_text(event))
    # Prices are numbers, of the value Python converts them to.
    for item, expected in zip(sent["contents"], event["contents"], strict=True):
        assert item.get("content_price") == expected.get("content_price")
        assert not isinstance(item.get("content_price"), str)


def test_event_text_of_hostile_values() -> None:
    row = ClaimedRow(
        1, 0, "o87ne\u2028", "2022-02-18T01:14:00.603Z", "\U0001f600" * 255, "a\"b\\c" * 40,
        HASH, HASH.upper(), "2001:db8::1", "\x00\x1f\u00e9</script>" * 200,
        Decimal("99999999999999.9999"), "JPY", 2**62, "\ud800\t\n" * 100,
        [
            {"content_id": "\u202e", "content_price": "0.0001", "num_items": 1, "x": None},
            {"content_price": 1e308, "content_group_id": "", "nested": {"a": [None, ""]}},
        ],
    )  # fmt: skip
    event, surely_valid = claimed.build_event(row)
    text = claimed.wire_event(row)
    assert surely_valid and text is not None and text.isascii()
    assert text == json_text(event).decode()
    assert json.loads(text) == json.loads(
        json.dumps(payload.conversion_to_event(row, "o87ne\u2028"))
    )


def test_a_typical_row_is_surely_valid() -> None:
    row = ClaimedRow(
        1, 0, "o87ne", "2022-02-18T01:14:00.603Z", "order:1", "click", HASH, "",
        "192.0.2.1", "Mozilla/5.0", Decimal("19.99"), "USD", 2, "",
        [{"content_id": "sku", "content_price": 9.99, "num_items": 2}],
    )  # fmt: skip
    event, surely_valid = claimed.build_event(row)
    assert surely_valid
    assert event["value"] == "19.99" and event["contents"][0]["content_price"] == 9.99


@pytest.mark.parametrize("address", ["2001:db8::1", "::ffff:192.0.2.1", "192.0.2.1"])
def test_a_row_with_any_valid_address_is_surely_valid(address: str) -> None:
    # One shopper in ten or more comes over IPv6: their rows skip the full validation too.
    row = ClaimedRow(
        1, 0, "o87ne", "2022-02-18T01:14:00.603Z", "order:1", "", "", "", address,
        "Mozilla/5.0", None, "", None, "", [],
    )  # fmt: skip
    event, surely_valid = claimed.build_event(row)
    assert surely_valid
    assert event["identifiers"] == [{"ip_address": address, "user_agent": "Mozilla/5.0"}]


@pytest.mark.parametrize(
    "address", ["1::2::3", "300.1.1.1", "01.2.3.4", " 192.0.2.1", "\u0661.1.1.1", "1.2.3.\u0664"]
)
def test_a_row_with_a_malformed_address_is_left_to_validate(address: str) -> None:
    row = ClaimedRow(
        1, 0, "o87ne", "2022-02-18T01:14:00.603Z", "order:1", "click", "", "", address,
        "Mozilla/5.0", None, "", None, "", [],
    )  # fmt: skip
    event, surely_valid = claimed.build_event(row)
    assert not surely_valid
    assert [v.parameter for v in payload.validate(event)] == ["ip_address"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value", [None, Decimal("19.99"), Decimal("20"), Decimal("0.0001"), Decimal("12345678.9999")]
)
def test_rows_read_back_with_the_stored_value_and_contents(
    purchase_tag: EventTag, value: Decimal | None
) -> None:
    (row,) = make_conversions(purchase_tag, 1, value=value)
    contents: list[dict[str, Any]] = [{"content_id": "a", "content_price": 1.5}]
    Conversion.objects.filter(pk=row.pk).update(contents=contents)
    (fetched,) = claimed.fetch(Conversion.objects.filter(pk=row.pk))
    stored = Conversion.objects.get(pk=row.pk)
    assert fetched.value == stored.value
    assert fetched.contents == contents
    assert fetched.conversion_time == payload.format_conversion_time(stored.conversion_time)
    assert isinstance(fetched.conversion_time, str)
    event, _ = claimed.build_event(fetched)
    assert event == payload.conversion_to_event(stored, purchase_tag.website_tag_id)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "contents",
    [
        [{"content_id": "sku-1", "content_price": "14.90", "num_items": 2}],
        [{"content_name": "Caf\u00e9 cr\u00e8me \u2615", "content_price": 3}],
        [{"content_id": "x", "content_price": "10.00", "content_group_id": None}],
    ],
)
def test_claimed_rows_are_written_as_json_text_as_their_dicts_are_sent(
    purchase_tag: EventTag, contents: list[dict[str, Any]]
) -> None:
    # The stored contents' own text, as each database gives it back, is passed on.
    make_conversions(purchase_tag, 3)
    Conversion.objects.update(contents=contents)
    (row, *_) = claiming.claim_rows(
        purchase_tag.pixel_id, 3, due_by=timezone.now(), token=uuid.uuid4(), lease=timezone.now()
    )
    assert isinstance(row.stored_contents, str)
    event, surely_valid = claimed.build_event(row)
    text = claimed.wire_event(row)
    assert surely_valid and text is not None
    assert json.loads(text) == json.loads(json_text(event))
    if contents[0].get("content_price") == "14.90":  # passed on as stored, unquoted
        assert '"content_price": 14.90' in text


@pytest.mark.django_db
def test_rows_read_back_without_time_zone_support(settings: Any, purchase_tag: EventTag) -> None:
    (row,) = make_conversions(purchase_tag, 1)
    settings.USE_TZ = False
    (fetched,) = claimed.fetch(Conversion.objects.filter(pk=row.pk))
    assert isinstance(fetched.conversion_time, dt.datetime)
    event, surely_valid = claimed.build_event(fetched)
    assert not surely_valid and payload.validate(event) == []


def _mutated(text: str, position: int, char: str) -> str:
    position %= len(text)
    return text[:position] + char + text[position + 1 :]


real_times = st.datetimes(
    min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)
).map(lambda moment: payload.format_conversion_time(moment.replace(tzinfo=dt.timezone.utc)))
time_texts = st.one_of(
    real_times,
    st.builds(
        _mutated,
        real_times,
        st.integers(min_value=0, max_value=23),
        st.sampled_from([*"0123456789", "T", ":", "-", ".", "Z", " ", "\n", "\u0663", "\uff11"]),
    ),
    st.sampled_from(
        [
            "2022-02-30T00:00:00.000Z",
            "2022-02-29T00:00:00.000Z",
            "2024-02-29T00:00:00.000Z",
            "0000-01-01T00:00:00.000Z",
            "2022-02-18T24:00:00.000Z",
            "2022-02-18T23:59:60.000Z",
            "2022-02-18T01:14:00Z",
            "2022-02-18T01:14:00.603Z\n",
        ]
    ),
    st.text(max_size=26),
)


@seed(20261130)
@hypothesis_settings(max_examples=3000, deadline=None)
@given(text=time_texts)
def test_quick_time_check_is_never_looser_than_valid_time(text: str) -> None:
    if claimed.surely_valid_time(text):
        assert payload.valid_time(text)


@seed(20261130)
@hypothesis_settings(max_examples=500, deadline=None)
@given(text=real_times)
def test_quick_time_check_knows_every_time_the_engine_formats(text: str) -> None:
    assert claimed.surely_valid_time(text) == payload.valid_time(text) is True


@pytest.mark.parametrize(
    "text",
    [
        '[{"content_price": "9.99", "num_items": 2}]',
        ' [{"a": 1}] ',
        '[{"a": "\\u00e9\\ud800"}]\n',
        '{"content_id": "x"}',
        "1",
        '"text"',
        "[]  ",
        "[1] [2]",
        "\ufeff[1]",
        "[1",
        "NaN",
    ],
)
def test_contents_text_reads_as_json_loads_reads_it(text: str) -> None:
    def read(reader: Any) -> Any:
        try:
            return ("ok", json.dumps(reader(text)))
        except ValueError as exc:
            return ("error", type(exc).__name__)

    def by_json_loads(raw: str) -> Any:
        loaded = json.loads(raw)
        return loaded if isinstance(loaded, list) else loaded and [loaded]

    assert read(claimed.json_contents) == read(by_json_loads)


def test_stored_contents_as_django_writes_them_go_out_as_they_are() -> None:
    stored = json.dumps([{"content_id": "sku-1", "content_price": "9.90", "num_items": 2}])
    row = ClaimedRow(
        1, 0, "o87ne", "2022-02-18T01:14:00.603Z", "order:1", "click", "", "", None, "",
        None, "", None, "", stored,
    )  # fmt: skip
    text = claimed.wire_event(row)
    assert text is not None
    assert text.endswith(
        ',"contents":[{"content_id": "sku-1", "content_price": 9.90, "num_items": 2}]}'
    )


@pytest.mark.parametrize("stored", [True, False])
def test_contents_json_cannot_carry_are_left_to_the_dict(stored: bool) -> None:
    contents = [{"content_name": float("nan"), "content_price": 1, "extra": {"x": -math.inf}}]
    text = json.dumps(contents)
    row = ClaimedRow(
        1, 0, "o87ne", "2022-02-18T01:14:00.603Z", "order:1", "click", "", "", None, "",
        None, "", None, "", text if stored else contents,
    )  # fmt: skip
    # Not written as text: the dict's path refuses it when sending, as it always did.
    assert claimed.wire_event(row) is None
    with pytest.raises(InvalidJSONError, match="Out of range float"):
        json_text(claimed.build_event(row)[0])


@pytest.mark.django_db
def test_claimed_rows_hold_nothing_the_garbage_collector_tracks(purchase_tag: EventTag) -> None:
    # Rows of the batches in flight that held parsed contents (a list, its dicts) were
    # four to seven tracked objects each: enough to set off a full collection every few
    # batches.
    make_conversions(purchase_tag, 3)
    Conversion.objects.update(contents=[{"content_id": "sku-1", "content_price": "1.50"}])
    rows = claiming.claim_rows(
        purchase_tag.pixel_id, 3, due_by=timezone.now(), token=uuid.uuid4(), lease=timezone.now()
    )
    assert len(rows) == 3
    assert not any(gc.is_tracked(field) for row in rows for field in row)
    assert rows[0].contents == [{"content_id": "sku-1", "content_price": "1.50"}]


def test_checking_every_time_of_a_day_keeps_no_state_per_time() -> None:
    # A cache per clock time grew by some 10 MB over a backlog spread across a day.
    day = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    before = _cached_entries()
    for second in range(0, 86_400, 3):
        moment = day + dt.timedelta(seconds=second, milliseconds=second % 1000)
        assert claimed.surely_valid_time(payload.format_conversion_time(moment))
    assert _cached_entries() - before < 100


def _cached_entries() -> int:
    caches = [getattr(claimed, name) for name in dir(claimed)]
    return sum(cache.cache_info().currsize for cache in caches if hasattr(cache, "cache_info"))
