"""``track()``: record one business event as a conversion, hashed identifiers only;
``track(commit=False)`` builds the row without storing it, ``track_many()`` stores many
with one INSERT. All three build rows the same way (``_conversion``).

Every argument is validated before anything is written; all problems are reported at once
in one ``ValidationError`` keyed by field, each message naming the rule, and nothing else
is ever raised for a bad value: text is free of NUL characters and lone surrogates and
fits its column, numbers fit their columns and X's rules, times are datetimes in the
window below. Calling it again with the same event and conversion_id returns the stored
row instead of a duplicate. An event no tag can take yet is stored ``held`` with the
reason (see routing.py), never dropped.

Raw emails and phone numbers pass through these frames: they are hidden from Django's
error reports (``sensitive_variables``).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypedDict

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from django_xconversions import claimed, context, identifiers, immediate, observe, routing
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.currencies import is_iso_4217
from django_xconversions.models import Conversion
from django_xconversions.payload import CONTENT_KEYS, MSG_NO_IDENTIFIER

if TYPE_CHECKING:
    from typing_extensions import Unpack

# Kept importable from here: the tag cache lives with the routing rules.
clear_tag_cache = routing.clear_tag_cache
tag_for_key = routing.tag_for_key

CONTENT_TEXT_KEYS = ("content_id", "content_group_id", "content_name", "content_type")
CONVERSION_ID_MAX_LENGTH = 255  # Conversion.conversion_id
DESCRIPTION_MAX_LENGTH = 1000
CONTENT_TEXT_MAX_LENGTH = 1000
SOURCE_ID_MAX_LENGTH = 64  # Conversion.source_id
# EventTag.key is a slug of at most 64 characters: no tag could ever take another key.
EVENT_KEY = re.compile(r"[-a-zA-Z0-9_]{1,64}")
# Conversion.value is DecimalField(max_digits=18, decimal_places=4).
VALUE_LIMIT = Decimal("1e14")
VALUE_PLACES = Decimal("0.0001")
# SQLite keeps decimals as doubles and Django reads them back to 15 digits: a value that
# would come back as 10^14 (above 99999999999999.9 or so) could be written but not read.
_FLOAT_DIGITS = Context(prec=15)
# PositiveIntegerField is a 32-bit integer on PostgreSQL; X's counts fit easily.
INTEGER_MAX = 2**31 - 1
# X states no range for conversion_time. Outside this window a time is a bug (year 1 from
# an empty default, 9999 as "never"), and near datetime's limits a time-zone shift
# overflows; X's attribution windows (at most 30 days) make older conversions useless.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)  # exclusive
TIME_WINDOW = "between 2000-01-01 and 2099-12-31 (UTC)"

Errors = dict[str, list[str]]


def _add(errors: Errors, field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


def _collect(errors: Errors, field: str, check: Callable[[], Any]) -> Any:
    """Run one normalisation; keep its ValidationError messages under ``field``."""
    try:
        return check()
    except ValidationError as exc:
        messages = exc.message_dict.values() if hasattr(exc, "error_dict") else [exc.messages]
        errors.setdefault(field, []).extend(m for group in messages for m in group)
        return None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (PostgreSQL refuses NUL, UTF-8 lone surrogates)."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (it contains a lone surrogate)"
    return None


def _as_text(value: Any) -> str | None:
    """``value`` as text, or None for what has no sensible text (bytes, containers,
    booleans, an int too long to print, an object whose str() fails)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | bytes | bytearray | Mapping | list | tuple | set | frozenset):
        return None
    try:
        return str(value)
    except Exception:  # whatever the caller's object does there, it is not text
        return None


def clean_text(
    value: Any, field: str, errors: Errors, max_length: int, *, min_length: int = 0
) -> str | None:
    """``value`` as storable text within ``max_length``, else None and the rule broken."""
    text = _as_text(value)
    if text is None:
        _add(errors, field, f"{field} must be text.")
        return None
    problem = text_problem(text)
    if problem:
        _add(errors, field, f"{field} {problem}.")
        return None
    if not min_length <= len(text) <= max_length:
        rule = f"{min_length} to {max_length}" if min_length else f"at most {max_length}"
        _add(errors, field, f"{field} must be {rule} characters.")
        return None
    return text


