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
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from math import isfinite
from typing import Any, NamedTuple, cast

from django.db.models import ExpressionWrapper, F, FloatField, QuerySet, TextField

from django_xconversions.client import EventJSON
from django_xconversions.currencies import ISO_4217_CODES
from django_xconversions.identifiers import enough_to_match, is_sha256_hex
from django_xconversions.models import EVENT_FIELDS, Conversion
from django_xconversions.payload import (
    ConversionFields,
    build_contents,
    build_identifiers,
    conversion_to_event,
    decimal_text,
    format_conversion_time,
    is_ip,
    valid_time,
)
from django_xconversions.sqltime import conversion_time_column

# Stored values have at most this many decimals (Conversion.value).
VALUE_PLACES = 4
# A price in text that is a JSON number as it stands (no sign, exponent, leading zero or
# other digits than ASCII's).
JSON_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
# A price in text under its key, as Django and PostgreSQL write JSON.
PRICE_KEY = '"content_price": "'
# HH:MM:SS.sss of a valid time (no cache by clock time: a cache of the day's 86,400
# would grow with the backlog's spread of times).
CLOCK_MILLIS = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}")


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
    # The contents as stored: the JSON text the database gives (passed on as it is where
    # it can be), or a list. Parsed only where an event is built: a row holding parsed
    # contents is tracked by the cyclic garbage collector, and with the batches in
    # flight that is enough for full collections every few batches.
    stored_contents: str | list[Any] | None

    @property
    def contents(self) -> list[dict[str, Any]]:
        return json_contents(self.stored_contents)


class StoredRow(NamedTuple):
    """A claimed conversion whose event was written as X's text when it was recorded
    (Conversion.wire_text, see ``wire_text_of``): nothing else of it is read to send it."""

    pk: int
    attempts: int
    website_tag_id: str
    wire_text: str


# A claimed conversion as the claim reads it.
Claimed = ClaimedRow | StoredRow


# Fields read through the annotations below rather than as stored.
_READ_AS = {"conversion_time": "x_time", "value": "x_value", "contents": "x_contents"}


