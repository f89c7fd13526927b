"""POSTed conversions: check every item, then store all of them in one transaction or none.

Items go through ``track(commit=False)`` (track()'s checks and hashing, no write), then are
inserted the way track() inserts (``tracking.store_many``), so that nothing is written
while any item is still unchecked. Unlike track(), the API refuses an event no tag can
take yet instead of holding it: its caller can correct the key at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables
from rest_framework import serializers
from rest_framework.settings import api_settings

from django_xconversions import context, routing, tracking
from django_xconversions.api.serializers import ConversionInputSerializer
from django_xconversions.models import Conversion
from django_xconversions.wording import plural

logger = logging.getLogger("django_xconversions.api")

# The API's own limit, apart from X's per-request limit (payload.MAX_EVENTS_PER_REQUEST):
# a POST is checked and stored in one transaction, and this bounds its time and the rows it
# writes at once. Stored conversions go to X in batches of BATCH_SIZE whatever a POST held.
# Equal to X's limit so that a client batching for X can post the same batches.
MAX_ITEMS = 500

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
    event = kwargs.pop("event")
    conversion: Conversion | None = None
    errors: FieldErrors = {}
    try:
        # The API request is the calling server's: its IP, user agent, session twclid and
        # Sec-GPC header are not the converting visitor's.
        with context.detached():
            conversion = tracking.track(event, commit=False, **kwargs)
    except ValidationError as exc:
        errors = dict(exc.message_dict)
    # What track() would hold is refused, beside the item's other errors.
    route = routing.resolve(event) if "event" not in errors else None
    if route is not None and not route.routable:
        errors = {"event": [route.message], **errors}
    return (None, errors) if errors else (conversion, {})


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


def _event(conversion: Conversion) -> str:
    tag = conversion.event_tag
    return conversion.event_key or (tag.key if tag is not None else None) or ""


def store_all(conversions: Sequence[Conversion]) -> list[Stored]:
    """Insert all (repeats of a stored event and conversion_id are no-ops), in order."""
    columns = ("event_tag_id", "event_key", "conversion_id")
    with transaction.atomic():
        matching = Conversion.objects.filter(tracking.matching(conversions))
        # Read before inserting only to report "created"; a concurrent request storing
        # the same conversion can make both say created, never store it twice.
        existing = {tracking.row_identity(*row) for row in matching.values_list(*columns)}
        tracking.store_many(conversions)
        rows = {
            tracking.row_identity(tag_id, key, cid): (pk, status, email, phone)
            for pk, tag_id, key, cid, status, email, phone in matching.values_list(
                "pk", *columns, "status", "hashed_email", "hashed_phone"
            )
        }
    stored: list[Stored] = []
    seen: set[tracking.Identity] = set()
    for conversion in conversions:
        identity = tracking.identity(conversion)
        pk, status, email, phone = rows[identity]
        created = identity not in existing and identity not in seen
        seen.add(identity)
        stored.append(
            Stored(pk, _event(conversion), conversion.conversion_id, status, created, email, phone)
        )
    new = sum(s.created for s in stored)
    logger.info(
        "API stored %s, %d new.",
        plural(len(stored), "conversion"),
        new,
        extra={"events": len(stored), "new": new},
    )
    return stored