def _clean_identifier(value: Any, field: str, errors: Errors) -> bool:
    """NUL and lone surrogates never reach hashing or the database."""
    problem = text_problem(value) if isinstance(value, str) else None
    if problem:
        _add(errors, field, f"{field} {problem}.")
    return problem is None


def _decimal(value: Any, field: str, errors: Errors, *, places: bool = True) -> Decimal | None:
    number: Decimal | None
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            number = None
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        else:
            number = Decimal(str(value).strip())  # str(): 0.1, not its binary expansion
    except (InvalidOperation, ValueError, TypeError):
        number = None
    if number is not None and number.is_finite() and 0 <= number < VALUE_LIMIT:
        if not places:
            return number
        number = number.quantize(VALUE_PLACES, rounding=ROUND_HALF_UP)
        if number < VALUE_LIMIT and _FLOAT_DIGITS.create_decimal_from_float(float(number)) < (
            VALUE_LIMIT
        ):
            return number
    _add(
        errors,
        field,
        f"{field} must be a number of at least 0 and below 100000000000000 (10^14).",
    )
    return None


def _positive_int(value: Any, field: str, errors: Errors) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= INTEGER_MAX:
        _add(errors, field, f"{field} must be a whole number from 1 to {INTEGER_MAX}.")
        return None
    return value


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _shown_key(key: Any) -> str:
    # Only plain names are repeated in messages (they end up in logs and the admin).
    return key if isinstance(key, str) and re.fullmatch(r"\w{1,40}", key) else "(unnamed)"


def clean_contents(contents: Any, errors: Errors) -> list[dict[str, Any]]:
    if isinstance(contents, str | bytes | bytearray | Mapping) or not isinstance(
        contents, Iterable
    ):
        _add(errors, "contents", "contents must be a list of mappings of content fields.")
        return []
    cleaned: list[dict[str, Any]] = []
    for index, item in enumerate(contents):
        field = f"contents[{index}]"
        if not isinstance(item, Mapping):
            _add(errors, field, f"{field} must be a mapping of content fields.")
            continue
        unknown = sorted({_shown_key(key) for key in item if key not in CONTENT_KEYS})
        if unknown:
            allowed = ", ".join(sorted(CONTENT_KEYS))
            _add(
                errors,
                field,
                f"{field} has unknown keys {', '.join(unknown)} (allowed: {allowed}).",
            )
        entry = {k: v for k, v in item.items() if k in CONTENT_KEYS and not _is_blank(v)}
        if "content_price" in entry:
            price = _decimal(entry["content_price"], f"{field}.content_price", errors, places=False)
            # Kept as text: exact in JSON storage, and payload.py sends it as a number.
            entry["content_price"] = str(price) if price is not None else None
        if "num_items" in entry:
            entry["num_items"] = _positive_int(entry["num_items"], f"{field}.num_items", errors)
        for key in CONTENT_TEXT_KEYS:
            if key in entry:
                entry[key] = clean_text(
                    entry[key], f"{field}.{key}", errors, CONTENT_TEXT_MAX_LENGTH
                )
        cleaned.append(entry)
    return cleaned


def _conversion_time(value: Any, errors: Errors) -> dt.datetime | None:
    """An aware datetime in the accepted window; naive ones are read in TIME_ZONE."""
    if value is None:
        return timezone.now()
    if not isinstance(value, dt.datetime):
        _add(
            errors,
            "conversion_time",
            f"conversion_time must be a datetime (got {type(value).__name__}); a naive one "
            "is read in settings.TIME_ZONE.",
        )
        return None
    window = f"conversion_time must be {TIME_WINDOW}"
    # The year first: shifting a time near year 1 or 9999 to UTC would overflow.
    if not EARLIEST.year <= value.year < LATEST.year:
        _add(errors, "conversion_time", f"{window} (got year {value.year}).")
        return None
    try:
        aware: dt.datetime = (
            timezone.make_aware(value, timezone.get_default_timezone())
            if timezone.is_naive(value)
            else value
        )
        inside = EARLIEST <= aware < LATEST
    except (ValueError, OverflowError, TypeError):
        _add(errors, "conversion_time", "conversion_time has a time zone that cannot be read.")
        return None
    if not inside:
        _add(errors, "conversion_time", f"{window}.")
        return None
    return aware


