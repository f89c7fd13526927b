"""The one place django-xconversions reads its settings.

Everything lives in a single ``XCONVERSIONS`` dict in the project's settings. Each key is
declared once below (``Settings``) with its default, its type and its rule, and
``xsettings.NAME`` returns the value checked and typed: ``xsettings.BATCH_SIZE`` is an
``int``, ``xsettings.READ_TIMEOUT`` a ``float``, ``xsettings.SOURCES`` a list of
``SourceEntry``. A value is read once and cached; the cache is dropped when Django sends
``setting_changed`` for ``XCONVERSIONS`` (``override_settings``, pytest-django's
``settings``) and whenever ``settings.XCONVERSIONS`` is another dict than the one read.

A value of the wrong type raises ``SettingError`` (an ``ImproperlyConfigured``) naming the
setting, the rule with the expected type, and what was given; the system checks report
the same messages at start-up. A number written as a string (an environment variable read
without a cast: ``"500"``, ``"2.5"``) is taken as the number it spells; nothing else is
guessed (a string is never taken for True or False).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    NoReturn,
    TypedDict,
    TypeVar,
    cast,
    overload,
)
from urllib.parse import urlparse

import phonenumbers
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest

from django_xconversions.currencies import is_iso_4217

SETTING_NAME = "XCONVERSIONS"

# System check tags. Checks of the settings run with every command that asks for the
# "xconversions" tag (and with runserver, check, migrate...); the encryption key and X's
# consumer key are checked only for the commands that use them (the emulator uses neither).
CHECKS = "xconversions"
CHECKS_ENCRYPTION = "xconversions_encryption"
CHECKS_X_CREDENTIALS = "xconversions_x_credentials"

# Check ids the settings' rules are reported under (checks.py), by group.
VALUES_CHECK = "xconversions.E005"
SOURCES_CHECK = "xconversions.E006"
CAPTURE_CHECK = "xconversions.E007"
API_CHECK = "xconversions.E009"
KEY_CHECK = "xconversions.E010"

# API_THROTTLE_RATE in DRF's rate syntax: requests per second, minute, hour or day.
THROTTLE_RATE = re.compile(r"^\d+/(s|m|h|d)\w*$")

T = TypeVar("T")


def setting_path(name: str) -> str:
    """How a setting is spelled in error messages: ``XCONVERSIONS["NAME"]``."""
    return f'{SETTING_NAME}["{name}"]'


class SettingError(ImproperlyConfigured):
    """A setting whose value breaks its rule; the message names the setting, the rule and
    what was given (never the value of a secret)."""


class Invalid(ValueError):
    """A reader's verdict: the rule a value breaks, as written after the setting's name."""

    def __init__(self, rule: str, *, says_what_was_given: bool = False) -> None:
        super().__init__(rule)
        self.rule = rule
        self.says_what_was_given = says_what_was_given


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _given(value: object, secret: bool) -> str:
    if value is None or secret:
        return _type_name(value)  # a secret's value is never repeated
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({_type_name(value)})"


# -- readers: a raw value in, the typed value out, or Invalid naming the rule ---------------

_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_DECIMAL = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def _as_number(value: object) -> int | float | None:
    """``value`` as an int or a finite float (numbers written as strings included), or None
    when it is no number (booleans are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if _INTEGER.match(value):
            try:
                return int(value)
            except ValueError:  # more digits than int() reads: no setting's number
                return None
        if _DECIMAL.match(value):
            number = float(value)
            return number if math.isfinite(number) else None
    return None


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    rule = (
        f"must be a whole number from {minimum} to {maximum} (int)"
        if maximum is not None
        else f"must be a whole number of at least {minimum} (int)"
    )

    def read(value: object) -> int:
        number = _as_number(value)
        if not isinstance(number, int) or number < minimum:
            raise Invalid(rule)
        if maximum is not None and number > maximum:
            raise Invalid(rule)
        return number

    return read


def number(unit: str, *, positive: bool) -> Callable[[object], float]:
    rule = (
        f"must be a positive number of {unit} (int or float)"
        if positive
        else f"must be a number of {unit}, at least 0 (int or float)"
    )

    def read(value: object) -> float:
        found = _as_number(value)
        if found is None or found < 0 or (positive and found == 0):
            raise Invalid(rule)
        return found

    return read


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be True or False (bool)")
    return value


def http_url(value: object) -> str:
    url = urlparse(value) if isinstance(value, str) else None
    if url is None or url.scheme not in ("http", "https") or not url.netloc:
        raise Invalid('must be an http(s) URL such as "https://ads-api.x.com" (str)')
    return cast(str, value)


def api_version(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if not isinstance(value, str) or not value.isdigit():
        raise Invalid('must be a version number such as "12" (str)')
    return value


def text(*, required: bool = False) -> Callable[[object], str]:
    """A string; None (an unset environment variable) reads as "" unless ``required``."""
    rule = "must be a non-empty string (str)" if required else "must be a string (str)"

    def read(value: object) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise Invalid(rule)
        return value

    return read


def phone_region(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in phonenumbers.SUPPORTED_REGIONS:
        raise Invalid('must be a region code such as "US", or None')
    return value


def currency(value: object) -> str:
    if not isinstance(value, str) or not is_iso_4217(value):
        raise Invalid('must be an ISO 4217 code such as "USD" (str)')
    return value


SendImmediately = bool | Literal["tasks", "celery", "inline"]
SEND_MODES: tuple[Literal["tasks", "celery", "inline"], ...] = ("tasks", "celery", "inline")


def send_immediately(value: object) -> SendImmediately:
    if isinstance(value, bool):
        return value
    for mode in SEND_MODES:
        if value == mode:
            return mode
    raise Invalid('must be False, True, "tasks", "celery" or "inline"')


ConsentCheck = Callable[[HttpRequest], bool]


def consent_check(value: object) -> str | ConsentCheck | None:
    """A dotted path (imported where it is used; the check imports it at start-up), the
    callable itself, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if callable(value):
        return cast(ConsentCheck, value)
    raise Invalid("must be a dotted path to a callable(request) (str), or None")


def meta_key(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.isupper():
        raise Invalid('must be a request.META key such as "HTTP_X_REAL_IP", or None')
    return value


ClassPath = str | type[object]
_CLASSES_RULE = "must be a list of dotted paths to DRF classes"


def class_paths(value: object) -> list[ClassPath]:
    if not isinstance(value, list | tuple):
        raise Invalid(_CLASSES_RULE)
    paths: list[ClassPath] = []
    for item in value:
        if not isinstance(item, str | type):
            raise Invalid(_CLASSES_RULE)
        paths.append(item)
    return paths


def class_paths_or_none(value: object) -> list[ClassPath] | None:
    if value is None:
        return None
    try:
        return class_paths(value)
    except Invalid:
        raise Invalid(_CLASSES_RULE + ", or None") from None


def throttle_rate(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not THROTTLE_RATE.match(value):
        raise Invalid(
            'must be like "600/minute" (requests per second, minute, hour or day), or None'
        )
    return value


class WhenSpec(TypedDict):
    field: str
    value: Any  # whatever the field holds


# A value read off the instance: a field name, an attribute path ("customer.email"), the
# dotted path of a callable(instance), or the callable itself.
ValueReader = str | Callable[[Any], Any]


class SourceEntry(TypedDict, total=False):
    """One entry of SOURCES (README, "Binding your models"); sources.py checks the keys and
    the models (the system checks report every problem)."""

    model: str
    event: str
    when: Literal["created"] | WhenSpec
    email: ValueReader
    phone: ValueReader
    value: ValueReader
    currency: ValueReader
    number_items: ValueReader
    contents: ValueReader
    description: ValueReader
    conversion_id: ValueReader


def source_entries(value: object) -> list[SourceEntry]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise Invalid("must be a list of dicts")
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise Invalid(
                f"must be a list of dicts; entry [{index}] is {_type_name(entry)}",
                says_what_was_given=True,
            )
    return cast(list[SourceEntry], list(value))


def encryption_key_list(value: object) -> tuple[str, ...]:
    """``ENCRYPTION_KEY`` as the non-empty key strings, first one current.

    A key is a ``str`` (or the ``bytes`` ``Fernet.generate_key()`` returns); the setting
    is one key or a list/tuple of them, where blank and ``None`` entries are left out (an
    optional old key read from the environment). None (an unset environment variable) is
    no key. Anything else (a number; a list holding a number) is Invalid naming the type.
    Whether each key is a Fernet key is crypto's and the checks' to say.
    """
    if value is None:
        return ()
    if isinstance(value, str | bytes):
        entries: list[object] = [value]
    elif isinstance(value, list | tuple):
        entries = list(value)
    else:
        raise Invalid(
            f"must be a Fernet key (str) or a list of them, not {_type_name(value)}",
            says_what_was_given=True,
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
            raise Invalid(
                f"must be a Fernet key (str) or a list of them; entry #{position} is {described}",
                says_what_was_given=True,
            )
        if entry:
            keys.append(entry)
    return tuple(keys)


# -- the settings -------------------------------------------------------------------------


class Setting(Generic[T]):
    """One key of XCONVERSIONS: its default and how a value is read into a ``T``.

    A descriptor: ``xsettings.NAME`` is the value read (and cached) by ``Settings``."""

    def __init__(
        self,
        default: object,
        read: Callable[[object], T],
        *,
        check: str = VALUES_CHECK,
        secret: bool = False,
    ) -> None:
        self.default = default
        self.read = read
        self.check = check  # the system check id a broken value is reported under
        self.secret = secret
        self.name = ""

    def __set_name__(self, owner: type[object], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[object]) -> Setting[T]: ...

    @overload
    def __get__(self, instance: Settings, owner: type[object]) -> T: ...

    def __get__(self, instance: Settings | None, owner: type[object]) -> Setting[T] | T:
        if instance is None:
            return self
        return instance.value_of(self)

    def parse(self, value: object) -> T:
        """``value`` read by this setting's rule; SettingError names what is wrong."""
        try:
            return self.read(value)
        except Invalid as exc:
            tail = (
                exc.rule
                if exc.says_what_was_given
                else f"{exc.rule}, not {_given(value, self.secret)}"
            )
            raise SettingError(f"{setting_path(self.name)} {tail}.") from None


_NOT_READ = object()


class Settings:
    """Attribute access to the merged, typed settings; each value read once and cached
    until XCONVERSIONS changes."""

    # X Ads API host and version (the version is the first path segment, e.g. /12/...).
    API_BASE_URL = Setting("https://ads-api.x.com", http_url)
    API_VERSION = Setting("12", api_version)
    # Host of the OAuth 1.0a endpoints (request_token, authorize, access_token).
    OAUTH_BASE_URL = Setting("https://api.x.com", http_url)
    # The X app's consumer key and secret (OAuth 1.0a). Access tokens live on AdAccount.
    CONSUMER_KEY = Setting("", text(), secret=True)
    CONSUMER_SECRET = Setting("", text(), secret=True)
    # Fernet key(s) that encrypt tokens at rest. A string, or a list whose first key
    # encrypts and all of which decrypt (key rotation). Read as the tuple of keys.
    ENCRYPTION_KEY = Setting("", encryption_key_list, check=KEY_CHECK, secret=True)
    # Seconds to wait for a TCP connection, and for a response once connected.
    CONNECT_TIMEOUT = Setting(5.0, number("seconds", positive=True))
    READ_TIMEOUT = Setting(30.0, number("seconds", positive=True))
    # Region used to read phone numbers typed without a +country prefix (e.g. "US").
    DEFAULT_PHONE_REGION = Setting(None, phone_region)
    # ISO 4217 currency used when a conversion has a value but no currency.
    DEFAULT_CURRENCY = Setting("USD", currency)
    # Sent as the User-Agent of API requests.
    USER_AGENT = Setting("django-xconversions", text(required=True))
    # Events per request (X allows at most 500; more is sent as 500).
    BATCH_SIZE = Setting(500, whole_number(1))
    # Attempts before a conversion that keeps meeting 5xx/timeouts is marked failed.
    MAX_ATTEMPTS = Setting(8, whole_number(1))
    # Backoff after a transient failure: BASE * 2**(attempt-1) seconds, capped at MAX,
    # with jitter (between half and all of it).
    RETRY_BACKOFF_BASE = Setting(30.0, number("seconds", positive=False))
    RETRY_BACKOFF_MAX = Setting(3600.0, number("seconds", positive=False))
    # How long claimed rows stay "sending" before another worker may take them over.
    LEASE_SECONDS = Setting(600, number("seconds", positive=True))
    # Per-account budget shared by all workers: events per window (X: 60,000 / 15 min).
    RATE_LIMIT_EVENTS = Setting(60_000, whole_number(1))
    RATE_LIMIT_WINDOW = Setting(900, number("seconds", positive=True))
    # send_conversions --loop: seconds to sleep when nothing is due.
    LOOP_IDLE_SECONDS = Setting(5.0, number("seconds", positive=True))
    # PostgreSQL: a committed conversion wakes idle --loop workers at once (NOTIFY after
    # the commit, LISTEN in the worker); they still poll every LOOP_IDLE_SECONDS. False:
    # no NOTIFY is sent and workers only poll. No effect on SQLite (workers poll).
    NOTIFY_ON_COMMIT = Setting(True, boolean)
    # Send as soon as a conversion's transaction commits: False (leave it to the command),
    # True (Django tasks, else Celery, else in-process), "tasks", "celery" or "inline".
    SEND_IMMEDIATELY = Setting(False, send_immediately)
    # -- capture (middleware, sources, track) -------------------------------------------
    # How long a captured twclid is used, in seconds (X's longest click window: 30 days).
    TWCLID_TTL = Setting(30 * 24 * 3600, number("seconds", positive=True), check=CAPTURE_CHECK)
    # Treat a request with the Sec-GPC: 1 header as refusing tracking.
    HONOR_GPC = Setting(True, boolean, check=CAPTURE_CHECK)
    # Dotted path to a callable(request) -> bool; False means no consent: nothing is
    # captured and conversions of that request are recorded as skipped.
    CONSENT_CHECK = Setting(None, consent_check, check=CAPTURE_CHECK)
    # request.META key holding the client IP set by your reverse proxy (for example
    # "HTTP_X_REAL_IP", or "HTTP_X_FORWARDED_FOR" with TRUSTED_PROXY_COUNT). None: use
    # REMOTE_ADDR; forwarding headers are never trusted unless named here.
    CLIENT_IP_HEADER = Setting(None, meta_key, check=CAPTURE_CHECK)
    # With an X-Forwarded-For style header: how many proxies of yours append to it (the
    # client IP is read that many entries from the right).
    TRUSTED_PROXY_COUNT = Setting(1, whole_number(1), check=CAPTURE_CHECK)
    # Models bound to X events: a list of dicts (see README "Binding your models").
    SOURCES = Setting([], source_entries, check=SOURCES_CHECK)
    # -- pixel template tags ----------------------------------------------------------------
    # The pixel whose base code {% xconversions_pixel %} renders (a Pixel.pixel_id); empty:
    # the only Pixel in the database.
    PIXEL_ID = Setting("", text())
    # -- REST API ---------------------------------------------------------------------------
    # Dotted paths of DRF classes for the API; None for authentication means DRF's defaults.
    API_AUTHENTICATION_CLASSES = Setting(None, class_paths_or_none, check=API_CHECK)
    # The default: staff with the model permission (view to read, add to record).
    API_PERMISSION_CLASSES = Setting(
        ["django_xconversions.api.permissions.StaffModelPermissions"],
        class_paths,
        check=API_CHECK,
    )
    # Requests per user (or per IP when anonymous), in DRF's rate syntax.
    API_THROTTLE_RATE = Setting("600/minute", throttle_rate, check=API_CHECK)
    API_PAGE_SIZE = Setting(100, whole_number(1, 1000), check=API_CHECK)
    # -- retention --------------------------------------------------------------------------
    # purge_conversions deletes sent, failed and skipped rows older than this many days.
    RETENTION_DAYS = Setting(90, number("days", positive=False))

    def __init__(self) -> None:
        # The XCONVERSIONS object the values were read from, and the values by name.
        self._cache: tuple[object, dict[str, object]] = (_NOT_READ, {})

    def value_of(self, setting: Setting[T]) -> T:
        source = getattr(django_settings, SETTING_NAME, None)
        read_from, values = self._cache
        if read_from is not source:  # another dict: assigned without setting_changed
            values = {}
            self._cache = (source, values)
        if setting.name in values:
            return cast(T, values[setting.name])
        value = setting.parse(configured(setting.name, source))
        values[setting.name] = value
        return value

    def reset(self) -> None:
        """Forget the values read (XCONVERSIONS changed)."""
        self._cache = (_NOT_READ, {})

    if not TYPE_CHECKING:  # mypy reports unknown names itself

        def __getattr__(self, name: str) -> NoReturn:
            raise AttributeError(f"Unknown django-xconversions setting {did_you_mean(name)}")


SETTINGS: dict[str, Setting[Any]] = {
    name: value for name, value in vars(Settings).items() if isinstance(value, Setting)
}
# Each key and its default. README.md documents the same table.
DEFAULTS: dict[str, object] = {name: setting.default for name, setting in SETTINGS.items()}

xsettings = Settings()


def _reset_on_change(*, setting: str, **kwargs: object) -> None:
    if setting == SETTING_NAME:
        xsettings.reset()


# As django-tasks does for TASKS: override_settings and reloads see the new value.
setting_changed.connect(_reset_on_change, dispatch_uid="django_xconversions.conf")


def user_settings(source: object = _NOT_READ) -> dict[str, object]:
    """The XCONVERSIONS dict as the project wrote it ({} when absent or not a dict)."""
    value = getattr(django_settings, SETTING_NAME, None) if source is _NOT_READ else source
    return dict(value) if isinstance(value, dict) else {}


def configured(name: str, source: object = _NOT_READ) -> object:
    """The raw value of a setting: the project's, else the default."""
    return user_settings(source).get(name, DEFAULTS[name])


def problem(name: str) -> str | None:
    """What is wrong with a setting's current value (the message reading it would raise),
    or None. Read afresh, never from the cache."""
    try:
        SETTINGS[name].parse(configured(name))
    except SettingError as exc:
        return str(exc)
    return None


def names_checked_by(check: str) -> list[str]:
    """The settings whose broken values are reported under ``check``, in README order."""
    return [name for name, setting in SETTINGS.items() if setting.check == check]


def closest_setting(name: object) -> str | None:
    """The known setting ``name`` most likely misspells, or None."""
    found = difflib.get_close_matches(str(name).upper(), list(SETTINGS), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: object) -> str:
    """``XCONVERSIONS["SEND_IMEDIATELY"]; did you mean SEND_IMMEDIATELY?``"""
    path = setting_path(str(name))
    match = closest_setting(name)
    if match is None:
        return f'{path} (README, "Settings", lists every key).'
    return f"{path}; did you mean {match}?"


def encryption_keys() -> tuple[str, ...]:
    """``ENCRYPTION_KEY`` as a tuple of non-empty key strings, first one current; () when
    none is set. SettingError when the setting is not a key or a list of keys."""
    return xsettings.ENCRYPTION_KEY


def encryption_key_problem() -> str | None:
    """Why ``ENCRYPTION_KEY`` cannot be read as keys, or None. Unlike reading it, None (an
    environment variable that is not set) is a problem here: at start-up it is a mistake."""
    if user_settings().get("ENCRYPTION_KEY", "") is None:
        return (
            f"{setting_path('ENCRYPTION_KEY')} must be a Fernet key (str) or a list of them, "
            "not None (is its environment variable set?)."
        )
    return problem("ENCRYPTION_KEY")
