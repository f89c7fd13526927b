"""Tag sync writes in bulk: a few statements for thousands of tags, the same report."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_xconversions import tags
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, EventTag, Pixel
from django_xconversions.tags import sync_account_tags

from .conftest import ACCOUNT_ID

pytestmark = pytest.mark.django_db


def writes(queries: list[dict[str, Any]]) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")
    ]


def statement_bound(rows: int) -> int:
    """10 statements for 2,500 tags where one statement carries them all (PostgreSQL);
    SQLite splits the lookup and the INSERT at 999 parameters, each extra part one more."""
    fields = [f for f in EventTag._meta.concrete_fields if not f.primary_key]
    per_insert = connection.ops.bulk_batch_size(fields, [EventTag()] * rows)
    per_lookup = connection.features.max_query_params or rows
    return 10 + (math.ceil(rows / per_insert) - 1) + (math.ceil(rows / per_lookup) - 1)


def test_2500_tags_in_a_few_statements_then_a_repeat_writes_nothing(
    emulator: EmulatorServer, account: AdAccount, pixel: Pixel
) -> None:
    for n in range(2500):
        emulator.add_tag(ACCOUNT_ID, name=f"Tag {n}", type="PURCHASE" if n else "SIGN_UP")
    with CaptureQueriesContext(connection) as first_run:
        first = sync_account_tags(account)
    assert (first.created, first.updated, first.unchanged) == (2500, 0, 0)
    assert (first.pixel_set, first.without_pixel, first.skipped) == (2500, 0, [])
    # The statements, not the rows, are what a sync costs (one savepoint a row was 6.7 s).
    assert len(first_run.captured_queries) <= statement_bound(2500), "\n".join(
        q["sql"][:60] for q in first_run.captured_queries
    )
    assert EventTag.objects.count() == 2500
    assert EventTag.objects.filter(pixel=pixel, deleted=False).count() == 2500
    # The type in lower case is the key of the first tag of each type.
    assert EventTag.objects.get(key="sign_up").type == "SIGN_UP"
    assert EventTag.objects.get(key="purchase").name == "Tag 1"
    assert EventTag.objects.exclude(key=None).count() == 2
    # Three pages of X's tags, following next_cursor.
    listed = [r for r in emulator.requests if str(r["path"]).endswith("/web_event_tags")]
    assert len(listed) == 3

    with CaptureQueriesContext(connection) as second_run:
        second = sync_account_tags(account)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2500)
    assert second.pixel_set == 0
    # Nothing changed: the only write is the (empty) flagging of vanished tags.
    assert [sql.split()[0] for sql in writes(second_run.captured_queries)] == ["UPDATE"]


def test_changes_deletions_and_a_missing_pixel_in_one_sync(
    emulator: EmulatorServer, account: AdAccount, pixel: Pixel
) -> None:
    kept = emulator.add_tag(ACCOUNT_ID, name="Purchase")
    renamed = emulator.add_tag(ACCOUNT_ID, name="Sign up", type="SIGN_UP")
    gone = emulator.add_tag(ACCOUNT_ID, name="Old", type="CUSTOM")
    vanished = emulator.add_tag(ACCOUNT_ID, name="Vanished", type="SEARCH")
    sync_account_tags(account)
    EventTag.objects.filter(remote_id=kept["id"]).update(pixel=None)
    EventTag.objects.filter(remote_id=renamed["id"]).update(key="lead")
    remote = emulator.world.accounts[ACCOUNT_ID].tags
    remote[renamed["id"]].name = "Lead"
    remote[gone["id"]].deleted = True
    del remote[vanished["id"]]
    new = emulator.add_tag(ACCOUNT_ID, name="Cart", type="ADD_TO_CART")

    result = sync_account_tags(account)

    assert (result.created, result.updated, result.unchanged) == (1, 3, 0)
    assert (result.flagged_deleted, result.pixel_set) == (2, 2)
    rows = {t.remote_id: t for t in EventTag.objects.all()}
    assert rows[kept["id"]].pixel == pixel  # the account's only pixel, given back
    assert (rows[renamed["id"]].name, rows[renamed["id"]].key) == ("Lead", "lead")
    assert rows[gone["id"]].deleted and rows[gone["id"]].raw["deleted"] is True
    assert rows[vanished["id"]].deleted
    assert (rows[new["id"]].key, rows[new["id"]].pixel) == ("add_to_cart", pixel)
    for tag in rows.values():
        assert tag.synced_at is not None


def test_a_key_taken_meanwhile_leaves_the_new_tag_without_one(
    emulator: EmulatorServer, account: AdAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another sync (or an admin) takes "purchase" after the keys were read: the upsert
    meets the unique key, and the tag is stored without a key instead of failing."""
    remote = emulator.add_tag(ACCOUNT_ID, name="Purchase")
    EventTag.objects.create(
        account=account, remote_id="other1", website_tag_id="other1", key="purchase", name="P"
    )
    reads: list[set[str]] = []
    real = tags._taken_keys

    def stale_first() -> set[str]:
        reads.append(set() if not reads else real())
        return reads[-1]

    monkeypatch.setattr(tags, "_taken_keys", stale_first)
    result = sync_account_tags(account)
    assert result.created == 1 and len(reads) == 2
    stored = EventTag.objects.get(remote_id=remote["id"])
    assert stored.key is None and stored.name == "Purchase"


def test_an_id_listed_twice_is_stored_once(
    emulator: EmulatorServer, account: AdAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = emulator.add_tag(ACCOUNT_ID, name="Purchase")
    listing = [remote, {**remote, "name": "Purchase (later)"}]
    monkeypatch.setattr(
        "django_xconversions.client.XAdsClient.iter_web_event_tags",
        lambda self, account_id, **kwargs: iter(listing),
    )
    result = sync_account_tags(account)
    assert result.created == 1
    assert EventTag.objects.get(remote_id=remote["id"]).name == "Purchase (later)"
