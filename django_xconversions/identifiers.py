"""Normalisation and hashing of the identifiers X matches conversions on.

X's rules: email trimmed, lower-cased, SHA-256; phone in E.164, SHA-256; twclid exactly as
in the URL, never hashed; IP address and user agent plain, trimmed. A value that already is
a SHA-256 hex digest passes through (lower-cased) and is never hashed a second time.

Every invalid input raises ``django.core.exceptions.ValidationError`` keyed by the
identifier's name, with a message stating the rule. Messages never repeat the raw value:
they end up in logs and in the admin, and raw emails and phone numbers must not.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from django_xconversions.conf import setting_path, xsettings

# Whole-text patterns (fullmatch): "$" would also take a value ending in a newline.
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# X click ids are URL-safe tokens; the bound keeps junk and abuse out of sessions and rows.
TWCLID_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,255}")
USER_AGENT_MAX_LENGTH = 1024

_email_validator = EmailValidator()


def _invalid(identifier: str, rule: str, message: str) -> ValidationError:
    return ValidationError({identifier: [ValidationError(message, code=rule)]})


def is_sha256_hex(value: str) -> bool:
    return SHA256_HEX.fullmatch(value) is not None


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _given(value: str | None) -> bool:
    return isinstance(value, str) and value.strip() != ""


def enough_to_match(
    *,
    twclid: str | None = "",
    hashed_email: str | None = "",
    hashed_phone: str | None = "",
    ip_address: str | None = "",
    user_agent: str | None = "",
) -> bool:
    """X's rule for an event's identifiers: a strong one (twclid, email or phone hash), or
    the IP address and user agent together (either alone matches no one). Blank values
    and values of spaces only do not count. Whether each value is well formed is checked
    apart."""
    return (
        _given(twclid)
        or _given(hashed_email)
        or _given(hashed_phone)
        or (_given(ip_address) and _given(user_agent))
    )


def normalize_email(email: str) -> str:
    """Trim and lower-case an email address, and check that it is one."""
    if not isinstance(email, str):
        raise _invalid("email", "type", "email must be a string.")
    normalized = email.strip().lower()
    if not normalized:
        raise _invalid("email", "required", "email is empty.")
    try:
        _email_validator(normalized)
    except ValidationError:
        raise _invalid(
            "email",
            "format",
            "email is not a valid address (expected name@domain with a dotted domain).",
        ) from None
    return normalized


def hash_email(email: str) -> str:
    """SHA-256 hex of the normalised address; a 64-hex value is taken as already hashed."""
    if isinstance(email, str) and is_sha256_hex(email.strip()):
        return email.strip().lower()
    return sha256_hex(normalize_email(email))


def normalize_phone(phone: str, region: str | None = None) -> str:
    """Parse a phone number and format it in E.164 (e.g. +11234567890).

    Numbers typed without a +country prefix are read in ``region``, by default
    XCONVERSIONS["DEFAULT_PHONE_REGION"].
    """
    if not isinstance(phone, str):
        raise _invalid("phone", "type", "phone must be a string.")
    text = phone.strip()
    if not text:
        raise _invalid("phone", "required", "phone is empty.")
    region = region or xsettings.DEFAULT_PHONE_REGION
    if not text.startswith("+") and not region:
        raise _invalid(
            "phone",
            "region",
            f"phone has no +country prefix and {setting_path('DEFAULT_PHONE_REGION')} is not set.",
        )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise _invalid("phone", "format", "phone is not a phone number.") from None
    # "Possible" (length and country code right) rather than "valid" (assigned ranges):
    # X's own example +11234567890 is possible but not in an assigned range.
    if not phonenumbers.is_possible_number(number):
        raise _invalid("phone", "length", "phone has the wrong number of digits for its country.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def hash_phone(phone: str, region: str | None = None) -> str:
    """SHA-256 hex of the E.164 number; a 64-hex value is taken as already hashed."""
    if isinstance(phone, str) and is_sha256_hex(phone.strip()):
        return phone.strip().lower()
    return sha256_hex(normalize_phone(phone, region))


def normalize_twclid(twclid: str) -> str:
    """Check a click id; it is sent exactly as X put it in the URL, never hashed."""
    if not isinstance(twclid, str) or not TWCLID_PATTERN.fullmatch(twclid):
        raise _invalid(
            "twclid",
            "format",
            "twclid must be 1 to 255 characters of letters, digits, '-' and '_'.",
        )
    return twclid


def normalize_ip(ip_address: str) -> str:
    """Validate an IPv4 or IPv6 address and return its canonical text."""
    if not isinstance(ip_address, str):
        raise _invalid("ip_address", "type", "ip_address must be a string.")
    try:
        return str(ipaddress.ip_address(ip_address.strip()))
    except ValueError:
        raise _invalid(
            "ip_address", "format", "ip_address is not a valid IPv4 or IPv6 address."
        ) from None


def normalize_user_agent(user_agent: str) -> str:
    """Trim the user agent (as X asks) and bound its length."""
    if not isinstance(user_agent, str):
        raise _invalid("user_agent", "type", "user_agent must be a string.")
    return user_agent.strip()[:USER_AGENT_MAX_LENGTH]
