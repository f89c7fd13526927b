"""System checks: each message names the exact setting that is missing or wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlparse

import phonenumbers
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

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


def check_sources(**kwargs: Any) -> Messages:
    from django_xconversions import sources

    found: Messages = []
    entries = xsettings.SOURCES or []
    if not isinstance(entries, list | tuple):
        return [
            checks.Error(
                f"{setting_path('SOURCES')} must be a list of dicts.", id="xconversions.E006"
            )
        ]
    for index, entry in enumerate(entries):
        try:
            sources.parse(index, entry)
        except sources.SourceError as exc:
            found.append(checks.Error(str(exc), id="xconversions.E006"))
    return found


def check_capture_settings(**kwargs: Any) -> Messages:
    problems: list[tuple[str, str]] = []
    if not _positive_number(xsettings.TWCLID_TTL):
        problems.append(("TWCLID_TTL", "must be a positive number of seconds"))
    header = xsettings.CLIENT_IP_HEADER
    if header is not None and not (isinstance(header, str) and header.isupper() and header):
        problems.append(
            ("CLIENT_IP_HEADER", 'must be a request.META key such as "HTTP_X_REAL_IP" or None')
        )
    count = xsettings.TRUSTED_PROXY_COUNT
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        problems.append(("TRUSTED_PROXY_COUNT", "must be a whole number of at least 1"))
    check = xsettings.CONSENT_CHECK
    if check is not None and not callable(check):
        try:
            if not callable(import_string(str(check))):
                problems.append(("CONSENT_CHECK", "must be a dotted path to a callable(request)"))
        except ImportError as exc:
            problems.append(
                ("CONSENT_CHECK", f"must be a dotted path to a callable(request) ({exc})")
            )
    return [
        checks.Error(f"{setting_path(name)} {rule}.", id="xconversions.E007")
        for name, rule in problems
    ]


def check_api_settings(**kwargs: Any) -> Messages:
    problems: list[tuple[str, str]] = []
    for name in ("API_AUTHENTICATION_CLASSES", "API_PERMISSION_CLASSES"):
        paths = getattr(xsettings, name)
        if paths is None and name == "API_AUTHENTICATION_CLASSES":
            continue
        if not isinstance(paths, list | tuple):
            problems.append((name, "must be a list of dotted paths to DRF classes"))
            continue
        for path in paths:
            try:
                import_string(str(path))
            except ImportError as exc:
                problems.append((name, f"names {path!r}, which cannot be imported ({exc})"))
    from django_xconversions.api.throttling import RATE

    rate = xsettings.API_THROTTLE_RATE
    if rate and not (isinstance(rate, str) and RATE.match(rate)):
        problems.append(("API_THROTTLE_RATE", 'must look like "600/minute" or None'))
    size = xsettings.API_PAGE_SIZE
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1000:
        problems.append(("API_PAGE_SIZE", "must be a whole number from 1 to 1000"))
    return [
        checks.Error(f"{setting_path(name)} {rule}.", id="xconversions.E009")
        for name, rule in problems
    ]


MIDDLEWARE_PATH = "django_xconversions.middleware.TwclidMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"


def check_middleware(**kwargs: Any) -> Messages:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        return [
            checks.Warning(
                f"{MIDDLEWARE_PATH} is not in settings.MIDDLEWARE: click ids (twclid) "
                "are not captured.",
                hint=f"Add it after {SESSION_MIDDLEWARE}.",
                id="xconversions.W003",
            )
        ]
    if SESSION_MIDDLEWARE in middleware and middleware.index(SESSION_MIDDLEWARE) > middleware.index(
        MIDDLEWARE_PATH
    ):
        return [
            checks.Error(
                f"{MIDDLEWARE_PATH} must come after {SESSION_MIDDLEWARE} in settings.MIDDLEWARE.",
                id="xconversions.E008",
            )
        ]
    return []


ALL_CHECKS: Iterable[Callable[..., Messages]] = (
    check_sources,
    check_capture_settings,
    check_middleware,
    check_api_settings,
    check_settings_shape,
    check_encryption_key,
    check_credentials,
    check_values,
)


def register() -> None:
    for check in ALL_CHECKS:
        checks.register(check, "xconversions")