def _event(event: Any, errors: Errors) -> str | None:
    if isinstance(event, str) and EVENT_KEY.fullmatch(event):
        return event
    _add(
        errors,
        "event",
        "event must be the key of an event tag: 1 to 64 letters, digits, '-' or '_'.",
    )
    return None


def source_fields(source: Any, errors: Errors) -> dict[str, Any]:
    """The generic relation columns for ``source``, a saved model instance."""
    key = getattr(source, "pk", None) if isinstance(source, models.Model) else None
    source_id = _as_text(key) if key is not None else None
    if source_id is None or text_problem(source_id) or len(source_id) > SOURCE_ID_MAX_LENGTH:
        _add(
            errors,
            "source",
            f"source must be a saved model instance (primary key at most "
            f"{SOURCE_ID_MAX_LENGTH} characters).",
        )
        return {}
    from django.contrib.contenttypes.models import ContentType

    return {"source_type": ContentType.objects.get_for_model(source), "source_id": source_id}


class ConversionArguments(TypedDict, total=False):
    """The keyword arguments of ``track()`` after ``event``, all optional (see the README);
    each ``track_many()`` item is one of these with its ``event``."""

    request: HttpRequest | None
    user: Any
    email: str | None
    phone: str | None
    twclid: str | None
    ip_address: str | None
    user_agent: str | None
    value: Any
    currency: str | None
    number_items: int | None
    contents: Iterable[Mapping[str, Any]] | None
    conversion_id: str | None
    conversion_time: dt.datetime | None
    description: str | None
    source: models.Model | None


class TrackItem(ConversionArguments):
    """One conversion for ``track_many()``: ``track()``'s arguments, ``event`` included."""

    event: str


ARGUMENT_NAMES = tuple(ConversionArguments.__annotations__)


def _unknown(names: Iterable[Any]) -> list[Any]:
    return [name for name in names if name not in ConversionArguments.__annotations__]


@sensitive_variables()
def track(
    event: str, *, commit: bool = True, **arguments: Unpack[ConversionArguments]
) -> Conversion:
    """Record a conversion for the event tag whose key is ``event``; see the README.

    Identifiers not given are taken from ``request``, else from the request being handled
    (set by TwclidMiddleware). When that request refused tracking, the row is stored
    ``skipped`` with the reason and without identifiers. When no tag can take ``event``
    yet, the row is stored ``held`` with the reason and routed once that is fixed.

    With ``commit=False`` nothing is written: the row is returned unsaved, as it would
    be stored (``save()`` stores it). Every bad argument is reported at once in one
    ValidationError keyed by field; an argument track() does not take is a TypeError.
    """
    unknown = _unknown(arguments)
    if unknown:
        raise TypeError(f"track() got an unexpected keyword argument {unknown[0]!r}")
    conversion = _conversion(event, arguments, routing.resolve)
    return store(conversion) if commit else conversion


@sensitive_variables()
def track_many(items: Iterable[TrackItem]) -> list[Conversion]:
    """Record many conversions with one INSERT; each item holds ``track()``'s arguments,
    ``event`` included.

    Every item is checked first. If any is bad, nothing is stored and one ValidationError
    is raised, keyed ``items[<index>].<field>`` with the rule broken, for every bad item.
    Each item is built as ``track()`` builds it (held, skipped, identifiers taken from the
    request being handled). Returns the stored rows in the items' order; a repeat of a
    stored (event, conversion_id) returns the row stored first, as ``track()`` does.
    ``conversion_recorded`` is sent for each row once the transaction commits, and idle
    workers are woken (or SEND_IMMEDIATELY sends) once per pixel.
    """
    resolve = functools.cache(routing.resolve)  # one lookup per key for the whole call
    conversions: list[Conversion] = []
    errors: Errors = {}
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, Mapping) or "event" not in item:
            _add(errors, where, f"{where} must be a mapping of track() arguments with an event.")
            continue
        unknown = _unknown(name for name in item if name != "event")
        if unknown:
            allowed = ", ".join(("event", *ARGUMENT_NAMES))
            for name in unknown:
                shown = f"{where}.{_shown_key(name)}"
                _add(errors, shown, f"{shown} is not an argument of track() (allowed: {allowed}).")
            continue
        arguments = {name: value for name, value in item.items() if name != "event"}
        try:
            conversions.append(_conversion(item["event"], arguments, resolve))
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[f"{where}.{field}"] = messages
    if errors:
        raise ValidationError(errors)
    store_many(conversions)
    stored = find_stored(conversions)
    return [stored[identity(conversion)] for conversion in conversions]


