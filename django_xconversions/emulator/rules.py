"""X's validation of a conversions request, with X's documented messages.

Written from X's pages, independently of the client's local validation (payload.py), so
the two check each other. Messages X documents are reproduced exactly; the wording of the
rules X documents without a message is marked as inferred.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any

from django_xconversions.currencies import ISO_4217_CODES
from django_xconversions.emulator.world import Pixel, World, bare_event_id

Error = dict[str, Any]

MAX_CONVERSIONS = 500
# The rule says yyyy-MM-ddTHH:mm:ss.SSSZ, while the reference's own example of the field is
# 2017-10-05T00:00:00Z: both documented forms are accepted, anything else is refused with
# the rule's message.
# ASCII digits only: \d would take any script's digits ("\u0661.1.1.1"), which X refuses.
TIME_FORMAT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?Z")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# value may be a JSON number or decimal text (X's examples send "20.00"); inferred: plain
# decimal notation only, no exponent, no spaces.
DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
IDENTIFIER_KEYS = frozenset(
    {"twclid", "hashed_email", "hashed_phone_number", "ip_address", "user_agent"}
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
CONTENT_KEYS = frozenset(
    {"content_id", "content_group_id", "content_name", "content_price", "content_type", "num_items"}
)
CONTENT_TEXT_KEYS = frozenset({"content_id", "content_name", "content_type"})


def error(code: str, message: str, parameter: str | None) -> Error:
    return {"code": code, "message": message, "parameter": parameter}


def invalid(message: str, parameter: str | None) -> Error:
    return error("INVALID_PARAMETER", message, parameter)


def expected(kind: str, value: Any, parameter: str) -> Error:
    # Inferred wording, modelled on X's documented conversion_time message.
    return invalid(f'Expected {kind}, got "{value}" for {parameter}', parameter)


def _number(value: Any, *, text_allowed: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return text_allowed and isinstance(value, str) and bool(DECIMAL_TEXT.fullmatch(value))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _valid_time(value: Any) -> bool:
    if not isinstance(value, str) or not TIME_FORMAT.fullmatch(value):
        return False
    try:
        dt.datetime.fromisoformat(value[:-1])  # also refuses 2022-13-45T25:00:00.000Z
    except ValueError:
        return False
    return True


def _valid_ip(value: str) -> bool:
    # Dotted quads, the common case, skip the (slow) ipaddress parser.
    return bool(IPV4.fullmatch(value)) or _valid_ip_slow(value)


def _valid_ip_slow(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_identifiers(identifiers: Any) -> list[Error]:
    found: list[Error] = []
    strong, has_ip, has_user_agent = 0, False, False
    for item in identifiers if isinstance(identifiers, list) else ():
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            # An empty value does not count (X's {"twclid": ""} example).
            if key not in IDENTIFIER_KEYS or not isinstance(value, str) or not value.strip():
                continue
            if key == "twclid":
                strong += 1
            elif key == "ip_address":
                has_ip = True
                if not _valid_ip(value):
                    message = f"ip_address ({value}) is not a valid IP address"  # inferred
                    found.append(invalid(message, "ip_address"))
            elif key == "user_agent":
                has_user_agent = True
            else:  # hashed_email, hashed_phone_number
                strong += 1
                if not SHA256.fullmatch(value):
                    found.append(invalid(f"{key} ({value}) is not a valid SHA-256 hash", key))
    # ip_address and user_agent count only beside another identifier (each other included).
    if strong == 0 and not (has_ip and has_user_agent):
        found.insert(0, invalid("At least one user identifier must be provided", ""))
    return found


def _check_content(item: Any) -> list[Error]:
    # X documents the keys and their types; the messages are inferred.
    if not isinstance(item, dict):
        return [expected("Object", item, "contents")]
    found: list[Error] = []
    for key, value in item.items():
        if key in CONTENT_TEXT_KEYS:
            if not isinstance(value, str):
                found.append(expected("String", value, key))
        elif key == "content_price":
            # A price sent as a string is the mistake integrations make; X wants a double.
            if not _number(value, text_allowed=False):
                message = f"content_price ({value}) is not a valid number"
                found.append(invalid(message, "content_price"))
        elif key == "num_items":
            if not _positive_int(value):
                message = "num_items must be a positive number greater than zero"
                found.append(invalid(message, "num_items"))
        elif key == "content_group_id":
            # Documented as "Type: integer" with the example "group 1": both are accepted.
            if isinstance(value, bool) or not isinstance(value, str | int):
                found.append(expected("String", value, "content_group_id"))
        else:
            found.append(expected(f"one of [{', '.join(sorted(CONTENT_KEYS))}]", key, "contents"))
    return found


def _check_contents(contents: Any) -> list[Error]:
    if contents is None:
        return []
    if not isinstance(contents, list):
        return [expected("Array", contents, "contents")]
    return [found for item in contents for found in _check_content(item)]


def not_in_account_message(event_id: str, wording: str = "parenthesized") -> str:
    """X's 404 message for an event id that is not the account's. The reference writes it
    two ways: its JSON example with parentheses, its error table without."""
    shown = event_id if wording == "plain" else f"({event_id})"
    return f"event_id {shown} does not belong to provided account"


def _check_event_id(world: World, pixel: Pixel, event_id: Any, wording: str) -> list[Error]:
    if event_id is None or event_id == "":
        return [invalid("Event ID was not found", "event_id")]
    text = str(event_id)
    not_in_account = error("NOT_FOUND", not_in_account_message(text, wording), "event_id")
    not_set = invalid(f"event_id ({text}) is not a single event tag (SET)", "event_id")
    bare = bare_event_id(text, pixel.pixel_id)
    tag = world.live_tag(bare)
    if tag is not None:
        # Inferred: an event created in one pixel is not reachable through another.
        if tag.account_id != pixel.account_id or tag.pixel_id not in (None, pixel.pixel_id):
            return [not_in_account]
        return []
    other = world.pixels.get(bare)
    if other is not None and other.account_id == pixel.account_id:
        # X's example: the account's base tag (pixel) sent as event_id is only "not a SET".
        return [not_set]
    # Not an event tag at all: X's example answers with both errors.
    return [not_in_account, not_set]


def check_conversion(
    world: World,
    pixel: Pixel,
    conversion: Any,
    event_ids: dict[str, list[Error]] | None = None,
    *,
    not_found_wording: str = "parenthesized",
) -> list[Error]:
    """The errors of one conversion; ``event_ids`` memoises event id checks in a batch;
    ``not_found_wording`` is "parenthesized" or "plain" (see not_in_account_message)."""
    if not isinstance(conversion, dict):
        return [expected("Object", conversion, "conversions")]
    found: list[Error] = []
    time_value = conversion.get("conversion_time")
    if not _valid_time(time_value):
        shown = "" if time_value is None else str(time_value)
        found.append(
            invalid(
                f'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "{shown}" for conversion_time',
                "conversion_time",
            )
        )
    event_id = conversion.get("event_id")
    memo = event_ids if event_ids is not None and isinstance(event_id, str) else {}
    event_errors = memo.get(event_id) if isinstance(event_id, str) else None
    if event_errors is None:
        event_errors = memo[str(event_id)] = _check_event_id(
            world, pixel, event_id, not_found_wording
        )
    found.extend(event_errors)
    found.extend(_check_identifiers(conversion.get("identifiers")))
    if "number_items" in conversion and not _positive_int(conversion["number_items"]):
        # The rule is documented ("Must be a positive number greater than zero").
        found.append(
            invalid("number_items must be a positive number greater than zero", "number_items")
        )
    if "price_currency" in conversion:
        currency = conversion["price_currency"]
        if not isinstance(currency, str) or currency not in ISO_4217_CODES:
            found.append(
                invalid(
                    f"price_currency ({currency}) is not a valid ISO-4217 currency code",
                    "price_currency",
                )
            )
    if "value" in conversion and not _number(conversion["value"], text_allowed=True):
        found.append(invalid(f"value ({conversion['value']}) is not a valid number", "value"))
    for key in ("conversion_id", "description"):
        if key in conversion and not isinstance(conversion[key], str):
            found.append(expected("String", conversion[key], key))
    found.extend(_check_contents(conversion.get("contents")))
    rejected = world.rejected_conversion_ids
    if rejected and str(conversion.get("conversion_id")) in rejected:
        # A test rule: reject this event the way X rejects a malformed hash.
        found.append(invalid("hashed_email (rejected) is not a valid SHA-256 hash", "hashed_email"))
    return found


def check_shape(body: Any) -> list[Error]:
    """Errors of the request as a whole (checked before any event is counted)."""
    if not isinstance(body, dict) or "conversions" not in body:
        return [error("MISSING_PARAMETER", '"conversions" is missing', "conversions")]
    conversions = body["conversions"]
    if not isinstance(conversions, list) or not conversions:
        # Inferred: X documents 1 to 500 events a request.
        return [invalid("conversions must be a non-empty list", "conversions")]
    if len(conversions) > MAX_CONVERSIONS:
        return [invalid("Conversion count limit is 500", "conversions")]
    return []


def check_request(
    world: World, pixel: Pixel, body: Any, *, not_found_wording: str = "parenthesized"
) -> list[Error]:
    """All errors of a conversions request, deduplicated (one NOT_FOUND per unknown event
    id); empty when X would accept it all."""
    shape = check_shape(body)
    if shape:
        return shape
    found: list[Error] = []
    seen: set[tuple[str, str, str | None]] = set()
    event_ids: dict[str, list[Error]] = {}
    for conversion in body["conversions"]:
        errors = check_conversion(
            world, pixel, conversion, event_ids, not_found_wording=not_found_wording
        )
        for item in errors:
            key = (item["code"], item["message"], item["parameter"])
            if key not in seen:
                seen.add(key)
                found.append(item)
    return found
