"""``track()``: record one business event as a pending conversion, hashed identifiers only.

Every argument is validated before anything is written; all problems are reported at once
in one ``ValidationError`` keyed by field, each message naming the rule. Calling it again
with the same event and conversion_id returns the stored row instead of a duplicate.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from django_xconversions import context, identifiers, immediate
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.currencies import is_iso_4217
from django_xconversions.models import Conversion, EventTag

CONTENT_KEYS = frozenset(
    {"content_id", "content_group_id", "content_name", "content_price", "content_type", "num_items"}
)
CONVERSION_ID_MAX_LENGTH = 255
DESCRIPTION_MAX_LENGTH = 1000

Errors = dict[str, list[str]]


def _collect(errors: Errors, field: str, check: Callable[[], Any]) -> Any:
    """Run one normalisation; keep its ValidationError messages under ``field``."""
    try:
        return check()
    except ValidationError as exc:
        messages = exc.message_dict.values() if hasattr(exc, "error_dict") else [exc.messages]
        errors.setdefault(field, []).extend(m for group in messages for m in group)
        return None


def _decimal(value: Any, field: str, errors: Errors) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number < 0:
        errors.setdefault(field, []).append(f"{field} must be a number of at least 0.")
        return None
    return number


def _positive_int(value: Any, field: str, errors: Errors) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        errors.setdefault(field, []).append(f"{field} must be a whole number greater than 0.")
        return None
    return value


def clean_contents(contents: Iterable[Mapping[str, Any]], errors: Errors) -> list[dict[str, Any]]:
    cleaned: list[dict[str, Any]] = []
    for index, item in enumerate(contents):
        field = f"contents[{index}]"
        if not isinstance(item, Mapping):
            errors.setdefault(field, []).append(f"{field} must be a mapping of content fields.")
            continue
        unknown = sorted(set(item) - CONTENT_KEYS)
        if unknown:
            allowed = ", ".join(sorted(CONTENT_KEYS))
            errors.setdefault(field, []).append(
                f"{field} has unknown keys {', '.join(unknown)} (allowed: {allowed})."
            )
        entry = {k: v for k, v in item.items() if k in CONTENT_KEYS and v not in (None, "")}
        if "content_price" in entry:
            price = _decimal(entry["content_price"], f"{field}.content_price", errors)
            # Kept as text: exact in JSON storage, and payload.py sends it as a number.
            entry["content_price"] = str(price) if price is not None else None
        if "num_items" in entry:
            entry["num_items"] = _positive_int(entry["num_items"], f"{field}.num_items", errors)
        for key in ("content_id", "content_group_id", "content_name", "content_type"):
            if key in entry:
                entry[key] = str(entry[key])
        cleaned.append(entry)
    return cleaned


# Tags change rarely and a bound model's save must stay cheap: look keys up at most once
# a minute per process (any local tag save or delete clears the cache at once).
TAG_CACHE_SECONDS = 60.0
_tag_cache: dict[str, tuple[float, EventTag | None]] = {}


def clear_tag_cache(**kwargs: Any) -> None:
    _tag_cache.clear()


def tag_for_key(event: str) -> EventTag | None:
    now = time.monotonic()
    cached = _tag_cache.get(event)
    if cached is not None and cached[0] > now:
        return cached[1]
    tag = EventTag.objects.filter(key=event, deleted=False).select_related("pixel").first()
    _tag_cache[event] = (now + TAG_CACHE_SECONDS, tag)
    return tag


def _resolve_tag(event: str, errors: Errors) -> EventTag | None:
    tag = tag_for_key(event)
    if tag is None:
        errors.setdefault("event", []).append(
            f"No event tag has the key {event!r}: set the key of a tag in the admin "
            "(Event tags) or run manage.py sync_tags."
        )
    elif tag.pixel_id is None:
        errors.setdefault("event", []).append(
            f"Event tag {event!r} has no pixel to send through: choose one in the admin."
        )
    return tag


def track(
    event: str,
    *,
    request: HttpRequest | None = None,
    user: Any = None,
    email: str | None = None,
    phone: str | None = None,
    twclid: str | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    value: Any = None,
    currency: str | None = None,
    number_items: int | None = None,
    contents: Iterable[Mapping[str, Any]] | None = None,
    conversion_id: str | None = None,
    conversion_time: dt.datetime | None = None,
    description: str | None = None,
    source: models.Model | None = None,
) -> Conversion:
    """Record a conversion for the event tag whose key is ``event``; see the README.

    Identifiers not given are taken from ``request``, else from the request being handled
    (set by TwclidMiddleware). When that request refused tracking, the row is stored
    ``skipped`` with the reason and without identifiers.
    """
    conversion = build(
        event,
        request=request,
        user=user,
        email=email,
        phone=phone,
        twclid=twclid,
        ip_address=ip_address,
        user_agent=user_agent,
        value=value,
        currency=currency,
        number_items=number_items,
        contents=contents,
        conversion_id=conversion_id,
        conversion_time=conversion_time,
        description=description,
        source=source,
    )
    return store(conversion)


def build(
    event: str,
    *,
    request: HttpRequest | None = None,
    user: Any = None,
    email: str | None = None,
    phone: str | None = None,
    twclid: str | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    value: Any = None,
    currency: str | None = None,
    number_items: int | None = None,
    contents: Iterable[Mapping[str, Any]] | None = None,
    conversion_id: str | None = None,
    conversion_time: dt.datetime | None = None,
    description: str | None = None,
    source: models.Model | None = None,
) -> Conversion:
    """track()'s checks and hashing: an unsaved Conversion, or one ValidationError
    naming every field and rule broken."""
    errors: Errors = {}
    request_context = context.for_request(request) if request is not None else context.current()
    refusal = request_context.refusal if request_context is not None else ""
    if request_context is not None and not refusal:
        twclid = twclid or request_context.twclid
        ip_address = ip_address or request_context.ip_address
        user_agent = user_agent or request_context.user_agent
    if email is None and user is not None:
        email = getattr(user, "email", None) or None

    tag = _resolve_tag(event, errors)
    fields: dict[str, Any] = {
        "hashed_email": _collect(errors, "email", lambda: identifiers.hash_email(email))
        if email
        else "",
        "hashed_phone": _collect(errors, "phone", lambda: identifiers.hash_phone(phone))
        if phone
        else "",
        "twclid": _collect(errors, "twclid", lambda: identifiers.normalize_twclid(twclid))
        if twclid
        else "",
        "ip_address": _collect(errors, "ip_address", lambda: identifiers.normalize_ip(ip_address))
        if ip_address
        else None,
        "user_agent": identifiers.normalize_user_agent(user_agent) if user_agent else "",
    }
    strong = fields["hashed_email"] or fields["hashed_phone"] or fields["twclid"]
    device = fields["ip_address"] and fields["user_agent"]
    if not strong and not device and not errors and not refusal:
        errors["identifiers"] = [
            "At least one user identifier must be provided: email, phone, twclid, or "
            "ip_address together with user_agent."
        ]

    if value is not None:
        fields["value"] = _decimal(value, "value", errors)
        currency = currency or xsettings.DEFAULT_CURRENCY
    if currency is not None:
        currency = str(currency).upper()
        if not is_iso_4217(currency):
            default = setting_path("DEFAULT_CURRENCY")
            errors.setdefault("currency", []).append(
                f"currency must be an ISO 4217 code such as USD (default: {default})."
            )
        fields["currency"] = currency
    if number_items is not None:
        fields["number_items"] = _positive_int(number_items, "number_items", errors)
    if contents is not None:
        fields["contents"] = clean_contents(contents, errors)
    if description is not None:
        if len(str(description)) > DESCRIPTION_MAX_LENGTH:
            errors.setdefault("description", []).append(
                f"description must be at most {DESCRIPTION_MAX_LENGTH} characters."
            )
        fields["description"] = str(description)
    conversion_id = str(conversion_id) if conversion_id is not None else uuid.uuid4().hex
    if not conversion_id or len(conversion_id) > CONVERSION_ID_MAX_LENGTH:
        errors.setdefault("conversion_id", []).append(
            f"conversion_id must be 1 to {CONVERSION_ID_MAX_LENGTH} characters."
        )
    when = conversion_time or timezone.now()
    if timezone.is_naive(when):
        when = timezone.make_aware(when, timezone.get_default_timezone())

    if errors or tag is None:
        raise ValidationError(errors)
    if source is not None:
        from django.contrib.contenttypes.models import ContentType

        fields["source_type"] = ContentType.objects.get_for_model(source)
        fields["source_id"] = str(source.pk)
    if refusal:
        # Kept visible as skipped, but nothing that identifies the visitor is stored.
        fields.update(hashed_email="", hashed_phone="", twclid="", ip_address=None, user_agent="")
        fields.update(status=Conversion.Status.SKIPPED, error_reason="consent", last_error=refusal)
    return Conversion(
        event_tag=tag,
        pixel=tag.pixel,
        conversion_id=conversion_id,
        conversion_time=when,
        **fields,
    )


def store_many(conversions: Sequence[Conversion]) -> None:
    """Insert the conversions whose (event tag, conversion_id) is not stored yet.

    One INSERT ... ON CONFLICT DO NOTHING: no savepoint, and a repeat (a second save of
    the same order, a retried request) neither duplicates nor breaks the caller's
    transaction.
    """
    Conversion.objects.bulk_create(conversions, ignore_conflicts=True)
    for conversion in conversions:
        immediate.conversion_stored(conversion)


def store(conversion: Conversion, *, fetch: bool = True) -> Conversion:
    """Insert ``conversion`` unless already stored; with ``fetch``, return the stored row
    (the existing one on a repeat)."""
    store_many([conversion])
    if not fetch:
        return conversion
    return Conversion.objects.get(
        event_tag_id=conversion.event_tag_id, conversion_id=conversion.conversion_id
    )
