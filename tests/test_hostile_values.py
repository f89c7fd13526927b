"""Hostile values: track() raises only ValidationError keyed by field, a bound model's save
always succeeds (the conversion is stored failed with the field and the rule), and neither
poisons the caller's transaction. Runs on PostgreSQL (the default) and on SQLite
(XCONVERSIONS_TEST_DB=sqlite)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.views.debug import ExceptionReporter
from hypothesis import HealthCheck, given, seed
from hypothesis import event as outcome
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_xconversions import sources, track, tracking
from django_xconversions.models import Conversion, EventTag
from tests.conftest import configure
from tests.shop.models import Order

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe.private@example.com"
PHONE = "+14155550134"
PHONE_AS_TYPED = "415 555 0134"
UTC = dt.timezone.utc

# (argument, value, the field the error is keyed by)
HOSTILE_TRACK = [
    ("value", Decimal("1e14"), "value"),
    ("value", 10**14, "value"),
    ("value", "99999999999999.99999", "value"),  # rounds to 1e14
    ("value", "99999999999999.99", "value"),  # SQLite would read it back as 1e14
    ("value", 10**5000, "value"),  # str() of it raises ValueError
    ("value", float("inf"), "value"),
    ("value", "1E+100000", "value"),
    ("value", Decimal("sNaN"), "value"),
    ("value", True, "value"),
    ("number_items", 2**31, "number_items"),
    ("number_items", 2**100, "number_items"),
    ("number_items", 1.5, "number_items"),
    ("conversion_id", "x" * 256, "conversion_id"),
    ("conversion_id", "order\x00:1", "conversion_id"),
    ("conversion_id", "order\ud800:1", "conversion_id"),
    ("conversion_id", 10**5000, "conversion_id"),
    ("description", "paid\x00", "description"),
    ("description", "paid \udfff", "description"),
    ("description", "x" * 1001, "description"),
    ("user_agent", "Mozilla/5.0\x00", "user_agent"),
    ("user_agent", "Mozilla/5.0 \ud800", "user_agent"),
    ("user_agent", 5, "user_agent"),
    ("contents", 5, "contents"),
    ("contents", "abc", "contents"),
    ("contents", {"content_id": "1"}, "contents"),
    ("contents", [{"content_name": "a\x00b"}], "contents[0].content_name"),
    ("contents", [{"content_id": "\ud800"}], "contents[0].content_id"),
    ("contents", [{"content_name": "x" * 1001}], "contents[0].content_name"),
    ("contents", [{1: "x"}], "contents[0]"),
    ("contents", [{"num_items": 2**31}], "contents[0].num_items"),
    ("contents", [{"content_price": "1e20"}], "contents[0].content_price"),
    ("contents", [{"content_price": float("nan")}], "contents[0].content_price"),
    ("conversion_time", "2024-01-01T00:00:00Z", "conversion_time"),
    ("conversion_time", 1700000000, "conversion_time"),
    ("conversion_time", dt.date(2024, 1, 1), "conversion_time"),
    ("conversion_time", dt.datetime(1, 1, 1), "conversion_time"),
    ("conversion_time", dt.datetime(1, 1, 1, tzinfo=UTC), "conversion_time"),
    ("conversion_time", dt.datetime(9999, 12, 31, 23, 59), "conversion_time"),
    ("conversion_time", dt.datetime(9999, 12, 31, 23, 59, tzinfo=UTC), "conversion_time"),
    ("conversion_time", dt.datetime(1999, 12, 31, 23, 59, tzinfo=UTC), "conversion_time"),
    ("email", "jane\x00@example.com", "email"),
    ("email", "jane@\ud800example.com", "email"),
    ("email", 5, "email"),
    ("phone", "+1415\x005550134", "phone"),
    ("phone", "\ud800", "phone"),
    ("currency", 5, "currency"),
    ("currency", "\ud800SD", "currency"),
    ("ip_address", "1.2.3.4\x00", "ip_address"),
    ("twclid", "click\ud800", "twclid"),
    ("source", object(), "source"),
    ("source", Order(email="unsaved@example.com"), "source"),
]


def ids(case: tuple[str, Any, str]) -> str:
    # Without memory addresses: every pytest-xdist worker must collect the same test ids.
    try:
        shown = re.sub(r" at 0x[0-9a-f]+", "", repr(case[1]))[:30]
    except ValueError:  # an int too long to print
        shown = type(case[1]).__name__
    return f"{case[0]}={shown}"


@pytest.mark.parametrize("case", HOSTILE_TRACK, ids=[ids(c) for c in HOSTILE_TRACK])
def test_track_raises_only_validation_errors_keyed_by_field(
    tag: EventTag, case: tuple[str, Any, str]
) -> None:
    argument, value, field = case
    with transaction.atomic():  # a caller's transaction: it must stay usable
        with pytest.raises(ValidationError) as caught:
            track("purchase", **{"twclid": "click1", argument: value})
        assert Conversion.objects.count() == 0
    assert field in caught.value.message_dict, caught.value.message_dict
    assert all(caught.value.message_dict[field])


@pytest.mark.parametrize(
    "event", ["x" * 65, "has space", "bad\x00", "\ud800", 5, "", None], ids=repr
)
def test_an_event_key_that_no_tag_could_have_is_an_error(tag: EventTag, event: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        track(event, twclid="click1")
    assert list(caught.value.message_dict) == ["event"]
    assert not Conversion.objects.exists()


@pytest.mark.parametrize(
    ("when", "rule"),
    [
        ("2024-01-01", "a datetime (got str)"),
        (1700000000, "a datetime (got int)"),
        (dt.date(2024, 1, 1), "a datetime (got date)"),
        (dt.datetime(1, 1, 1), "between 2000-01-01 and 2099-12-31"),
        (dt.datetime(9999, 12, 31), "between 2000-01-01 and 2099-12-31"),
    ],
)
def test_conversion_time_messages_say_what_is_accepted(tag: EventTag, when: Any, rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        track("purchase", twclid="click1", conversion_time=when)
    assert rule in caught.value.message_dict["conversion_time"][0]


def test_the_edges_of_the_accepted_window_are_stored(tag: EventTag) -> None:
    first = dt.datetime(2000, 1, 1, tzinfo=UTC)
    last = dt.datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert track("purchase", twclid="a", conversion_time=first).conversion_time == first
    assert track("purchase", twclid="b", conversion_time=last).conversion_time == last


def test_track_accepts_the_largest_values_the_columns_hold(tag: EventTag) -> None:
    row = track(
        "purchase",
        twclid="click1",
        value=Decimal("99999999999999.9"),
        number_items=2**31 - 1,
        conversion_id="x" * 255,
        description="d" * 1000,
        contents=[{"content_name": "n" * 1000, "num_items": 2**31 - 1}],
    )
    stored = Conversion.objects.get(pk=row.pk)
    assert stored.value == Decimal("99999999999999.9") and stored.number_items == 2**31 - 1


# -- bound models through save() ----------------------------------------------------------

HOSTILE: dict[str, Any] = {}


def _reads(key: str, default: Any = None) -> Any:
    def reader(order: Order) -> Any:
        value = HOSTILE.get(key, default)
        if isinstance(value, BaseException):
            raise value
        return value() if key == "contents" and callable(value) else value

    reader.__qualname__ = f"read_{key}"
    return reader


@pytest.fixture
def hostile_source(settings: Any, tag: EventTag) -> Iterator[dict[str, Any]]:
    """shop.Order bound with readers that return whatever HOSTILE holds."""
    original = settings.XCONVERSIONS
    configure(
        settings,
        SOURCES=[
            {
                "model": "shop.Order",
                "event": "purchase",
                "when": {"field": "status", "value": "paid"},
                "email": _reads("email", EMAIL),
                "phone": _reads("phone", PHONE),
                "value": _reads("value"),
                "currency": _reads("currency"),
                "number_items": _reads("number_items"),
                "contents": _reads("contents"),
                "description": _reads("description"),
                "conversion_id": _reads("conversion_id"),
            }
        ],
    )
    sources.connect()
    HOSTILE.clear()
    try:
        yield HOSTILE
    finally:
        HOSTILE.clear()
        settings.XCONVERSIONS = original
        sources.connect()


BOUND_CASES = [
    ("value", Decimal("1e14")),
    ("value", 10**20),
    ("number_items", 2**31),
    ("conversion_id", "x" * 256),
    ("conversion_id", "order\x00"),
    ("contents", lambda: 5),  # a contents callable that returns an int
    ("contents", [{"content_name": "a\ud800"}]),
    ("description", "\x00"),
    ("email", "jane@\ud800example.com"),
    ("phone", "\x00"),
    ("currency", 5),
    ("contents", RuntimeError("the reader itself failed")),
]


@pytest.mark.parametrize("case", BOUND_CASES, ids=[ids((*c, "")) for c in BOUND_CASES])
def test_a_bound_order_always_saves_and_the_conversion_is_failed_with_the_field(
    hostile_source: dict[str, Any], case: tuple[str, Any]
) -> None:
    field, value = case
    hostile_source[field] = value
    with transaction.atomic():
        order = Order.objects.create(email=EMAIL, total=Decimal("5"), status="paid")
        assert Order.objects.filter(pk=order.pk).count() == 1  # still usable inside
    row = Conversion.objects.get()
    assert Order.objects.filter(pk=order.pk).exists()
    assert (row.status, row.error_reason, row.event_key) == ("failed", "invalid", "purchase")
    assert row.last_error.startswith(f"{field}")
    assert row.conversion_id == f"shop.order:{order.pk}" or field != "conversion_id"
    assert EMAIL not in row.last_error and "\x00" not in row.last_error


def test_an_unexpected_database_error_never_breaks_the_save(
    hostile_source: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    real_store_many = tracking.store_many
    calls: list[int] = []

    def fails_once(conversions: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table")  # a real error in the savepoint
        real_store_many(conversions)

    monkeypatch.setattr(tracking, "store_many", fails_once)
    with caplog.at_level(logging.ERROR), transaction.atomic():
        order = Order.objects.create(email=EMAIL, phone=PHONE, total=Decimal("5"), status="paid")
        assert Order.objects.filter(pk=order.pk).exists()  # the outer transaction is fine
    row = Conversion.objects.get()
    assert (row.status, row.error_reason) == ("failed", "invalid")
    assert "could not be stored" in row.last_error
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"shop.order:{order.pk}" in logged
    assert EMAIL not in logged and "4155550134" not in logged


@pytest.mark.postgres
def test_a_real_data_error_on_postgresql_is_contained(
    hostile_source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_track = tracking.track

    def unchecked(*args: Any, **kwargs: Any) -> Conversion:
        row = real_track(*args, **kwargs)
        row.value = Decimal("1e15")  # past the checks: numeric field overflow
        return row

    monkeypatch.setattr(tracking, "track", unchecked)
    with transaction.atomic():
        order = Order.objects.create(email=EMAIL, total=Decimal("5"), status="paid")
        order.product_name = "still usable"
        order.save()
    assert Order.objects.get().product_name == "still usable"
    assert Conversion.objects.get().status == "failed"


def test_a_database_error_in_the_fallback_too_is_only_logged(
    hostile_source: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def always_fails(conversions: Any) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(tracking, "store_many", always_fails)
    with caplog.at_level(logging.ERROR):
        order = Order.objects.create(email=EMAIL, total=Decimal("5"), status="paid")
    assert Order.objects.filter(pk=order.pk).exists() and not Conversion.objects.exists()
    assert "DatabaseError" in caplog.text and EMAIL not in caplog.text


# -- error reports never carry raw identifiers -------------------------------------------


def _report() -> str:
    return ExceptionReporter(None, *sys.exc_info()).get_traceback_html()


def _assert_no_raw_identifiers(html: str) -> None:
    for raw in (EMAIL, PHONE, PHONE[1:], PHONE_AS_TYPED):
        assert raw not in html


def test_a_crash_inside_track_shows_no_raw_identifiers(
    tag: EventTag, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(conversions: Any) -> None:
        raise RuntimeError("storage crashed")

    monkeypatch.setattr(tracking, "store_many", crash)
    try:
        track("purchase", email=EMAIL, phone=PHONE_AS_TYPED)
    except RuntimeError:
        html = _report()
    assert "storage crashed" in html and "********" in html
    _assert_no_raw_identifiers(html)


def test_a_crash_inside_identifier_hashing_shows_no_raw_identifiers(
    tag: EventTag, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_xconversions import identifiers

    def crash(phone: str, region: str | None = None) -> str:
        raise RuntimeError("phone library crashed")

    monkeypatch.setattr(identifiers, "hash_phone", crash)
    try:
        track("purchase", email=EMAIL, phone=PHONE)
    except RuntimeError:
        html = _report()
    assert "phone library crashed" in html
    _assert_no_raw_identifiers(html)


def test_a_crash_while_recording_a_bound_model_shows_no_raw_identifiers(
    hostile_source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    order = Order.objects.create(email=EMAIL, phone=PHONE, total=Decimal("5"))
    source = sources.configured()[0]

    def crash(conversion: Conversion, **kwargs: Any) -> None:
        raise RuntimeError("storage crashed")

    monkeypatch.setattr(tracking, "store", crash)
    try:
        sources.record(source, order)
    except RuntimeError:
        html = _report()
    assert "storage crashed" in html and "********" in html
    _assert_no_raw_identifiers(html)


# -- property: any value gives a row or a ValidationError ---------------------------------

# Every Unicode code point, lone surrogates and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
long_text = st.integers(250, 1100).map(lambda n: "x" * n)
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, 10**14, 10**20, 10**5000, -1, 0]),
    st.floats(),
    st.decimals(),
    any_text,
    long_text,
    st.binary(max_size=8),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.dates(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
content_items = st.lists(
    st.dictionaries(
        st.sampled_from(sorted(tracking.CONTENT_KEYS)) | any_text, anything, max_size=4
    ),
    max_size=3,
)
ARGUMENTS = {
    "email": st.one_of(st.emails(), anything),
    "phone": st.one_of(st.just(PHONE), st.from_regex(r"\+1[2-9]\d{9}", fullmatch=True), anything),
    "twclid": st.one_of(st.just("click1"), anything),
    "ip_address": st.one_of(st.sampled_from(["203.0.113.9", "2001:db8::1"]), anything),
    "user_agent": st.one_of(st.just("Mozilla/5.0"), anything),
    "value": st.one_of(st.decimals(places=4, max_value=10**15), anything),
    "currency": st.one_of(st.sampled_from(["USD", "eur", "XXX"]), anything),
    "number_items": st.one_of(st.integers(0, 2**32), anything),
    "contents": st.one_of(content_items, anything),
    "conversion_id": st.one_of(any_text, anything),
    "conversion_time": st.one_of(
        st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2110, 1, 1)),
        st.datetimes(timezones=st.timezones()),
        anything,
    ),
    "description": st.one_of(any_text, long_text, anything),
}
printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40)
PLAUSIBLE = {
    "email": st.emails(),
    "phone": st.from_regex(r"\+1[2-9]\d{2}[2-9]\d{6}", fullmatch=True),
    "twclid": st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True),
    "ip_address": st.ip_addresses().map(str),
    "user_agent": printable,
    "value": st.decimals(0, 10**13, places=2),
    "currency": st.sampled_from(["USD", "EUR", "jpy"]),
    "number_items": st.integers(1, 1000),
    "contents": st.lists(
        st.fixed_dictionaries(
            {"content_id": printable},
            optional={
                "content_price": st.decimals(0, 10**6, places=2),
                "num_items": st.integers(1, 9),
            },
        ),
        max_size=2,
    ),
    "conversion_id": printable,
    "conversion_time": st.datetimes(dt.datetime(2001, 1, 1), dt.datetime(2098, 1, 1))
    | st.datetimes(dt.datetime(2001, 1, 1), dt.datetime(2098, 1, 1), timezones=st.timezones()),
    "description": st.text(max_size=100),
}
PROPERTY = hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def draw_arguments(data: st.DataObject) -> dict[str, Any]:
    """Plausible values for some arguments and anything at all for up to two others, so
    both the storing path and every rule are reached."""
    arguments = data.draw(st.fixed_dictionaries({}, optional=PLAUSIBLE), label="plausible")
    for name in data.draw(st.sets(st.sampled_from(sorted(ARGUMENTS)), max_size=2), label="odd"):
        arguments[name] = data.draw(ARGUMENTS[name], label=name)
    return arguments


@seed(12)
@PROPERTY
@given(
    event=st.sampled_from(["purchase", "purchse", ""]).flatmap(
        lambda e: st.just(e) if e else anything
    ),
    data=st.data(),
)
def test_any_track_arguments_give_a_stored_row_or_a_validation_error(
    tag: EventTag, event: Any, data: st.DataObject
) -> None:
    arguments = {"twclid": "click1", **draw_arguments(data)}
    before = Conversion.objects.count()
    try:
        with transaction.atomic():
            row = track(event, **arguments)
    except ValidationError as exc:
        assert exc.message_dict and all(exc.message_dict.values())
        assert Conversion.objects.count() == before
        outcome("ValidationError")
        return
    stored = Conversion.objects.get(pk=row.pk)  # and it reads back
    assert stored.status in ("pending", "held")
    outcome(f"stored {stored.status}")


@seed(13)
@PROPERTY
@given(data=st.data())
def test_any_values_of_a_bound_model_never_break_its_save(
    hostile_source: dict[str, Any], data: st.DataObject
) -> None:
    values = draw_arguments(data)
    hostile_source.clear()
    hostile_source.update({k: v for k, v in values.items() if k in sources.READABLE})
    before = Conversion.objects.count()
    with transaction.atomic():
        order = Order.objects.create(email="a@example.com", total=Decimal("5"), status="paid")
    assert Order.objects.filter(pk=order.pk).exists()  # saved, and the connection is usable
    added = Conversion.objects.filter(source_id=str(order.pk))
    if Conversion.objects.count() == before:
        # Only a repeat of a stored conversion_id adds nothing (ON CONFLICT DO NOTHING).
        assert Conversion.objects.filter(conversion_id=values.get("conversion_id")).exists()
        return
    row = added.get()
    assert row.status in ("pending", "held", "failed")
    outcome(f"stored {row.status}")
    if row.status == "failed":
        assert row.error_reason == "invalid" and row.last_error
