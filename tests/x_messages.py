"""X's rules as test data: each case is (changes to a valid event, message, parameter).

Shared by the tests of local validation (test_payload.py) and of the emulator
(test_emulator.py, test_validation_agreement.py), so both are held to the same table.
"""

from __future__ import annotations

from typing import Any

Case = tuple[dict[str, Any], str, str]

# Messages X documents (reference pages 001 and 004).
DOCUMENTED_400: list[Case] = [
    ({"identifiers": [{"twclid": ""}]}, "At least one user identifier must be provided", ""),
    ({"identifiers": []}, "At least one user identifier must be provided", ""),
    (
        {"identifiers": [{"ip_address": "8.25.197.25"}]},
        "At least one user identifier must be provided",
        "",
    ),
    (
        {"identifiers": [{"user_agent": "Mozilla/5.0"}]},
        "At least one user identifier must be provided",
        "",
    ),
    (
        {"identifiers": [{"hashed_email": "abc"}]},
        "hashed_email (abc) is not a valid SHA-256 hash",
        "hashed_email",
    ),
    (
        {"identifiers": [{"hashed_phone_number": "+11234567890"}]},
        "hashed_phone_number (+11234567890) is not a valid SHA-256 hash",
        "hashed_phone_number",
    ),
    (
        {"conversion_time": "2022-06-16T01:14:00.603"},
        'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "2022-06-16T01:14:00.603" '
        "for conversion_time",
        "conversion_time",
    ),
    (
        {"conversion_time": "2022-06-16T01:14:00.603+00:00"},
        'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "2022-06-16T01:14:00.603+00:00" '
        "for conversion_time",
        "conversion_time",
    ),
    (  # a regex's "$" also matches before a final newline
        {"conversion_time": "2022-06-16T01:14:00.603Z\n"},
        'Expected Time in yyyy-MM-ddTHH:mm:ss.SSSZ, got "2022-06-16T01:14:00.603Z\n" '
        "for conversion_time",
        "conversion_time",
    ),
    ({"event_id": ""}, "Event ID was not found", "event_id"),
    ({"event_id": None}, "Event ID was not found", "event_id"),
]

# Values the reference shows X accepting although a rule reads stricter: the time rule
# says .SSS, the reference's own example has none.
DOCUMENTED_ACCEPTED: list[dict[str, Any]] = [
    {"conversion_time": "2017-10-05T00:00:00Z"},
    {"conversion_time": "2022-06-16T01:14:00.603Z"},
]

# Rules X documents without a message: the wording is ours, the same on both sides.
INFERRED_400: list[Case] = [
    (
        {"number_items": 0},
        "number_items must be a positive number greater than zero",
        "number_items",
    ),
    (
        {"price_currency": "XYZ"},
        "price_currency (XYZ) is not a valid ISO-4217 currency code",
        "price_currency",
    ),
    ({"value": "twenty"}, "value (twenty) is not a valid number", "value"),
    # Digits of other scripts are digits to a regex's \d, not to X.
    ({"value": "\u0661\u0662.50"}, "value (\u0661\u0662.50) is not a valid number", "value"),
    (
        {"identifiers": [{"twclid": "x", "ip_address": "\u0661.1.1.1"}]},
        "ip_address (\u0661.1.1.1) is not a valid IP address",
        "ip_address",
    ),
    (
        {"contents": [{"content_id": "1", "content_price": "100"}]},
        "content_price (100) is not a valid number",
        "content_price",
    ),
]
