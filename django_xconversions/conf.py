"""The one place django-xconversions reads its settings.

Everything lives in a single ``XCONVERSIONS`` dict in the project's settings. Values are
read at call time (never cached at import), so ``override_settings`` and settings changed
by tests or management commands are always seen.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

SETTING_NAME = "XCONVERSIONS"

# Each key, its default and what it means. README.md documents the same table.
DEFAULTS: dict[str, Any] = {
    # X Ads API host and version (the version is the first path segment, e.g. /12/...).
    "API_BASE_URL": "https://ads-api.x.com",
    "API_VERSION": "12",
    # Host of the OAuth 1.0a endpoints (request_token, authorize, access_token).
    "OAUTH_BASE_URL": "https://api.x.com",
    # The X app's consumer key and secret (OAuth 1.0a). Access tokens live on AdAccount.
    "CONSUMER_KEY": "",
    "CONSUMER_SECRET": "",
    # Fernet key(s) that encrypt tokens at rest. A string, or a list whose first key
    # encrypts and all of which decrypt (key rotation).
    "ENCRYPTION_KEY": "",
    # Seconds to wait for a TCP connection, and for a response once connected.
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 30.0,
    # Region used to read phone numbers typed without a +country prefix (e.g. "US").
    "DEFAULT_PHONE_REGION": None,
    # ISO 4217 currency used when a conversion has a value but no currency.
    "DEFAULT_CURRENCY": "USD",
    # Sent as the User-Agent of API requests.
    "USER_AGENT": "django-xconversions",
    # Events per request (X allows at most 500).
    "BATCH_SIZE": 500,
    # Attempts before a conversion that keeps meeting 5xx/timeouts is marked failed.
    "MAX_ATTEMPTS": 8,
    # Backoff after a transient failure: BASE * 2**(attempt-1) seconds, capped at MAX,
    # with jitter (between half and all of it).
    "RETRY_BACKOFF_BASE": 30.0,
    "RETRY_BACKOFF_MAX": 3600.0,
    # How long claimed rows stay "sending" before another worker may take them over.
    "LEASE_SECONDS": 600,
    # Per-account budget shared by all workers: events per window (X: 60,000 / 15 min).
    "RATE_LIMIT_EVENTS": 60_000,
    "RATE_LIMIT_WINDOW": 900,
    # send_conversions --loop: seconds to sleep when nothing is due.
    "LOOP_IDLE_SECONDS": 5.0,
    # PostgreSQL: a committed conversion wakes idle --loop workers at once (NOTIFY after
    # the commit, LISTEN in the worker); they still poll every LOOP_IDLE_SECONDS. False:
    # no NOTIFY is sent and workers only poll. No effect on SQLite (workers poll).
    "NOTIFY_ON_COMMIT": True,
    # Send as soon as a conversion's transaction commits: False (leave it to the command),
    # True (Django tasks, else Celery, else in-process), "tasks", "celery" or "inline".
    "SEND_IMMEDIATELY": False,
    # -- capture (middleware, sources, track) -------------------------------------------
    # How long a captured twclid is used, in seconds (X's longest click window: 30 days).
    "TWCLID_TTL": 30 * 24 * 3600,
    # Treat a request with the Sec-GPC: 1 header as refusing tracking.
    "HONOR_GPC": True,
    # Dotted path to a callable(request) -> bool; False means no consent: nothing is
    # captured and conversions of that request are recorded as skipped.
    "CONSENT_CHECK": None,
    # request.META key holding the client IP set by your reverse proxy (for example
    # "HTTP_X_REAL_IP", or "HTTP_X_FORWARDED_FOR" with TRUSTED_PROXY_COUNT). None: use
    # REMOTE_ADDR; forwarding headers are never trusted unless named here.
    "CLIENT_IP_HEADER": None,
    # With an X-Forwarded-For style header: how many proxies of yours append to it (the
    # client IP is read that many entries from the right).
    "TRUSTED_PROXY_COUNT": 1,
    # Models bound to X events: a list of dicts (see README "Binding your models").
    "SOURCES": [],
    # -- pixel template tags ----------------------------------------------------------------
    # The pixel whose base code {% xconversions_pixel %} renders (a Pixel.pixel_id); empty:
    # the only Pixel in the database.
    "PIXEL_ID": "",
    # -- REST API ---------------------------------------------------------------------------
    # Dotted paths of DRF classes for the API; None for authentication means DRF's defaults.
    "API_AUTHENTICATION_CLASSES": None,
    # The default: staff with the model permission (view to read, add to record).
    "API_PERMISSION_CLASSES": ["django_xconversions.api.permissions.StaffModelPermissions"],
    # Requests per user (or per IP when anonymous), in DRF's rate syntax.
    "API_THROTTLE_RATE": "600/minute",
    "API_PAGE_SIZE": 100,
    # -- retention --------------------------------------------------------------------------
    # purge_conversions deletes sent, failed and skipped rows older than this many days.
    "RETENTION_DAYS": 90,
}


class _Settings:
    """Attribute access to the merged settings, read fresh on every access."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown django-xconversions setting {SETTING_NAME}[{name!r}]")
        user = getattr(django_settings, SETTING_NAME, None) or {}
        return user.get(name, DEFAULTS[name])

    def user_settings(self) -> dict[str, Any]:
        value = getattr(django_settings, SETTING_NAME, None)
        return dict(value) if isinstance(value, dict) else {}


xsettings = _Settings()


# API_THROTTLE_RATE in DRF's rate syntax: requests per second, minute, hour or day.
THROTTLE_RATE = re.compile(r"^\d+/(s|m|h|d)\w*$")


def setting_path(name: str) -> str:
    """How a setting is spelled in error messages: ``XCONVERSIONS["NAME"]``."""
    return f'{SETTING_NAME}["{name}"]'


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def encryption_keys() -> tuple[str, ...]:
    """``ENCRYPTION_KEY`` as a tuple of non-empty key strings, first one current.

    A key is a ``str`` (or the ``bytes`` ``Fernet.generate_key()`` returns); the setting
    is one key or a list/tuple of them, where blank and ``None`` entries are left out (an
    optional old key read from the environment). Anything else (``None`` for the whole
    setting, from an unset ``os.environ.get``; a number; a list holding a number) raises
    ImproperlyConfigured naming the setting and the expected type, never a TypeError.
    """
    value = xsettings.ENCRYPTION_KEY
    if isinstance(value, str | bytes):
        entries: list[Any] = [value]
    elif isinstance(value, list | tuple):
        entries = list(value)
    else:
        raise ImproperlyConfigured(
            f"{setting_path('ENCRYPTION_KEY')} must be a Fernet key (str) or a list of them, "
            f"not {_type_name(value)}"
            + (" (is its environment variable set?)." if value is None else ".")
        )
    keys = []
    # Numbered from 1, as rotate_encryption_key and crypto's messages number keys.
    for position, entry in enumerate(entries, start=1):
        if entry is None:
            continue
        described = _type_name(entry)
        if isinstance(entry, bytes):
            try:
                entry = entry.decode("ascii")
            except UnicodeDecodeError:
                described = "bytes that are not ASCII"
        if not isinstance(entry, str):
            raise ImproperlyConfigured(
                f"{setting_path('ENCRYPTION_KEY')} must be a Fernet key (str) or a list of "
                f"them; entry #{position} is {described}."
            )
        if entry:
            keys.append(entry)
    return tuple(keys)
