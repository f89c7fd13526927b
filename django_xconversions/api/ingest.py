"""POSTed conversions: check every item, then store all of them in one transaction or none.

Items go through ``tracking.build()`` (track()'s checks and hashing, no write), then are
inserted the way ``tracking.store()`` does it: track() split so that nothing is written
while any item is still unchecked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.views.decorators.debug import sensitive_variables
from rest_framework import serializers
from rest_framework.settings import api_settings

from django_xconversions import context, tracking
from django_xconversions.api.serializers import ConversionInputSerializer
from django_xconversions.models import Conversion

logger = logging.getLogger("django_xconversions.api")

MAX_ITEMS = 500  # X's own limit of events per request.

FieldErrors = dict[str, Any]
Checked = tuple[Conversion | None, FieldErrors]
NON_FIELD = api_settings.NON_FIELD_ERRORS_KEY


@dataclass(frozen=True)
class Stored:
    id: int
    event: str
    conversion_id: str
    status: str
    created: bool
    hashed_email: str
    hashed_phone: str


# Items hold raw emails and phone numbers: error reports show no local variable of these
# functions or of anything they call.
@sensitive_variables()
def check(item: Any, serializer: ConversionInputSerializer | None = None) -> Checked:
    """One item: an unsaved Conversion, or its errors keyed by field."""
    # One serializer for every item of a list, as DRF's ListSerializer does: building
    # its fields costs more than validating an item.
    serializer = serializer or ConversionInputSerializer()
    try:
        data = serializer.run_validation(item)
    except serializers.ValidationError as exc:
        detail = exc.detail  # a list when the item itself is null
        return None, dict(detail) if isinstance(detail, dict) else {NON_FIELD: detail}
    kwargs = {k: v for k, v in data.items() if v not in (None, "")}  # blank: not given
    try:
        # The API request is the calling server's: its IP, user agent, session twclid and
        # Sec-GPC header are not the converting visitor's.
        with context.detached():
            return tracking.build(kwargs.pop("event"), **kwargs), {}
    except ValidationError as exc:
        return None, dict(exc.message_dict)


@sensitive_variables()
def check_all(items: Sequence[Any]) -> tuple[list[Conversion], dict[str, FieldErrors]]:
    serializer = ConversionInputSerializer()
    built: list[Conversion] = []
    errors: dict[str, FieldErrors] = {}
    for index, item in enumerate(items):
        conversion, item_errors = check(item, serializer)
        if conversion is None:
            errors[str(index)] = item_errors
        else:
            built.append(conversion)
    return built, errors


# A routed conversion is unique per (event tag, conversion_id); a held one, with no tag
# yet, per (event key, conversion_id).
Identity = tuple[str, int | str, str]


def _identity(tag_id: int | None, event_key: str, conversion_id: str) -> Identity:
    if tag_id is not None:
        return ("tag", tag_id, conversion_id)
    return ("key", event_key, conversion_id)


def _identity_of(conversion: Conversion) -> Identity:
    return _identity(conversion.event_tag_id, conversion.event_key, conversion.conversion_id)


def _matching(conversions: Sequence[Conversion]) -> Q:
    ids: dict[tuple[str, int | str], set[str]] = {}
    for conversion in conversions:
        kind, scope, conversion_id = _identity_of(conversion)
        ids.setdefault((kind, scope), set()).add(conversion_id)
    query = Q(pk__in=[])
    for (kind, scope), conversion_ids in ids.items():
        same = Q(conversion_id__in=sorted(conversion_ids))
        if kind == "tag":
            query |= same & Q(event_tag_id=scope)
        else:
            query |= same & Q(event_tag__isnull=True, event_key=scope)
    return query


def _event(conversion: Conversion) -> str:
    tag = conversion.event_tag
    return conversion.event_key or (tag.key if tag is not None else None) or ""


def store_all(conversions: Sequence[Conversion]) -> list[Stored]:
    """Insert all (repeats of a stored event and conversion_id are no-ops), in order."""
    columns = ("event_tag_id", "event_key", "conversion_id")
    with transaction.atomic():
        matching = Conversion.objects.filter(_matching(conversions))
        # Read before inserting only to report "created"; a concurrent request storing
        # the same conversion can make both say created, never store it twice.
        existing = {_identity(*row) for row in matching.values_list(*columns)}
        tracking.store_many(conversions)
        rows = {
            _identity(tag_id, key, cid): (pk, status, email, phone)
            for pk, tag_id, key, cid, status, email, phone in matching.values_list(
                "pk", *columns, "status", "hashed_email", "hashed_phone"
            )
        }
    stored: list[Stored] = []
    seen: set[Identity] = set()
    for conversion in conversions:
        identity = _identity_of(conversion)
        pk, status, email, phone = rows[identity]
        created = identity not in existing and identity not in seen
        seen.add(identity)
        stored.append(
            Stored(pk, _event(conversion), conversion.conversion_id, status, created, email, phone)
        )
    new = sum(s.created for s in stored)
    logger.info(
        "API stored %d conversion(s), %d new.",
        len(stored),
        new,
        extra={"events": len(stored), "new": new},
    )
    return stored