@sensitive_variables()
def _conversion(
    event: Any, arguments: Mapping[str, Any], resolve: Callable[[str], routing.Route]
) -> Conversion:
    """track()'s checks and hashing: an unsaved Conversion, or one ValidationError
    naming every field and rule broken. An event no tag can take yet gives a ``held``
    row. ``arguments`` are ConversionArguments, values of any type: each is checked."""
    request = arguments.get("request")
    user = arguments.get("user")
    email = arguments.get("email")
    phone = arguments.get("phone")
    twclid = arguments.get("twclid")
    ip_address = arguments.get("ip_address")
    user_agent = arguments.get("user_agent")
    value = arguments.get("value")
    currency = arguments.get("currency")
    number_items = arguments.get("number_items")
    contents = arguments.get("contents")
    conversion_id = arguments.get("conversion_id")
    conversion_time = arguments.get("conversion_time")
    description = arguments.get("description")
    source = arguments.get("source")
    errors: Errors = {}
    if request is not None and not isinstance(request, HttpRequest):
        _add(errors, "request", "request must be a Django HttpRequest.")
        request = None
    request_context = context.for_request(request) if request is not None else context.current()
    refusal = request_context.refusal if request_context is not None else ""
    if request_context is not None and not refusal:
        twclid = twclid or request_context.twclid
        ip_address = ip_address or request_context.ip_address
        user_agent = user_agent or request_context.user_agent
    if email is None and user is not None:
        email = getattr(user, "email", None) or None

    key = _event(event, errors)
    route = resolve(key) if key is not None else None
    fields: dict[str, Any] = {
        "hashed_email": _collect(errors, "email", lambda: identifiers.hash_email(email))
        if email and _clean_identifier(email, "email", errors)
        else "",
        "hashed_phone": _collect(errors, "phone", lambda: identifiers.hash_phone(phone))
        if phone and _clean_identifier(phone, "phone", errors)
        else "",
        "twclid": _collect(errors, "twclid", lambda: identifiers.normalize_twclid(twclid))
        if twclid
        else "",
        "ip_address": _collect(errors, "ip_address", lambda: identifiers.normalize_ip(ip_address))
        if ip_address and _clean_identifier(ip_address, "ip_address", errors)
        else None,
        "user_agent": _collect(
            errors, "user_agent", lambda: identifiers.normalize_user_agent(user_agent)
        )
        if user_agent and _clean_identifier(user_agent, "user_agent", errors)
        else "",
    }
    matchable = identifiers.enough_to_match(
        twclid=fields["twclid"],
        hashed_email=fields["hashed_email"],
        hashed_phone=fields["hashed_phone"],
        ip_address=fields["ip_address"],
        user_agent=fields["user_agent"],
    )
    if not matchable and not errors and not refusal:
        errors["identifiers"] = [
            f"{MSG_NO_IDENTIFIER}: email, phone, twclid, or ip_address together with user_agent."
        ]

    if value is not None:
        fields["value"] = _decimal(value, "value", errors)
        currency = currency or xsettings.DEFAULT_CURRENCY
    if currency is not None:
        code = currency.upper() if isinstance(currency, str) else ""
        if not is_iso_4217(code):
            default = setting_path("DEFAULT_CURRENCY")
            _add(
                errors,
                "currency",
                f"currency must be an ISO 4217 code such as USD (default: {default}).",
            )
        fields["currency"] = code
    if number_items is not None:
        fields["number_items"] = _positive_int(number_items, "number_items", errors)
    if contents is not None:
        fields["contents"] = clean_contents(contents, errors)
    if description is not None:
        fields["description"] = clean_text(
            description, "description", errors, DESCRIPTION_MAX_LENGTH
        )
    if conversion_id is not None:
        conversion_id = clean_text(
            conversion_id, "conversion_id", errors, CONVERSION_ID_MAX_LENGTH, min_length=1
        )
    when = _conversion_time(conversion_time, errors)
    if source is not None:
        fields.update(source_fields(source, errors))

    if errors or route is None or when is None:
        raise ValidationError(errors)
    tag = route.tag if route.routable else None
    fields["event_key"] = route.key
    if refusal:
        # Kept visible as skipped, but nothing that identifies the visitor is stored.
        fields.update(hashed_email="", hashed_phone="", twclid="", ip_address=None, user_agent="")
        fields.update(
            status=Conversion.Status.SKIPPED,
            error_reason=Conversion.ErrorReason.CONSENT,
            last_error=refusal,
        )
    elif not route.routable:
        fields.update(
            status=Conversion.Status.HELD, error_reason=route.reason, last_error=route.message
        )
    conversion = Conversion(
        event_tag=tag,
        pixel=tag.pixel if tag is not None else None,
        conversion_id=conversion_id or uuid.uuid4().hex,
        conversion_time=when,
        **fields,
    )
    if not refusal:
        # Checked and written as X's text now, so that sending passes it on.
        conversion.set_wire_text(claimed.wire_text_of(conversion))
    return conversion


