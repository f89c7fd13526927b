"""Conversion rows -> the JSON X expects, and local validation with X's own messages.

Validation runs before anything is sent: an event X would reject never reaches X (X rejects
the whole batch for one bad event and does not say which). The messages are X's documented
ones, so a conversion that fails locally shows the same text X would have returned.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from django.utils import timezone

from django_xconversions.currencies import is_iso_4217
from django_xconversions.identifiers import enough_to_match, is_sha256_hex

# X's limit of events in one conversions request.
MAX_EVENTS_PER_REQUEST = 500
# The fields of a contents item, X's names (the API's and the pixel's alike), in the order
# the pixel's event lists them.
CONTENT_KEYS = (
    "content_type",
    "content_id",
    "content_name",
    "content_price",
    "num_items",
    "content_group_id",
)

# X's documented messages (reference pages 001 and 004).
MSG_NO_IDENTIFIER = "At least one user identifier must be provided"
MSG_BAD_HASH = "{field} ({value}) is not a valid SHA-256 hash"
MSG_NOT_SET = "event_id ({value}) is not a single event tag (SET)"
MSG_COUNT_LIMIT = "Conversion count limit is 500"
MSG_NO_EVENT_ID = "Event ID was not found"
MSG_NOT_IN_ACCOUNT = "event_id ({value}) does not belong to provided account"
MSG_TIME_FORMAT = 'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "{value}" for conversion_time'
# The rules below are documented without a message; the wording matches the emulator's.
MSG_NUMBER_ITEMS = "number_items must be a positive number greater than zero"
MSG_CURRENCY = "price_currency ({value}) is not a valid ISO-4217 currency code"
MSG_VALUE = "value ({value}) is not a valid number"
MSG_CONTENT_PRICE = "content_price ({value}) is not a valid number"
MSG_CONTENT_NUM_ITEMS = "num_items must be a positive number greater than zero"
MSG_IP = "ip_address ({value}) is not a valid IP address"

# ASCII digits only, and whole values (fullmatch): \d would take any script's digits
# ("\u0661.1.1.1"), which X refuses, and "$" a value ending in a newline.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# The rule says yyyy-MM-ddTHH:mm:ss.SSSZ, yet the reference's own example is
# 2017-10-05T00:00:00Z: both documented forms pass (what we build always has .SSS).
TIME_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?Z")
# Text values in plain decimal notation ("20.00"): no exponent, no spaces, no NaN.
DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
HASHED_FIELDS = ("hashed_email", "hashed_phone_number")


@dataclass(frozen=True)
class Violation:
    """One rule an event breaks, as X would report it."""

    code: str
    message: str
    parameter: str

    def __str__(self) -> str:
        return self.message


def format_conversion_time(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` in UTC.

    Aware datetimes are converted to UTC. Naive ones are read in Django's default time
    zone (settings.TIME_ZONE), which is what Django itself does with naive values.
    """
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    utc = value.astimezone(dt.timezone.utc)
    # Formatted by hand: strftime is the slowest step of building a large batch.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def decimal_text(value: Decimal) -> str:
    """A decimal as plain text with at least two decimals (X's examples send "20.00")."""
    whole, _, fraction = format(value.normalize(), "f").partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _price_number(value: Any) -> Any:
    # content_price is a JSON number (double) at X; a string price is rejected.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Decimal(value))
        except InvalidOperation:
            return value  # left for validate() to report
    return value


def build_contents(contents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    items = []
    for item in contents:
        entry = dict(item)
        if "content_price" in entry and entry["content_price"] is not None:
            entry["content_price"] = _price_number(entry["content_price"])
        items.append({k: v for k, v in entry.items() if v is not None and v != ""})
    return items


def build_identifiers(
    *,
    twclid: str = "",
    hashed_email: str = "",
    hashed_phone_number: str = "",
    ip_address: str = "",
    user_agent: str = "",
) -> list[dict[str, str]]:
    identifiers: list[dict[str, str]] = []
    if twclid:
        identifiers.append({"twclid": twclid})
    if hashed_email:
        identifiers.append({"hashed_email": hashed_email})
    if hashed_phone_number:
        identifiers.append({"hashed_phone_number": hashed_phone_number})
    # X's own example sends IP address and user agent together in one object.
    device = {k: v for k, v in (("ip_address", ip_address), ("user_agent", user_agent)) if v}
    if device:
        identifiers.append(device)
    return identifiers


class ConversionFields(Protocol):
    """What an event is built from: a Conversion, or a row the sender fetched."""

    @property
    def conversion_time(self) -> dt.datetime | str: ...
    @property
    def conversion_id(self) -> str: ...
    @property
    def twclid(self) -> str: ...
    @property
    def hashed_email(self) -> str: ...
    @property
    def hashed_phone(self) -> str: ...
    @property
    def ip_address(self) -> str | None: ...
    @property
    def user_agent(self) -> str: ...
    @property
    def value(self) -> Decimal | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def number_items(self) -> int | None: ...
    @property
    def description(self) -> str: ...
    @property
    def contents(self) -> Any: ...


def conversion_to_event(conversion: ConversionFields, event_id: str) -> dict[str, Any]:
    """The API dict for one stored conversion, sent for the event tag ``event_id``."""
    event: dict[str, Any] = {
        "conversion_time": format_conversion_time(conversion.conversion_time)
        if isinstance(conversion.conversion_time, dt.datetime)
        else conversion.conversion_time,  # already formatted by the database
        "event_id": event_id,
        "identifiers": build_identifiers(
            twclid=conversion.twclid,
            hashed_email=conversion.hashed_email,
            hashed_phone_number=conversion.hashed_phone,
            ip_address=conversion.ip_address or "",
            user_agent=conversion.user_agent,
        ),
        "conversion_id": conversion.conversion_id,
    }
    event.update(optional_fields(conversion))
    if conversion.contents:
        event["contents"] = build_contents(conversion.contents)
    return event


def optional_fields(
    conversion: ConversionFields, *, value: Callable[[Decimal], Any] = decimal_text
) -> dict[str, Any]:
    """The optional scalar fields ``conversion`` carries, under X's API names: value
    (``value`` formats it: text for the API, a number for the pixel), price_currency,
    number_items and description; absent ones are left out."""
    fields: dict[str, Any] = {}
    if conversion.value is not None:
        fields["value"] = value(conversion.value)
    if conversion.currency:
        fields["price_currency"] = conversion.currency
    if conversion.number_items is not None:
        fields["number_items"] = conversion.number_items
    if conversion.description:
        fields["description"] = conversion.description
    return fields


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_number(value: Any, *, allow_text: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value)).is_finite()
    if allow_text and isinstance(value, str):
        return DECIMAL_TEXT.fullmatch(value) is not None
    return False