def fetch(rows: QuerySet[Any]) -> list[Claimed]:
    """Read ``rows`` (a Conversion queryset) as the claim returns them: a StoredRow for a
    row with its event's text, else a ClaimedRow of its fields."""
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
        *(_READ_AS.get(name, name) for name in EVENT_FIELDS),
        "wire_text",
    )
    return [
        StoredRow(row[0], row[1], row[2] or "", row[15])
        if row[15]
        else ClaimedRow._make((*row[:10], decimal_value(row[10]), *row[11:15]))
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

    The date is checked once per distinct date (a batch's rows share dates), the clock
    time and milliseconds by a pattern of ASCII digits in range: regex and calendar
    checks apply to each part on its own, so the parts' verdicts are the whole's.
    """
    return (
        len(text) == 24
        and text[10] == "T"
        and text[23] == "Z"
        and _valid_date(text[:10])
        and CLOCK_MILLIS.fullmatch(text, 11, 23) is not None
    )


@lru_cache(maxsize=4096)
def _valid_date(date: str) -> bool:
    return valid_time(f"{date}T00:00:00.000Z")


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
     number_items, description, _) = row  # fmt: skip
    if type(time) is not str:
        return conversion_to_event(row, event_id), False
    event: dict[str, Any] = {
        "conversion_time": time,
        "event_id": event_id,
        "identifiers": build_identifiers(
            twclid=twclid,
            hashed_email=email,
            hashed_phone_number=phone,
            ip_address=ip or "",
            user_agent=agent,
        ),
        "conversion_id": conversion_id,
    }
    if value is not None:
        event["value"] = _value_text(value)[0]
    if currency:
        event["price_currency"] = currency
    if number_items is not None:
        event["number_items"] = number_items
    if description:
        event["description"] = description
    plain = True
    contents = row.contents
    if contents:
        event["contents"], plain, _ = _wire_contents(contents)
    return event, plain and bool(event_id) and _surely_valid(row)


def wire_event(row: ClaimedRow) -> EventJSON | None:
    """The JSON text ``client.json_text`` writes of ``build_event(row)``'s event, byte for
    byte, when that event surely passes ``payload.validate``; None when not sure (build
    and validate it then). Written straight from the row's fields, without the dict: half
    the CPU of building the dict and serialising it, on every event of every batch."""
    if not row.website_tag_id:
        return None
    members = wire_members(row)
    return None if members is None else with_event_id(members, row.website_tag_id)


# Where the event_id goes into an event's text without it: after the first member, the
# conversion time, which in X's form (surely_valid_time) is always 24 ASCII characters.
EVENT_ID_AT = len('{"conversion_time":""') + 24


def with_event_id(members: str, event_id: str) -> EventJSON:
    """An event's text from ``wire_members``' text and the event tag's id."""
    return EventJSON(
        f'{members[:EVENT_ID_AT]},"event_id":{_quote(event_id)}{members[EVENT_ID_AT:]}'
    )


def stored_event(row: StoredRow) -> EventJSON:
    """The event as its text was written when it was recorded, with the tag's id."""
    return with_event_id(row.wire_text, row.website_tag_id)


def wire_text_of(conversion: ConversionFields) -> str | None:
    """What Conversion.wire_text holds for ``conversion`` about to be written: its event's
    text but for the event_id, from the values as the database will return them; None
    when the event does not surely pass ``payload.validate`` (it is checked when sent)."""
    when = conversion.conversion_time
    contents = conversion.contents
    row = ClaimedRow(
        0,
        0,
        "",
        format_conversion_time(when) if isinstance(when, dt.datetime) else when,
        conversion.conversion_id,
        conversion.twclid,
        conversion.hashed_email,
        conversion.hashed_phone,
        _stored_address(conversion.ip_address),
        conversion.user_agent,
        conversion.value,
        conversion.currency,
        conversion.number_items,
        conversion.description,
        # As the JSON field writes it, so that it is read back as this text (SQLite).
        json.dumps(contents) if contents else None,
    )
    return wire_members(row)


_ADDRESS_FIELD = Conversion._meta.get_field("ip_address")


def _stored_address(address: str | None) -> str | None:
    # IPv6 is stored (and read back) in its compressed form.
    return cast("str | None", _ADDRESS_FIELD.get_prep_value(address))


def wire_members(row: ClaimedRow) -> str | None:
    """``wire_event``'s text without the event_id member; None when not sure."""
    (_, _, _, time, conversion_id, twclid, email, phone, ip, agent, value, currency,
     number_items, description, stored) = row  # fmt: skip
    if type(time) is not str or not _surely_valid(row):
        return None
    contents_json = ""
    contents = row.contents
    if contents:
        wire_contents, plain, text_prices = _wire_contents(contents)
        if not plain:
            return None
        text = stored if type(stored) is str else None
        try:
            contents_json = _contents_json(text, wire_contents, text_prices)
        except ValueError:  # NaN or an infinity in another field: JSON cannot carry it
            return None
    # Values _surely_valid has checked to be ASCII letters, digits and punctuation (a
    # hash, a currency code, a decimal's text, X's time form) are quoted as they are;
    # others are escaped as the C encoder escapes them.
    identifiers = []
    if twclid:
        identifiers.append(f'{{"twclid":{_quote(twclid)}}}')
    if email:
        identifiers.append(f'{{"hashed_email":"{email}"}}')
    if phone:
        identifiers.append(f'{{"hashed_phone_number":"{phone}"}}')
    if ip and agent:
        identifiers.append(f'{{"ip_address":{_quote(ip)},"user_agent":{_quote(agent)}}}')
    elif ip:
        identifiers.append(f'{{"ip_address":{_quote(ip)}}}')
    elif agent:
        identifiers.append(f'{{"user_agent":{_quote(agent)}}}')
    parts = [
        f'{{"conversion_time":"{time}",'
        f'"identifiers":[{",".join(identifiers)}],"conversion_id":{_quote(conversion_id)}'
    ]
    if value is not None:
        parts.append(f',"value":"{_value_text(value)[0]}"')
    if currency:
        parts.append(f',"price_currency":"{currency}"')
    if number_items is not None:
        count = str(number_items) if type(number_items) is int else _compact(number_items)
        parts.append(f',"number_items":{count}')
    if description:
        parts.append(f',"description":{_quote(description)}')
    if contents_json:
        parts.append(f',"contents":{contents_json}')
    parts.append("}")
    return EventJSON("".join(parts))


# What json_text writes: the C encoder's own string escaping, compact separators.
_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


_quote = encode_basestring_ascii


def _surely_valid(row: ClaimedRow) -> bool:
    """The rules of ``payload.validate`` but the contents' and the event_id's, in a form
    quick for typed rows; never looser (False: not sure)."""
    (_, _, _, time, _, twclid, email, phone, ip, agent, value, currency, number_items,
     _, _) = row  # fmt: skip
    if not (type(time) is str and surely_valid_time(time)):
        return False
    if email and not is_sha256_hex(email):
        return False
    if phone and not is_sha256_hex(phone):
        return False
    # validate's own test, IPv6 included (a dotted quad costs one regex).
    if ip and not is_ip(ip):
        return False
    # A well-formed hash (checked above) is an identifier X matches on by itself.
    if not (email or phone or enough_to_match(twclid=twclid, ip_address=ip, user_agent=agent)):
        return False
    if value is not None and not _value_text(value)[1]:
        return False
    if currency and currency not in ISO_4217_CODES:
        return False
    return number_items is None or number_items > 0


def _wire_contents(contents: list[Any]) -> tuple[list[dict[str, Any]], bool, int]:
    """``payload.build_contents(contents)``, whether every item surely passes validate's
    content rules, and how many prices in plain decimal text became numbers if nothing
    else changed (else -1), in one pass."""
    wire = []
    plain = True
    text_prices = 0
    for item in contents:
        if type(item) is not dict:
            return build_contents(contents), False, -1
        values = item.values()
        if None in values or "" in values:
            entry = {key: value for key, value in item.items() if value is not None and value != ""}
            text_prices = -1
        else:
            entry = item.copy()
        if "content_price" in entry:
            stored = entry["content_price"]
            if type(stored) is str:
                price, json_number = _price_of_text(stored)
                if text_prices >= 0:
                    text_prices = text_prices + 1 if json_number else -1
            else:
                price = _price_number(stored)
            entry["content_price"] = price
            # Exactly int or float (not bool); an int is always finite.
            plain = plain and (type(price) is int or (type(price) is float and isfinite(price)))
        if "num_items" in entry:
            count = entry["num_items"]
            plain = plain and type(count) is int and count > 0
        wire.append(entry)
    return wire, plain, text_prices


def _price_number(value: Any) -> Any:
    # As payload's: X wants a JSON number; text stays text for validate to report.
    if type(value) is str:
        return _price_of_text(value)[0]
    if isinstance(value, Decimal) and not value.is_snan():
        return float(value)
    return value


@lru_cache(maxsize=4096)
def _price_of_text(text: str) -> tuple[Any, bool]:
    """The number a price in text is sent as, and whether the text itself is that JSON
    number (plain decimal notation). Cached: a shop's prices repeat (and a float is
    immutable). Text that is no number a float can hold ("sNaN") stays text: validate
    fails that row alone."""
    try:
        number = float(Decimal(text))
    except (InvalidOperation, ValueError):
        return text, False
    return number, JSON_DECIMAL.fullmatch(text) is not None


def _contents_json(stored: str | None, wire: list[dict[str, Any]], text_prices: int) -> str:
    """The JSON of the wire contents: the stored text itself, its prices in plain decimal
    text unquoted, where that is all that changed; else serialised.

    The text is used only where reading it is plain: a list as Django and PostgreSQL
    write it (``": "`` after each key), without a backslash (so every quote in it opens
    or closes a string), with exactly as many keys as the items hold (a repeated key,
    which json.loads reads as its last, or a nested object falls back) and as many
    prices in text as the items hold (a nested price falls back)."""
    if (
        stored is None
        or text_prices < 0
        or stored[:1] != "["
        or "\\" in stored
        # Python reads these literals; X would not (serialising them raises instead).
        or "NaN" in stored
        or "Infinity" in stored
        or stored.count('": ') != sum(map(len, wire))
    ):
        return _compact(wire)
    if text_prices == 0:
        return stored
    head, *prices = stored.split(PRICE_KEY)
    if len(prices) != text_prices:
        return _compact(wire)
    parts = [head]
    for price in prices:
        # The price's digits, then its closing quote.
        end = price.index('"')
        parts += ('"content_price": ', price[:end], price[end + 1 :])
    return "".join(parts)