# A routed conversion is unique per (event tag, conversion_id); a held one, with no tag
# yet, per (event key, conversion_id).
Identity = tuple[str, int | str, str]
# Conversions looked up per query by find_stored (each adds a parameter or two).
LOOKUP_CHUNK = 500


def row_identity(tag_id: int | None, event_key: str, conversion_id: str) -> Identity:
    if tag_id is not None:
        return ("tag", tag_id, conversion_id)
    return ("key", event_key, conversion_id)


def identity(conversion: Conversion) -> Identity:
    """What makes ``conversion`` unique: a repeat with the same identity is a no-op."""
    return row_identity(conversion.event_tag_id, conversion.event_key, conversion.conversion_id)


def matching(conversions: Iterable[Conversion]) -> Q:
    """The stored rows with the identities of ``conversions``."""
    ids: dict[tuple[str, int | str], set[str]] = {}
    for conversion in conversions:
        kind, scope, conversion_id = identity(conversion)
        ids.setdefault((kind, scope), set()).add(conversion_id)
    query = Q(pk__in=[])
    for (kind, scope), conversion_ids in ids.items():
        same = Q(conversion_id__in=sorted(conversion_ids))
        if kind == "tag":
            query |= same & Q(event_tag_id=scope)
        else:
            query |= same & Q(event_tag__isnull=True, event_key=scope)
    return query


def find_stored(conversions: Sequence[Conversion]) -> dict[Identity, Conversion]:
    """The stored rows of ``conversions`` (a repeat's: the row stored first), by
    identity; one query per LOOKUP_CHUNK conversions."""
    found: dict[Identity, Conversion] = {}
    for start in range(0, len(conversions), LOOKUP_CHUNK):
        chunk = conversions[start : start + LOOKUP_CHUNK]
        found.update((identity(row), row) for row in Conversion.objects.filter(matching(chunk)))
    return found


def store_many(conversions: Sequence[Conversion]) -> None:
    """Insert the conversions whose identity is not stored yet.

    One INSERT ... ON CONFLICT DO NOTHING: a repeat (a second save of the same order, a
    retried request) neither duplicates nor raises.
    """
    if not conversions:
        return
    Conversion.objects.bulk_create(conversions, ignore_conflicts=True)
    # Counted and announced (conversion_recorded) once committed, before a send it triggers.
    observe.recorded(conversions)
    # The workers are woken once per pixel (outside a transaction each hook runs at once).
    one_per_pixel = {(c.pixel_id, c.status): c for c in reversed(conversions)}
    for conversion in one_per_pixel.values():
        immediate.conversion_stored(conversion)


def store(conversion: Conversion, *, fetch: bool = True) -> Conversion:
    """Insert ``conversion`` unless already stored; with ``fetch``, return the stored row
    (the existing one on a repeat)."""
    store_many([conversion])
    if not fetch:
        return conversion
    return find_stored([conversion])[identity(conversion)]
