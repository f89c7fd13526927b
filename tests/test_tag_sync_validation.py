"""Tag sync trusts nothing X answers: malformed entries (served by the emulator over HTTP)
are skipped and reported by the admin and by sync_tags, never a 500 or a crash, and the
good ones are still stored. A synced tag gets the account's only pixel; held conversions
go out once it has one."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from django_xconversions import delivery, tags, track
from django_xconversions.emulator import EmulatorServer
from django_xconversions.emulator.world import Tag
from django_xconversions.models import AdAccount, EventTag, Pixel

from .conftest import ACCOUNT_ID, PIXEL_ID, received_ids

pytestmark = pytest.mark.django_db

LONG_ID = "a" * 33


class AsServed(Tag):
    """A tag the emulator lists exactly as given: X's answer, malformed or not."""

    def __init__(self, payload: Any, sort_id: str) -> None:
        super().__init__(
            id=sort_id,
            website_tag_id="",
            account_id=ACCOUNT_ID,
            name="",
            type="PURCHASE",
            click_window=30,
            view_through_window=1,
            retargeting_enabled=False,
        )
        self.payload = payload

    def as_json(self) -> Any:
        return self.payload


def good_tag(emulator: EmulatorServer, name: str = "Purchase") -> dict[str, Any]:
    return emulator.add_tag(ACCOUNT_ID, name=name, type="PURCHASE")


def serve(emulator: EmulatorServer, payload: Any) -> None:
    tags_of_account = emulator.world.accounts[ACCOUNT_ID].tags
    sort_id = f"zz{len(tags_of_account):04d}"  # listed after the good ones
    tags_of_account[sort_id] = AsServed(payload, sort_id)


def malformed(emulator: EmulatorServer) -> dict[str, str]:
    """Each malformed entry X could send: what the report must say about it."""
    template = good_tag(emulator, "Template")
    emulator.world.accounts[ACCOUNT_ID].tags.pop(template["id"])

    def variant(**changes: Any) -> dict[str, Any]:
        data = {**template, "id": f"bad{len(cases)}", "website_tag_id": f"wbad{len(cases)}"}
        data.update(changes)
        return {k: v for k, v in data.items() if v is not DROP}

    DROP = object()
    cases: dict[str, str] = {}
    for payload, expected in [
        (lambda: variant(id=LONG_ID), "id must be a base36 id"),
        (lambda: variant(id=DROP), "id is missing"),
        (lambda: variant(id=None), "id must be a base36 id"),
        (lambda: variant(id="UPPER"), "id must be a base36 id"),
        (lambda: variant(click_window="thirty"), "click_window must be one of 1, 7, 14, 30"),
        (lambda: variant(view_through_window=3), "view_through_window must be one of 0, 1"),
        (lambda: variant(click_window=None), "click_window must be one of"),
        (lambda: variant(website_tag_id="NOT-base36!"), "website_tag_id must be a base36 id"),
        (lambda: variant(website_tag_id="b" * 40), "website_tag_id must be a base36 id"),
        (lambda: variant(website_tag_id=DROP), "website_tag_id is missing"),
        (lambda: variant(type="BOGUS"), "type must be one of X's 14 tag types"),
        (lambda: variant(name=DROP), "name must be text of 1 to 255"),
        (lambda: variant(name="x" * 256), "name must be text of 1 to 255"),
        (lambda: variant(name="nul\x00name"), "NUL or unpaired surrogate"),
        (lambda: variant(embed_code="\ud800"), "NUL or unpaired surrogate"),
        (lambda: variant(last_tracked_at="yesterday"), "last_tracked_at must be an ISO 8601"),
        (lambda: variant(last_tracked_at="2025-02-30T00:00:00Z"), "last_tracked_at must be"),
        (lambda: variant(deleted="no"), "deleted must be true or false"),
        (lambda: variant(status="x" * 40), "status must be a word"),
        (lambda: "not an object", "A tag must be a JSON object"),
    ]:
        data = payload()
        serve(emulator, data)
        cases[f"case{len(cases)}"] = expected
    return cases


