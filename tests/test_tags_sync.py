from __future__ import annotations

import pytest

from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, EventTag
from django_xconversions.tags import sync_account_tags

from .conftest import ACCOUNT_ID

pytestmark = pytest.mark.django_db


def test_sync_pages_upserts_and_is_idempotent(emulator: EmulatorServer, account: AdAccount) -> None:
    for n in range(2500):
        emulator.add_tag(ACCOUNT_ID, name=f"Tag {n}", type="PURCHASE" if n else "SIGN_UP")
    first = sync_account_tags(account)
    assert (first.created, first.updated) == (2500, 0)
    assert EventTag.objects.count() == 2500
    assert EventTag.objects.get(key="sign_up").type == "SIGN_UP"
    second = sync_account_tags(account)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2500)


def test_remote_changes_and_deletions_are_flagged_keeping_local_keys(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    kept = emulator.add_tag(ACCOUNT_ID, name="Purchase")
    gone = emulator.add_tag(ACCOUNT_ID, name="Old")
    sync_account_tags(account)
    EventTag.objects.filter(remote_id=kept["id"]).update(key="checkout")
    emulator.world.accounts[ACCOUNT_ID].tags[kept["id"]].name = "Purchase (renamed)"
    emulator.world.accounts[ACCOUNT_ID].tags[gone["id"]].deleted = True
    result = sync_account_tags(account)
    assert (result.updated, result.flagged_deleted) == (2, 1)
    renamed = EventTag.objects.get(remote_id=kept["id"])
    assert renamed.name == "Purchase (renamed)" and renamed.key == "checkout"
    assert EventTag.objects.get(remote_id=gone["id"]).deleted is True
