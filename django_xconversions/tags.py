"""Web event tags: sync from X into EventTag rows (idempotent upsert keyed on X's id).

Each tag X lists is checked first (tag_validation): a malformed entry is skipped and
reported, the others are stored in bulk (one upsert per 3,000 tags). A synced tag
without a pixel gets the account's pixel when the account has exactly one; held
conversions are routed once the sync is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_xconversions import routing, tag_validation
from django_xconversions.client import XAdsClient
from django_xconversions.connections import client_for
from django_xconversions.models import AdAccount, EventTag, Pixel

REMOTE_FIELDS = (
    "name",
    "type",
    "click_window",
    "view_through_window",
    "retargeting_enabled",
    "status",
    "website_tag_id",
    "deleted",
)


@dataclass(frozen=True)
class SkippedTag:
    """An entry of X's answer that was not stored, and why."""

    tag: str  # "tag '<id>'", or "a tag without an id"
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.tag}: " + " ".join(self.problems)


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    flagged_deleted: int = 0
    seen: set[str] = field(default_factory=set)
    skipped: list[SkippedTag] = field(default_factory=list)
    # Tags given the account's only pixel; live tags still without one after the sync.
    pixel_set: int = 0
    without_pixel: int = 0

    def add(self, other: SyncResult) -> None:
        """Totals over accounts (seen is per account and not summed)."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.flagged_deleted += other.flagged_deleted
        self.skipped += other.skipped
        self.pixel_set += other.pixel_set
        self.without_pixel += other.without_pixel


def _fields_from_remote(data: dict[str, Any]) -> dict[str, Any]:
    values = {name: data[name] for name in REMOTE_FIELDS if name in data}
    tracked = data.get("last_tracked_at")
    values["last_tracked_at"] = parse_datetime(tracked) if tracked else None
    values["raw"] = data
    return values


# Tags written per pair of statements (one lookup, one upsert): 3,000 rows of 15 columns
# stay well under PostgreSQL's 65,535 parameters a statement (SQLite splits the INSERT at
# its own limit).
WRITE_CHUNK = 3000
# What an upsert overwrites on a stored tag: X's fields. The key and the pixel are local
# choices and never overwritten (a missing pixel is filled in by a guarded UPDATE).
SYNCED_FIELDS = [*REMOTE_FIELDS, "last_tracked_at", "raw", "synced_at"]
# Attempts at a chunk whose new keys were taken meanwhile (by another sync or an admin).
KEY_ATTEMPTS = 3


def _taken_keys() -> set[str]:
    return {key for key in EventTag.objects.values_list("key", flat=True) if key}


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _storable(chunk: list[Any], result: SyncResult) -> list[dict[str, Any]]:
    """The entries of ``chunk`` that can be stored, each id once (X's last listing wins);
    the others are reported in ``result``."""
    good: dict[str, dict[str, Any]] = {}
    for data in chunk:
        problems = tag_validation.problems(data)
        if not problems:
            good[data["id"]] = data
            continue
        result.skipped.append(SkippedTag(tag_validation.describe(data), tuple(problems)))
        remote_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(remote_id, str) and tag_validation.BASE36_ID.fullmatch(remote_id):
            # X still lists it: its stored copy stays as it was, not flagged deleted.
            result.seen.add(remote_id)
    return list(good.values())


@dataclass
class _Plan:
    """What one chunk writes: rows to upsert, stored tags to give the account's pixel."""

    new: list[EventTag] = field(default_factory=list)
    changed: list[EventTag] = field(default_factory=list)
    gain_pixel: list[int] = field(default_factory=list)


def _plan(
    account: AdAccount,
    good: list[dict[str, Any]],
    result: SyncResult,
    taken: set[str],
    pixel: Pixel | None,
) -> _Plan:
    """Compare X's tags with the stored ones (one query) and count what changes."""
    stored = EventTag.objects.in_bulk([data["id"] for data in good], field_name="remote_id")
    now = timezone.now()
    plan = _Plan()
    for data in good:
        remote_id = str(data["id"])
        result.seen.add(remote_id)
        values = _fields_from_remote(data)
        live_pixel = pixel if pixel is not None and not data.get("deleted") else None
        tag = stored.get(remote_id)
        if tag is None:
            plan.new.append(
                EventTag(
                    account=account, remote_id=remote_id, pixel=live_pixel, synced_at=now, **values
                )
            )
            result.created += 1
            result.pixel_set += live_pixel is not None
            result.flagged_deleted += bool(values.get("deleted"))
            continue
        changed = {name: value for name, value in values.items() if getattr(tag, name) != value}
        # A chosen pixel is the admin's, never replaced; a live tag without one gets it.
        gains_pixel = live_pixel is not None and tag.pixel_id is None
        if not (changed or gains_pixel):
            result.unchanged += 1
            continue
        for name, value in changed.items():
            setattr(tag, name, value)
        tag.synced_at = now
        plan.changed.append(tag)
        result.updated += 1
        result.flagged_deleted += changed.get("deleted") is True
        if gains_pixel:
            plan.gain_pixel.append(tag.pk)
            result.pixel_set += 1
    _give_keys(plan.new, taken)
    return plan


def _give_keys(new: list[EventTag], taken: set[str]) -> None:
    # The tag type in lower case is a new tag's key, if still free.
    for tag in new:
        key = tag.type.lower()
        tag.key = key if key not in taken else None
        taken.add(key)


def _write(plan: _Plan, pixel: Pixel | None, taken: set[str]) -> None:
    """Upsert the chunk's rows in one statement (ON CONFLICT on X's id: a tag another sync
    stored meanwhile is updated, its key and pixel kept)."""
    for attempt in range(1, KEY_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                EventTag.objects.bulk_create(
                    [*plan.new, *plan.changed],
                    update_conflicts=True,
                    unique_fields=["remote_id"],
                    update_fields=SYNCED_FIELDS,
                )
                if plan.gain_pixel and pixel is not None:
                    EventTag.objects.filter(pk__in=plan.gain_pixel, pixel__isnull=True).update(
                        pixel=pixel
                    )
            return
        except IntegrityError:
            # A key given to a new tag was taken after the keys were read.
            if attempt == KEY_ATTEMPTS:
                raise
            taken.clear()
            taken.update(_taken_keys())
            _give_keys(plan.new, taken)


def only_pixel(account: AdAccount) -> Pixel | None:
    """The account's pixel when it has exactly one: the only one its tags can send through."""
    pixels = list(Pixel.objects.filter(account=account)[:2])
    return pixels[0] if len(pixels) == 1 else None


def sync_account_tags(account: AdAccount, client: XAdsClient | None = None) -> SyncResult:
    """Page through all of the account's tags on X (deleted included) and upsert the ones
    that can be stored, then route held conversions the sync made routable.

    Each entry is checked on its own (a malformed one is skipped and reported); the rest
    is written in bulk, a few statements per 3,000 tags."""
    result = SyncResult()
    own_client = client is None
    client = client or client_for(account)
    taken = _taken_keys()
    pixel = only_pixel(account)
    try:
        remote = client.iter_web_event_tags(account.account_id, with_deleted=True)
        for chunk in _chunks(remote, WRITE_CHUNK):
            good = _storable(chunk, result)
            if good:
                plan = _plan(account, good, result, taken, pixel)
                if plan.new or plan.changed:
                    _write(plan, pixel, taken)
    finally:
        if own_client:
            client.close()
    # A tag X no longer lists at all is gone there too.
    vanished = EventTag.objects.filter(account=account, deleted=False).exclude(
        remote_id__in=result.seen
    )
    result.flagged_deleted += vanished.update(deleted=True, synced_at=timezone.now())
    result.without_pixel = EventTag.objects.filter(
        account=account, deleted=False, pixel__isnull=True
    ).count()
    # Bulk writes send no post_save: the tag cache is cleared and the held conversions
    # the sync made routable are routed here, once.
    routing.route_held()
    return result


# -- admin edits pushed to X ---------------------------------------------------------------

# What X lets a PUT change; key and pixel are local only.
EDITABLE_FIELDS = ("name", "type", "click_window", "view_through_window", "retargeting_enabled")


def apply_remote(tag: EventTag, data: dict[str, Any]) -> None:
    """Copy X's answer onto ``tag`` (not saved): X's values win over what was typed.

    An answer this app cannot store raises MalformedTag (shown in the admin form).
    """
    tag_validation.checked(data)
    if data.get("id"):
        tag.remote_id = str(data["id"])
    for name, value in _fields_from_remote(data).items():
        setattr(tag, name, value)
    tag.synced_at = timezone.now()


def push_new_tag(tag: EventTag) -> None:
    """POST ``tag`` to X and fill in X's ids and fields; the caller saves it."""
    with client_for(tag.account) as client:
        data = client.create_web_event_tag(
            tag.account.account_id,
            name=tag.name,
            type=tag.type,
            click_window=tag.click_window,
            view_through_window=tag.view_through_window,
            retargeting_enabled=tag.retargeting_enabled,
        )
    apply_remote(tag, data)


def push_tag_changes(tag: EventTag, changed: list[str]) -> None:
    """PUT the changed editable fields only (X keeps the rest); the caller saves."""
    changes = {name: getattr(tag, name) for name in changed if name in EDITABLE_FIELDS}
    if not changes:
        return
    with client_for(tag.account) as client:
        data = client.update_web_event_tag(tag.account.account_id, tag.remote_id, **changes)
    apply_remote(tag, data)


def push_tag_deletion(tag: EventTag) -> None:
    """DELETE the tag on X; the local row stays (conversions refer to it), flagged deleted."""
    with client_for(tag.account) as client:
        data = client.delete_web_event_tag(tag.account.account_id, tag.remote_id)
    apply_remote(tag, data)
    tag.deleted = True
    tag.save()