def test_malformed_entries_are_skipped_and_reported_and_good_ones_stored(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    kept = [good_tag(emulator, "Purchase"), good_tag(emulator, "Sign up")]
    expected = malformed(emulator)
    result = tags.sync_account_tags(account)
    assert result.created == 2
    assert len(result.skipped) == len(expected)
    for skipped, message in zip(result.skipped, expected.values(), strict=True):
        assert message in str(skipped), (str(skipped), message)
    # Only the good tags, exactly as X sent them.
    stored = EventTag.objects.order_by("remote_id")
    assert [t.remote_id for t in stored] == sorted(t["id"] for t in kept)
    for tag in stored:
        tag.full_clean()  # every column within its rules
    # A repeat changes nothing and reports the same.
    again = tags.sync_account_tags(account)
    assert (again.created, again.unchanged, len(again.skipped)) == (0, 2, len(expected))


def test_reports_name_the_entry_without_echoing_unbounded_values(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    good_tag(emulator)
    serve(emulator, {"id": "z" * 5000, "name": "n" * 5000})
    [skipped] = tags.sync_account_tags(account).skipped
    assert skipped.tag.startswith("tag 'zzzz") and len(str(skipped)) < 1000


def test_a_stored_tag_x_now_answers_malformed_is_kept_as_it_was(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    remote = good_tag(emulator)
    tags.sync_account_tags(account)
    emulator.world.accounts[ACCOUNT_ID].tags[remote["id"]].click_window = "thirty"  # type: ignore[assignment]
    result = tags.sync_account_tags(account)
    assert [s.tag for s in result.skipped] == [f"tag '{remote['id']}'"]
    tag = EventTag.objects.get(remote_id=remote["id"])
    # Still listed by X: neither flagged deleted nor overwritten.
    assert tag.deleted is False and tag.click_window == 30 and result.flagged_deleted == 0


@pytest.fixture
def superuser_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def admin_url(name: str) -> str:
    return reverse(f"admin:xconversions_{name}")


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_admin_sync_reports_skipped_entries_instead_of_a_500(
    emulator: EmulatorServer, account: AdAccount, superuser_client: Client
) -> None:
    good_tag(emulator)
    expected = malformed(emulator)
    response = superuser_client.post(admin_url("eventtag_sync"), follow=True)
    assert response.status_code == 200
    texts = messages_of(response)
    assert any("1 tag created" in m for m in texts), texts
    [warning] = [m for m in texts if "skipped" in m]
    assert f"{len(expected)} tags from X skipped, not stored" in warning
    assert "id must be a base36 id" in warning and "click_window must be one of" in warning
    assert "and 10 more (manage.py sync_tags lists all)" in warning
    assert EventTag.objects.count() == 1
    # The list action runs the same sync and reports the same.
    response = superuser_client.post(
        admin_url("eventtag_changelist"),
        {"action": "sync_from_x", ACTION_CHECKBOX_NAME: [EventTag.objects.get().pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert any(f"{len(expected)} tags from X skipped" in m for m in messages_of(response))


def test_sync_tags_command_finishes_and_lists_every_skipped_entry(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    good_tag(emulator)
    expected = malformed(emulator)
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_tags", stdout=out, stderr=err)
    assert f"{ACCOUNT_ID}: 1 created" in out.getvalue()
    assert f"{len(expected)} skipped (malformed)" in out.getvalue()
    lines = [line for line in err.getvalue().splitlines() if "skipped" in line]
    assert len(lines) == len(expected)
    for line, message in zip(lines, expected.values(), strict=True):
        assert message in line
    assert EventTag.objects.count() == 1


def test_a_malformed_answer_to_an_admin_edit_is_a_form_error(
    emulator: EmulatorServer,
    pixel: Pixel,
    superuser_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = emulator.world.add_tag

    def add_tag(account_id: str, **fields: Any) -> dict[str, Any]:
        return {**original(account_id, **fields), "website_tag_id": "NOT base36"}

    monkeypatch.setattr(emulator.world, "add_tag", add_tag)
    form = {
        "account": pixel.account.pk,
        "pixel": pixel.pk,
        "key": "checkout",
        "name": "Checkout",
        "type": "CHECKOUT_INITIATED",
        "click_window": 30,
        "view_through_window": 1,
        "_save": "Save",
    }
    response = superuser_client.post(admin_url("eventtag_add"), form)
    assert response.status_code == 200  # the form again, with the reason
    page = response.content.decode()
    assert "this app cannot store" in page and "website_tag_id must be a base36 id" in page
    assert EventTag.objects.count() == 0


# -- the pixel of synced tags --------------------------------------------------------------


def test_sync_gives_tags_the_accounts_only_pixel(
    emulator: EmulatorServer, account: AdAccount, pixel: Pixel
) -> None:
    chosen_elsewhere = Pixel.objects.create(
        pixel_id="other1", account=AdAccount.objects.create(account_id="acc2")
    )
    new = good_tag(emulator, "New")
    had_none = good_tag(emulator, "Had none")
    had_one = good_tag(emulator, "Had one")
    gone = good_tag(emulator, "Gone")
    emulator.world.accounts[ACCOUNT_ID].tags[gone["id"]].deleted = True
    for remote in (had_none, had_one):
        EventTag.objects.create(
            account=account,
            remote_id=remote["id"],
            website_tag_id=remote["website_tag_id"],
            name=remote["name"],
            type="PURCHASE",
            pixel=chosen_elsewhere if remote is had_one else None,
        )
    result = tags.sync_account_tags(account)
    pixels = dict(EventTag.objects.values_list("remote_id", "pixel__pixel_id"))
    assert pixels == {
        new["id"]: PIXEL_ID,
        had_none["id"]: PIXEL_ID,
        had_one["id"]: "other1",  # an admin's choice is never replaced
        gone["id"]: None,  # deleted on X: nothing will be sent through it
    }
    assert (result.pixel_set, result.without_pixel) == (2, 0)
    assert tags.sync_account_tags(account).pixel_set == 0


def test_with_several_pixels_sync_leaves_the_choice_and_says_so(
    emulator: EmulatorServer, account: AdAccount, pixel: Pixel, superuser_client: Client
) -> None:
    Pixel.objects.create(pixel_id="second", account=account)
    good_tag(emulator, "Purchase")
    good_tag(emulator, "Sign up")
    response = superuser_client.post(admin_url("eventtag_sync"), follow=True)
    assert EventTag.objects.filter(pixel__isnull=True).count() == 2
    assert any("2 event tags have no pixel: choose one" in m for m in messages_of(response))
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_tags", stdout=out, stderr=err)
    assert "2 event tags have no pixel" in err.getvalue()


def test_the_event_tag_list_flags_tags_without_a_pixel(
    emulator: EmulatorServer, account: AdAccount, pixel: Pixel, superuser_client: Client
) -> None:
    Pixel.objects.create(pixel_id="second", account=account)
    for name in ("Purchase", "Sign up"):
        good_tag(emulator, name)
    tags.sync_account_tags(account)
    EventTag.objects.filter(name="Purchase").update(pixel=pixel)
    page = superuser_client.get(admin_url("eventtag_changelist")).content.decode()
    assert page.count('class="xconv-no-pixel"') == 1
    assert "None: choose one<" in page
    held_only = superuser_client.get(admin_url("eventtag_changelist") + "?has_pixel=no")
    assert held_only.context["cl"].result_count == 1
    assert [t.name for t in held_only.context["cl"].result_list] == ["Sign up"]


def test_held_conversions_go_out_after_a_sync_sets_the_pixel(
    emulator: EmulatorServer, account: AdAccount
) -> None:
    """README step 5 before a pixel exists: the tag is synced without one, conversions
    are held; adding the pixel and syncing again routes them, and they are sent."""
    remote = good_tag(emulator, "Purchase")
    tags.sync_account_tags(account)
    tag = EventTag.objects.get(remote_id=remote["id"])
    assert tag.key == "purchase" and tag.pixel is None
    held = track("purchase", twclid="click1", conversion_id="shop.order:1")
    assert (held.status, held.error_reason) == ("held", "no_pixel")
    Pixel.objects.create(pixel_id=PIXEL_ID, account=account)
    result = tags.sync_account_tags(account)
    assert result.pixel_set == 1
    held.refresh_from_db()
    assert (held.status, held.event_tag_id, held.pixel.pixel_id) == ("pending", tag.pk, PIXEL_ID)  # type: ignore[union-attr]
    delivery.send_pending()
    assert received_ids(emulator) == ["shop.order:1"]


def test_held_reasons_follow_a_tag_x_no_longer_lists(
    emulator: EmulatorServer, account: AdAccount, pixel: Pixel
) -> None:
    Pixel.objects.create(pixel_id="second", account=account)  # no pixel chosen for the tag
    remote = good_tag(emulator, "Purchase")
    tags.sync_account_tags(account)
    held = track("purchase", twclid="click1")
    assert held.error_reason == "no_pixel"
    emulator.world.accounts[ACCOUNT_ID].tags.pop(remote["id"])  # gone on X, not listed
    assert tags.sync_account_tags(account).flagged_deleted == 1
    held.refresh_from_db()
    assert (held.status, held.error_reason) == ("held", "tag_deleted")
