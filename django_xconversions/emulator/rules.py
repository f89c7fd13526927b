"""X's validation of a conversions request, with X's documented messages.

Written from X's pages, independently of the client's local validation (payload.py), so
the two check each other. Messages X documents are reproduced exactly; the wording of the
rules X documents without a message is marked as inferred.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django_xconversions.currencies import ISO_4217_CODES
from django_xconversions.emulator.world import Pixel, World, bare_event_id

Error = dict[str, Any]

MAX_CONVERSIONS = 500
TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
IDENTIFIER_KEYS = ("twclid", "hashed_email", "hashed_phone_number", "ip_address", "user_agent")
# ip_address and user_agent only count beside another identifier.
DEVICE_KEYS = ("ip_address", "user_agent")


def error(code: str, message: str, parameter: str | None) -> Error:
    return {"code": code, "message": message, "parameter": parameter}


def invalid(message: str, parameter: str | None) -> Error:
    return error("INVALID_PARAMETER", message, parameter)


def _number(value: Any, *, text_allowed: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == value and value not in (float("inf"), float("-inf"))
    if text_allowed and isinstance(value, str):
        try:
            return Decimal(value).is_finite()
        except InvalidOperation:
            return False
    return False


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_identifiers(identifiers: Any) -> list[Error]:
    found: list[Error] = []
    present: dict[str, list[str]] = {key: [] for key in IDENTIFIER_KEYS}
    if isinstance(identifiers, list):
        for item in identifiers:
            if not isinstance(item, dict):
                continue
            for key in IDENTIFIER_KEYS:
                value = item.get(key)
                if isinstance(value, str) and value.strip():
                    present[key].append(value)
    strong = sum(len(present[k]) for k in IDENTIFIER_KEYS if k not in DEVICE_KEYS)
    device = sum(1 for k in DEVICE_KEYS if present[k])
    if strong == 0 and device < 2:
        found.append(invalid("At least one user identifier must be provided", ""))
    for key in ("hashed_email", "hashed_phone_number"):
        for value in present[key]:
            if not SHA256.fullmatch(value):
                found.append(invalid(f"{key} ({value}) is not a valid SHA-256 hash", key))
    for value in present["ip_address"]:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            # Inferred wording.
            found.append(invalid(f"ip_address ({value}) is not a valid IP address", "ip_address"))
    return found


def _check_contents(contents: Any) -> list[Error]:
    found: list[Error] = []
    if contents is None:
        return found
    if not isinstance(contents, list):
        return [invalid("contents must be a list", "contents")]  # inferred
    for item in contents:
        if not isinstance(item, dict):
            found.append(invalid("contents must be a list of objects", "contents"))
            continue
        price = item.get("content_price")
        # A price sent as a string is the mistake integrations make; X wants a double.
        if price is not None and not _number(price, text_allowed=False):
            found.append(invalid(f"content_price ({price}) is not a valid number", "content_price"))
        if "num_items" in item and not _positive_int(item["num_items"]):
            found.append(
                invalid("num_items must be a positive number greater than zero", "num_items")
            )
    return found


def _check_event_id(world: World, pixel: Pixel, conversion: dict[str, Any]) -> list[Error]:
    event_id = conversion.get("event_id")
    if event_id is None or event_id == "":
        return [invalid("Event ID was not found", "event_id")]
    text = str(event_id)
    bare = bare_event_id(text, pixel.pixel_id)
    if world.tag_by_event_id(pixel.account_id, bare) is not None:
        return []
    if world.any_tag_with_event_id(bare) is not None:
        # A real event tag, of another account.
        return [
            error("NOT_FOUND", f"event_id ({text}) does not belong to provided account", "event_id")
        ]
    # Not an event tag at all (e.g. the pixel's own id): X's example answers both errors.
    return [
        error("NOT_FOUND", f"event_id ({text}) does not belong to provided account", "event_id"),
        invalid(f"event_id ({text}) is not a single event tag (SET)", "event_id"),
    ]


def check_conversion(world: World, pixel: Pixel, conversion: Any) -> list[Error]:
    if not isinstance(conversion, dict):
        return [invalid("conversions must be a list of objects", "conversions")]  # inferred
    found: list[Error] = []
    time_value = conversion.get("conversion_time")
    if not isinstance(time_value, str) or not TIME_FORMAT.fullmatch(time_value):
        shown = "" if time_value is None else str(time_value)
        found.append(
            invalid(
                f'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "{shown}" for conversion_time',
                "conversion_time",
            )
        )
    found.extend(_check_event_id(world, pixel, conversion))
    found.extend(_check_identifiers(conversion.get("identifiers")))
    if "number_items" in conversion and not _positive_int(conversion["number_items"]):
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
    found.extend(_check_contents(conversion.get("contents")))
    if str(conversion.get("conversion_id")) in world.rejected_conversion_ids:
        # A test rule: reject this event the way X rejects a malformed hash.
        found.append(invalid("hashed_email (rejected) is not a valid SHA-256 hash", "hashed_email"))
    return found


def check_request(world: World, pixel: Pixel, body: Any) -> list[Error]:
    """All errors of a conversions request; empty when X would accept all of it."""
    if not isinstance(body, dict) or "conversions" not in body:
        return [error("MISSING_PARAMETER", '"conversions" is missing', "conversions")]
    conversions = body["conversions"]
    if not isinstance(conversions, list) or not conversions:
        return [invalid("conversions must be a non-empty list", "conversions")]  # inferred
    if len(conversions) > MAX_CONVERSIONS:
        return [invalid("Conversion count limit is 500", "conversions")]
    found: list[Error] = []
    seen: set[tuple[str, str, str | None]] = set()
    for conversion in conversions:
        for item in check_conversion(world, pixel, conversion):
            key = (item["code"], item["message"], item["parameter"])
            if key not in seen:
                seen.add(key)
                found.append(item)
    return found