def valid_time(value: Any) -> bool:
    """X's time format, and a real calendar date and time (not 2022-13-45T25:00...)."""
    if not isinstance(value, str) or not TIME_PATTERN.fullmatch(value):
        return False
    try:
        dt.datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return True


def is_ip(value: Any) -> bool:
    # Dotted-quad IPv4, the common case, without building an address object.
    if IPV4_PATTERN.fullmatch(value):
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _identifier_violations(identifiers: Any) -> list[Violation]:
    found: list[Violation] = []
    given: dict[str, str] = {}
    for item in identifiers if isinstance(identifiers, list) else ():
        for key, value in item.items() if isinstance(item, dict) else ():
            if not isinstance(value, str) or not value.strip():
                continue  # an empty value does not count
            given.setdefault(key, value)
            if key in HASHED_FIELDS and not is_sha256_hex(value):
                message = MSG_BAD_HASH.format(field=key, value=value)
                found.append(Violation("INVALID_PARAMETER", message, key))
            elif key == "ip_address" and not is_ip(value):
                message = MSG_IP.format(value=value)
                found.append(Violation("INVALID_PARAMETER", message, "ip_address"))
    if not enough_to_match(
        twclid=given.get("twclid"),
        hashed_email=given.get("hashed_email"),
        hashed_phone=given.get("hashed_phone_number"),
        ip_address=given.get("ip_address"),
        user_agent=given.get("user_agent"),
    ):
        found.insert(0, Violation("INVALID_PARAMETER", MSG_NO_IDENTIFIER, ""))
    return found


def _contents_violations(contents: Any) -> list[Violation]:
    found: list[Violation] = []
    for item in contents if isinstance(contents, list) else []:
        if not isinstance(item, dict):
            continue
        price = item.get("content_price")
        if "content_price" in item and not _is_number(price, allow_text=False):
            message = MSG_CONTENT_PRICE.format(value=price)
            found.append(Violation("INVALID_PARAMETER", message, "content_price"))
        if "num_items" in item and not _is_positive_int(item["num_items"]):
            found.append(Violation("INVALID_PARAMETER", MSG_CONTENT_NUM_ITEMS, "num_items"))
    return found


def validate(event: Mapping[str, Any]) -> list[Violation]:
    """Every rule of X's that ``event`` (an API dict) breaks; empty when X would accept it.

    Whether the event id exists in the pixel's account is for X (and the emulator) to say.
    """
    found: list[Violation] = []
    time_value = event.get("conversion_time")
    if not valid_time(time_value):
        message = MSG_TIME_FORMAT.format(value=time_value if time_value is not None else "")
        found.append(Violation("INVALID_PARAMETER", message, "conversion_time"))
    if not event.get("event_id"):
        found.append(Violation("INVALID_PARAMETER", MSG_NO_EVENT_ID, "event_id"))
    found.extend(_identifier_violations(event.get("identifiers")))
    if "number_items" in event and not _is_positive_int(event["number_items"]):
        found.append(Violation("INVALID_PARAMETER", MSG_NUMBER_ITEMS, "number_items"))
    if "price_currency" in event and not is_iso_4217(event["price_currency"]):
        message = MSG_CURRENCY.format(value=event["price_currency"])
        found.append(Violation("INVALID_PARAMETER", message, "price_currency"))
    if "value" in event and not _is_number(event["value"], allow_text=True):
        message = MSG_VALUE.format(value=event["value"])
        found.append(Violation("INVALID_PARAMETER", message, "value"))
    found.extend(_contents_violations(event.get("contents")))
    return found


def validate_batch(events: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """Batch-level rules: 1 to 500 events per request."""
    if len(events) > MAX_EVENTS_PER_REQUEST:
        return [Violation("INVALID_PARAMETER", MSG_COUNT_LIMIT, "conversions")]
    return []
