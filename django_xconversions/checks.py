"""System checks: each message names the exact setting that is missing or wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlparse

import phonenumbers
from django.conf import settings
from django.core import checks

from django_xconversions import crypto
from django_xconversions.conf import DEFAULTS, SETTING_NAME, setting_path, xsettings
from django_xconversions.currencies import is_iso_4217

Messages = list[checks.CheckMessage]


def check_settings_shape(**kwargs: Any) -> Messages:
    value = getattr(settings, SETTING_NAME, None)
    if value is None:
        return []
    if not isinstance(value, dict):
        return [checks.Error(f"settings.{SETTING_NAME} must be a dict.", id="xconversions.E001")]
    return [
        checks.Error(
            f"Unknown setting {setting_path(key)}.",
            hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
            id="xconversions.E002",
        )
        for key in sorted(set(value) - set(DEFAULTS))
    ]


def check_encryption_key(**kwargs: Any) -> Messages:
    keys = crypto.configured_keys()
    hint = (
        "Generate one with: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'"
    )
    if not keys:
        if settings.DEBUG:
            return [
                checks.Warning(
                    f"{setting_path('ENCRYPTION_KEY')} is not set; tokens are encrypted with "
                    "a key derived from SECRET_KEY (DEBUG only).",
                    hint=hint,
                    id="xconversions.W001",
                )
            ]
        return [
            checks.Error(
                f"{setting_path('ENCRYPTION_KEY')} is required outside DEBUG: it encrypts "
                "the X access tokens stored in the database.",
                hint=hint,
                id="xconversions.E003",
            )
        ]
    return [
        checks.Error(
            f"{setting_path('ENCRYPTION_KEY')} entry {i} is not a valid Fernet key "
            "(32 url-safe base64-encoded bytes).",
            hint=hint,
            id="xconversions.E004",
        )
        for i, key in enumerate(keys)
        if not crypto.is_valid_key(key)
    ]


def check_credentials(**kwargs: Any) -> Messages:
    missing = [name for name in ("CONSUMER_KEY", "CONSUMER_SECRET") if not getattr(xsettings, name)]
    if not missing:
        return []
    names = " and ".join(setting_path(name) for name in missing)
    return [
        checks.Warning(
            f"{names} not set: OAuth 1.0a calls to X (tag management, access checks, and "
            "sending for pixels without a pixel token) will fail.",
            hint="Copy them from your X app's Keys and tokens page.",
            id="xconversions.W002",
        )
    ]


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def check_values(**kwargs: Any) -> Messages:
    problems: list[tuple[str, str]] = []
    for name in ("API_BASE_URL", "OAUTH_BASE_URL"):
        url = urlparse(str(getattr(xsettings, name)))
        if url.scheme not in ("http", "https") or not url.netloc:
            problems.append((name, "must be an http(s) URL such as https://ads-api.x.com"))
    if not str(xsettings.API_VERSION).isdigit():
        problems.append(("API_VERSION", 'must be a version number such as "12"'))
    for name in ("CONNECT_TIMEOUT", "READ_TIMEOUT"):
        if not _positive_number(getattr(xsettings, name)):
            problems.append((name, "must be a positive number of seconds"))
    region = xsettings.DEFAULT_PHONE_REGION
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(("DEFAULT_PHONE_REGION", 'must be a region code such as "US" or None'))
    if not is_iso_4217(xsettings.DEFAULT_CURRENCY):
        problems.append(("DEFAULT_CURRENCY", 'must be an ISO 4217 code such as "USD"'))
    return [
        checks.Error(f"{setting_path(name)} {rule}.", id="xconversions.E005")
        for name, rule in problems
    ]


ALL_CHECKS: Iterable[Callable[..., Messages]] = (
    check_settings_shape,
    check_encryption_key,
    check_credentials,
    check_values,
)


def register() -> None:
    for check in ALL_CHECKS:
        checks.register(check, "xconversions")
