"""manage.py sync_tags: reports what the sync did per account, flags deletions, fails clearly."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, EventTag

from .conftest import ACCOUNT_ID

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("sync_tags", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def tag_list_requests(emulator: EmulatorServer) -> list[dict[str, object]]:
    return [
        r
        for r in emulator.requests
        if r["method"] == "GET" and str(r["path"]).endswith("/web_event_tags")
    ]


def test_report_lines_of_a_first_and_a_second_run(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    """What the command prints; paging and bulk writes of thousands of tags are tested once,
    in test_tags_sync.py."""
    for n in range(3):
        emulator.add_tag(ACCOUNT_ID, name=f"Tag {n}", type="PURCHASE" if n else "SIGN_UP")
    output = run()
    assert f"{ACCOUNT_ID}: 3 created, 0 updated, 0 flagged deleted (0 unchanged)" in output
    assert EventTag.objects.filter(account=account).count() == 3
    assert EventTag.objects.get(key="sign_up").type == "SIGN_UP"
    assert len(tag_list_requests(emulator)) == 1
    emulator.reset_records()
    again = run("--account", ACCOUNT_ID)
    assert f"{ACCOUNT_ID}: 0 created, 0 updated, 0 flagged deleted (3 unchanged)" in again
    assert EventTag.objects.count() == 3


def test_remote_deletion_is_flagged_and_local_key_and_pixel_kept(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    kept = emulator.add_tag(ACCOUNT_ID, name="Purchase", type="PURCHASE")
    gone = emulator.add_tag(ACCOUNT_ID, name="Sign up", type="SIGN_UP")
    run()
    EventTag.objects.filter(remote_id=gone["id"]).update(key="lead")
    emulator.world.accounts[ACCOUNT_ID].tags[gone["id"]].deleted = True
    output = run()
    assert "0 created, 1 updated, 1 flagged deleted" in output
    flagged = EventTag.objects.get(remote_id=gone["id"])
    assert flagged.deleted is True and flagged.key == "lead"
    assert flagged.raw["deleted"] is True
    assert EventTag.objects.get(remote_id=kept["id"]).deleted is False


def test_paused_accounts_are_skipped_unless_named(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    emulator.add_tag(ACCOUNT_ID, name="Purchase")
    AdAccount.objects.filter(pk=account.pk).update(status=AdAccount.Status.PAUSED)
    assert run() == (
        f"No active account to sync: {ACCOUNT_ID} is paused. Sync one anyway with --account ID.\n"
    )
    assert EventTag.objects.count() == 0
    assert "1 created" in run("--account", ACCOUNT_ID)


def test_failure_is_a_command_error_with_xs_message(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    account.set_tokens("someone-else", "wrong")
    account.save()
    with pytest.raises(CommandError, match="Tag sync failed for 1 account"):
        run()
    assert EventTag.objects.count() == 0


def test_unknown_account_is_a_command_error(account: AdAccount) -> None:
    with pytest.raises(CommandError) as info:
        run("--account", "nope")
    assert str(info.value) == f"--account nope: no ad account has this id. Known: {ACCOUNT_ID}."
