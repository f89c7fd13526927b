"""Web event tags: sync from X into EventTag rows (idempotent upsert keyed on X's id).

Each tag X lists is checked first (tag_validation): a malformed entry is skipped and
reported, the others are stored. A synced tag without a pixel gets the account's pixel when
the account has exactly one; held conversions are routed once the sync is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_xconversions import routing, tag_validation
from django_xconversions.client import PAGE_SIZE_MAX, XAdsClient
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


def upsert_tag(
    account: AdAccount,
    data: dict[str, Any],
    result: SyncResult,
    existing: EventTag | None = None,
    taken_keys: set[str] | None = None,
    only_pixel: Pixel | None = None,
) -> EventTag:
    """Create or update the local copy of one remote tag (already checked); local key and
    pixel are kept, and a live tag without a pixel gets ``only_pixel``.

    ``existing`` is the row already stored for this remote id, when the caller looked
    it up (sync does, a page at a time).
    """
    values = _fields_from_remote(data)
    if only_pixel is not None and not data.get("deleted"):
        values["pixel"] = only_pixel
    remote_id = str(data["id"])
    result.seen.add(remote_id)
    tag = existing or EventTag.objects.filter(remote_id=remote_id).first()
    if tag is None:
        taken = taken_keys if taken_keys is not None else _taken_keys()
        key = str(data.get("type", "")).lower()
        try:
            with transaction.atomic():
                tag = EventTag.objects.create(
                    account=account,
                    remote_id=remote_id,
                    # The tag type in lower case is the default key, if still free.
                    key=key if key and key not in taken else None,
                    synced_at=timezone.now(),
                    **values,
                )
            taken.add(key)
            result.created += 1
            result.pixel_set += "pixel" in values
            if tag.deleted:
                result.flagged_deleted += 1
            return tag
        except IntegrityError:
            # Another sync created it meanwhile: update that row instead.
            tag = EventTag.objects.get(remote_id=remote_id)
    if tag.pixel_id is not None:
        values.pop("pixel", None)  # a chosen pixel is the admin's, never replaced
    changed = {name: value for name, value in values.items() if getattr(tag, name) != value}
    result.pixel_set += "pixel" in changed
    if changed.get("deleted") is True:
        result.flagged_deleted += 1
    if changed:
        for name, value in changed.items():
            setattr(tag, name, value)
        tag.synced_at = timezone.now()
        tag.save(update_fields=[*changed, "synced_at"])
        result.updated += 1
    else:
        result.unchanged += 1
    return tag


def _taken_keys() -> set[str]:
    return {key for key in EventTag.objects.values_list("key", flat=True) if key}


def _pages(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def _storable(page: list[Any], result: SyncResult) -> list[dict[str, Any]]:
    """The entries of ``page`` that can be stored; the others are reported in ``result``."""
    good: list[dict[str, Any]] = []
    for data in page:
        problems = tag_validation.problems(data)
        if not problems:
            good.append(data)
            continue
        result.skipped.append(SkippedTag(tag_validation.describe(data), tuple(problems)))
        remote_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(remote_id, str) and tag_validation.BASE36_ID.fullmatch(remote_id):
            # X still lists it: its stored copy stays as it was, not flagged deleted.
            result.seen.add(remote_id)
    return good


def only_pixel(account: AdAccount) -> Pixel | None:
    """The account's pixel when it has exactly one: the only one its tags can send through."""
    pixels = list(Pixel.objects.filter(account=account)[:2])
    return pixels[0] if len(pixels) == 1 else None


def sync_account_tags(account: AdAccount, client: XAdsClient | None = None) -> SyncResult:
    """Page through all of the account's tags on X (deleted included) and upsert the ones
    that can be stored, then route held conversions the sync made routable."""
    result = SyncResult()
    own_client = client is None
    client = client or client_for(account)
    taken = _taken_keys()
    pixel = only_pixel(account)
    try:
        remote = client.iter_web_event_tags(account.account_id, with_deleted=True)
        for page in _pages(remote, PAGE_SIZE_MAX):
            good = _storable(page, result)
            ids = [data["id"] for data in good]
            stored = EventTag.objects.in_bulk(ids, field_name="remote_id")
            for data in good:
                upsert_tag(account, data, result, stored.get(data["id"]), taken, pixel)
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
    # Each saved tag routes the held conversions of its key (EventTag post_save); tags
    # flagged deleted above were updated in bulk: their held rows' reasons follow here.
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
