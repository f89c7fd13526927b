"""Claimed conversions on the sending hot path: read as plain tuples, turned into events.

A batch of 500 is read, built and checked in a few milliseconds only if no model
instance, no field converter and no generic validation runs per row. Rows are read with
the database's own text for the time (sqltime.py) and the raw value and contents; an
event is checked here against the rules in a form that is cheap for typed rows, and only
an event this check doubts goes through ``payload.validate`` for X's exact messages.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from math import isfinite
from typing import Any, NamedTuple

from django.db.models import ExpressionWrapper, F, FloatField, QuerySet, TextField

from django_xconversions.currencies import ISO_4217_CODES
from django_xconversions.identifiers import SHA256_HEX, enough_to_match
from django_xconversions.payload import (
    build_contents,
    conversion_to_event,
    decimal_text,
    is_ip,
    valid_time,
)
from django_xconversions.sqltime import conversion_time_column

# Stored values have at most this many decimals (Conversion.value).
VALUE_PLACES = 4


class ClaimedRow(NamedTuple):
    """A claimed conversion, with what ``payload.conversion_to_event`` reads."""

    pk: int
    attempts: int
    website_tag_id: str
    # X's text when the database formatted it (sqltime.py), else a datetime.
    conversion_time: dt.datetime | str
    conversion_id: str
    twclid: str
    hashed_email: str
    hashed_phone: str
    ip_address: str | None
    user_agent: str
    value: Decimal | None
    currency: str
    number_items: int | None
    description: str
    contents: list[dict[str, Any]]


def fetch(rows: QuerySet[Any]) -> list[ClaimedRow]:
    """Read ``rows`` (a Conversion queryset) as ClaimedRow tuples."""
    fetched = rows.annotate(
        x_time=conversion_time_column(),
        # No field converters: the value arrives as the driver gives it (a float on
        # SQLite, a Decimal on PostgreSQL), the contents as JSON text.
        x_value=ExpressionWrapper(F("value"), output_field=FloatField()),
        x_contents=ExpressionWrapper(F("contents"), output_field=TextField()),
    ).values_list(
        "pk",
        "attempts",
        "event_tag__website_tag_id",
        "x_time",
        "conversion_id",
        "twclid",
        "hashed_email",
        "hashed_phone",
        "ip_address",
        "user_agent",
        "x_value",
        "currency",
        "number_items",
        "description",
        "x_contents",
    )
    return [
        ClaimedRow._make((*row[:10], decimal_value(row[10]), *row[11:14], json_contents(row[14])))
        for row in fetched
    ]


def decimal_value(raw: Any) -> Decimal | None:
    if raw is None or isinstance(raw, Decimal):
        return raw
    return _real_decimal(raw)


@lru_cache(maxsize=4096)
def _real_decimal(raw: float) -> Decimal:
    # SQLite keeps decimals as REAL: round to the field's places, as Django's converter does.
    # (Cached: a shop's values repeat, and Decimals are immutable.)
    return Decimal(f"{raw:.{VALUE_PLACES}f}")


def _value_text(value: Decimal) -> tuple[str, bool]:
    """X's text for a value and whether it is finite (cached; a signalling NaN cannot be
    hashed, and is not finite)."""
    try:
        return _cached_value_text(value)
    except TypeError:
        return decimal_text(value), False


@lru_cache(maxsize=4096)
def _cached_value_text(value: Decimal) -> tuple[str, bool]:
    return decimal_text(value), value.is_finite()


def surely_valid_time(text: str) -> bool:
    """True only if ``payload.valid_time(text)``, for X's full form
    ``YYYY-MM-DDTHH:MM:SS.sssZ`` (False: not sure, validate it).

    The rule is checked once per distinct date, clock time and millisecond (a batch's
    rows share dates; there are only 86,400 clock times and 1,000 milliseconds): regex
    and calendar checks apply to each part on its own, so the parts' verdicts are the
    whole's.
    """
    return (
        len(text) == 24
        and text[10] == "T"
        and text[19] == "."
        and text[23] == "Z"
        and _valid_date(text[:10])
        and _valid_clock(text[11:19])
        and _valid_millis(text[20:23])
    )


@lru_cache(maxsize=4096)
def _valid_date(date: str) -> bool:
    return valid_time(f"{date}T00:00:00.000Z")


@lru_cache(maxsize=100_000)
def _valid_clock(clock: str) -> bool:
    return valid_time(f"2000-01-01T{clock}.000Z")


@lru_cache(maxsize=2048)
def _valid_millis(millis: str) -> bool:
    return valid_time(f"2000-01-01T00:00:00.{millis}Z")


def json_contents(raw: Any) -> list[dict[str, Any]]:
    if raw is None or raw in ("[]", "null", ""):
        return []
    if isinstance(raw, str):
        loaded = _json_value(raw)
        return loaded if isinstance(loaded, list) else loaded and [loaded]
    return list(raw)


_scan = json.JSONDecoder().raw_decode


def _json_value(text: str) -> Any:
    """``json.loads(text)``, quicker for text the database wrote (no surrounding
    whitespace): json.loads' own checks cost half as much again as the parse of a
    few contents items."""
    try:
        value, end = _scan(text)
    except json.JSONDecodeError:
        end = -1
    return value if end == len(text) else json.loads(text)


def build_event(row: ClaimedRow) -> tuple[dict[str, Any], bool]:
    """The API dict for ``row`` and whether it surely passes ``payload.validate``.

    False means "not sure": the caller runs the full validation for X's messages. The
    checks here are never looser than validate's (a test holds them to that).
    """
    (_, _, event_id, time, conversion_id, twclid, email, phone, ip, agent, value, currency,
     number_items, description, contents) = row  # fmt: skip
    if type(time) is not str:
        return conversion_to_event(row, event_id), False
    ok = bool(event_id) and surely_valid_time(time)
    identifiers: list[dict[str, str]] = []
    if twclid:
        identifiers.append({"twclid": twclid})
    if email:
        identifiers.append({"hashed_email": email})
        ok = ok and SHA256_HEX.match(email) is not None
    if phone:
        identifiers.append({"hashed_phone_number": phone})
        ok = ok and SHA256_HEX.match(phone) is not None
    if ip:
        identifiers.append({"ip_address": ip, "user_agent": agent} if agent else {"ip_address": ip})
        # validate's own test, IPv6 included (a dotted quad costs one regex).
        ok = ok and is_ip(ip)
    elif agent:
        identifiers.append({"user_agent": agent})
    event: dict[str, Any] = {
        "conversion_time": time,
        "event_id": event_id,
        "identifiers": identifiers,
        "conversion_id": conversion_id,
    }
    # A well-formed hash (checked above) is an identifier X matches on by itself.
    if ok and not (email or phone):
        ok = enough_to_match(twclid=twclid, ip_address=ip, user_agent=agent)
    if value is not None:
        text, finite = _value_text(value)
        event["value"] = text
        ok = ok and finite
    if currency:
        event["price_currency"] = currency
        ok = ok and currency in ISO_4217_CODES
    if number_items is not None:
        event["number_items"] = number_items
        ok = ok and number_items > 0
    if description:
        event["description"] = description
    if contents:
        event["contents"], plain = _wire_contents(contents)
        ok = ok and plain
    return event, ok


def _wire_contents(contents: list[Any]) -> tuple[list[dict[str, Any]], bool]:
    """``payload.build_contents(contents)``, and whether every item surely passes
    validate's content rules, in one pass."""
    wire = []
    plain = True
    for item in contents:
        if type(item) is not dict:
            return build_contents(contents), False
        values = item.values()
        if None in values or "" in values:
            entry = {key: value for key, value in item.items() if value is not None and value != ""}
        else:
            entry = item.copy()
        if "content_price" in entry:
            price = entry["content_price"] = _price_number(entry["content_price"])
            # Exactly int or float (not bool); an int is always finite.
            plain = plain and (type(price) is int or (type(price) is float and isfinite(price)))
        if "num_items" in entry:
            count = entry["num_items"]
            plain = plain and type(count) is int and count > 0
        wire.append(entry)
    return wire, plain


def _price_number(value: Any) -> Any:
    # As payload's: X wants a JSON number; text stays text for validate to report.
    if type(value) is str:
        return _price_of_text(value)
    if isinstance(value, Decimal) and not value.is_snan():
        return float(value)
    return value


@lru_cache(maxsize=4096)
def _price_of_text(text: str) -> Any:
    # Cached: a shop's prices repeat (and a float is immutable). Text that is no number a
    # float can hold ("sNaN") stays text: validate fails that row alone.
    try:
        return float(Decimal(text))
    except (InvalidOperation, ValueError):
        return text
