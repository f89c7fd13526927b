"""Which event tag and pixel a conversion goes through, and held conversions.

A conversion names its event by key (``track("purchase")``, ``SOURCES[i]["event"]``).
When no tag can take it yet (no tag has the key, the tag has no pixel, the tag was
deleted on X) it is stored ``held`` with the reason and the fix, never dropped, and
``route_held()`` makes it pending once the configuration is fixed. ``route_held()`` runs
on every EventTag save (key set, pixel chosen, a sync's update), at the end of a tag
sync, and from the admin action "Route held conversions".

A held row routed onto a tag that already has a conversion with the same conversion_id
is a repeat of that conversion and is deleted: the first stored wins, exactly as at
capture (INSERT ... ON CONFLICT DO NOTHING on (event tag, conversion_id)).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from django_xconversions.conf import setting_path
from django_xconversions.models import Conversion, EventTag
from django_xconversions.wording import plural

logger = logging.getLogger(__name__)

Reason = Conversion.ErrorReason
HELD_REASONS = (Reason.NO_TAG, Reason.NO_PIXEL, Reason.TAG_DELETED)


def fix_for(reason: str) -> str:
    """What to do about held conversions of ``reason`` (health panel, /x/health/)."""
    fixes: dict[str, str] = {
        Reason.NO_TAG: (
            "Set the key on an event tag in the admin (Event tags), or correct the key in "
            f"{setting_path('SOURCES')} or the track() call."
        ),
        Reason.NO_PIXEL: (
            "Choose the pixel of the event tag in the admin (Event tags); a tag sync sets "
            "it when the account has exactly one pixel."
        ),
        Reason.TAG_DELETED: (
            "Give the key to a live event tag in the admin (Event tags; clear it on the "
            "deleted one first), or run manage.py sync_tags if the tag was restored on X."
        ),
    }
    return fixes.get(reason, "")


@dataclass(frozen=True)
class Route:
    """Where conversions of one key go: a tag with a pixel, or why they are held."""

    key: str
    tag: EventTag | None
    reason: str = ""  # a held reason; "" when routable
    message: str = ""  # the held row's last_error

    @property
    def routable(self) -> bool:
        return not self.reason


def route_for(key: str, tag: EventTag | None) -> Route:
    """The route of ``key`` given the tag that has it (deleted or not), if any."""
    if tag is None:
        return Route(
            key,
            None,
            Reason.NO_TAG,
            f"No event tag has the key '{key}': set that key on an event tag in the admin "
            f"(Event tags), or correct the key in {setting_path('SOURCES')} or the track() "
            "call. Held until then.",
        )
    if tag.deleted:
        return Route(
            key,
            tag,
            Reason.TAG_DELETED,
            f"Event tag '{tag.name}' (key '{key}') was deleted on X: give the key to a live "
            "event tag in the admin (clear it on the deleted one first), or run "
            "manage.py sync_tags if it was restored. Held until then.",
        )
    if tag.pixel_id is None:
        return Route(
            key,
            tag,
            Reason.NO_PIXEL,
            f"Event tag '{tag.name}' (key '{key}') has no pixel to send through: choose its "
            "pixel in the admin (Event tags). Held until then.",
        )
    return Route(key, tag)


# -- the tag cache ---------------------------------------------------------------------------

# Tags change rarely and a bound model's save must stay cheap: a routable key is looked up
# at most once a minute per process (a local tag save or delete clears the cache at once).
# A key that is not routable is read again on every use: holding a conversion on stale
# news (another process chose the pixel a second ago) would leave it held.
TAG_CACHE_SECONDS = 60.0
_tag_cache: dict[str, tuple[float, EventTag | None]] = {}


def clear_tag_cache(**kwargs: Any) -> None:
    _tag_cache.clear()


def _read_tag(key: str) -> EventTag | None:
    tag = EventTag.objects.filter(key=key).select_related("pixel").first()
    _tag_cache[key] = (time.monotonic() + TAG_CACHE_SECONDS, tag)
    return tag


def resolve(key: str) -> Route:
    """Where a conversion of ``key`` goes now (no query when a fresh routable entry is
    cached)."""
    cached = _tag_cache.get(key)
    if cached is not None and cached[0] > time.monotonic():
        route = route_for(key, cached[1])
        if route.routable:
            return route
    return route_for(key, _read_tag(key))


def tag_for_key(key: str) -> EventTag | None:
    """The live tag with ``key`` (with a pixel or not), or None."""
    tag = resolve(key).tag
    return tag if tag is not None and not tag.deleted else None


# -- routing held rows -----------------------------------------------------------------------


@dataclass
class Routed:
    """What route_held() did: rows made pending, repeats deleted, rows still held."""

    routed: int = 0
    duplicates: int = 0
    still_held: dict[str, int] = field(default_factory=dict)  # key -> rows
    pixels: set[int] = field(default_factory=set)

    def merge(self, other: Routed) -> None:
        self.routed += other.routed
        self.duplicates += other.duplicates
        for key, count in other.still_held.items():
            self.still_held[key] = self.still_held.get(key, 0) + count
        self.pixels |= other.pixels


def _held(key: str) -> QuerySet[Conversion]:
    return Conversion.objects.filter(
        status=Conversion.Status.HELD, event_key=key, event_tag__isnull=True
    )


def _route_key(route: Route) -> Routed:
    """Move the held rows of one routable key onto its tag, in one transaction."""
    tag = route.tag
    assert tag is not None and tag.pixel_id is not None  # noqa: S101 (routable)
    result = Routed()
    now = timezone.now()
    for attempt in range(3):
        try:
            with transaction.atomic():
                rows = _held(route.key)
                stored = Conversion.objects.filter(
                    event_tag=tag, conversion_id=OuterRef("conversion_id")
                )
                result.duplicates = rows.filter(Exists(stored)).delete()[0]
                result.routed = rows.update(
                    event_tag=tag,
                    pixel_id=tag.pixel_id,
                    status=Conversion.Status.PENDING,
                    error_reason="",
                    last_error="",
                    next_attempt_at=now,
                    updated_at=now,
                )
            break
        except IntegrityError:
            # A capture stored the same (tag, conversion_id) between the two statements:
            # run again, and that row now counts as the stored one.
            if attempt == 2:
                raise
    if result.routed:
        result.pixels.add(tag.pixel_id)
    return result


def _refresh_reason(route: Route) -> int:
    """Keep the reason and fix of still-held rows current (say the key now exists but
    its tag has no pixel yet); returns how many rows are held for the key."""
    rows = _held(route.key)
    rows.exclude(error_reason=route.reason, last_error=route.message).update(
        error_reason=route.reason, last_error=route.message, updated_at=timezone.now()
    )
    return rows.count()


def route_held(keys: Iterable[str] | None = None) -> Routed:
    """Route held conversions (of ``keys``, else of every key) whose configuration is
    fixed; the others keep an up-to-date reason. Safe to run any time, from anywhere."""
    from django_xconversions import immediate

    held = Conversion.objects.filter(status=Conversion.Status.HELD, event_tag__isnull=True)
    if keys is not None:
        held = held.filter(event_key__in=sorted(set(keys)))
    held_keys = sorted(set(held.values_list("event_key", flat=True).distinct()))
    clear_tag_cache()
    result = Routed()
    if not held_keys:
        return result
    tags = {
        tag.key: tag
        for tag in EventTag.objects.filter(key__in=held_keys).select_related("pixel")
        if tag.key
    }
    for key in held_keys:
        route = route_for(key, tags.get(key))
        if route.routable:
            result.merge(_route_key(route))
        else:
            result.still_held[key] = _refresh_reason(route)
    for pixel_pk in result.pixels:
        immediate.schedule_send(pixel_pk)
    if result.routed or result.duplicates:
        logger.info(
            "Routed %s; %s of stored ones deleted.",
            plural(result.routed, "held conversion"),
            plural(result.duplicates, "repeat"),
            extra={"events": result.routed, "duplicates": result.duplicates},
        )
    return result


def on_tag_saved(
    sender: type[EventTag], instance: EventTag, raw: bool = False, **kwargs: Any
) -> None:
    """post_save of EventTag: a key set, a pixel chosen or a sync's update may route
    held conversions (one indexed query when nothing is held)."""
    clear_tag_cache()
    if raw or not instance.key:
        return
    route_held([instance.key])
