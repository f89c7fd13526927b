"""The admin over the Django test client, with real HTTP to the emulator."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_xconversions.admin import forms as admin_forms
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel

from .conftest import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    ACCOUNT_ID,
    USER_ID,
    make_conversions,
    received_ids,
)

pytestmark = pytest.mark.django_db

PIXEL_TOKEN = "pixel-token-that-must-stay-secret"
DEDICATED = ("send_conversions", "manage_tags", "check_access")


@pytest.fixture
def superuser_client(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(db: None) -> Client:
    """Staff with every model permission of the app except the dedicated ones."""
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="xconversions").exclude(
            codename__in=DEDICATED
        )
    )
    client = Client()
    client.force_login(user)
    return client


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:xconversions_{name}", args=args)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def tag_form(pixel: Pixel, **values: Any) -> dict[str, Any]:
    data = {
        "account": pixel.account.pk,
        "pixel": pixel.pk,
        "key": "checkout",
        "name": "Checkout",
        "type": "CHECKOUT_INITIATED",
        "click_window": 30,
        "view_through_window": 1,
        "_save": "Save",
    }
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def calls(emulator: EmulatorServer, method: str, suffix: str = "") -> list[dict[str, Any]]:
    return [
        r
        for r in emulator.requests
        if r["method"] == method and "web_event_tags" in r["path"] and r["path"].endswith(suffix)
    ]


# -- event tags ------------------------------------------------------------------------------


def test_tag_created_in_the_admin_exists_on_x(
    emulator: EmulatorServer, pixel: Pixel, superuser_client: Client
) -> None:
    response = superuser_client.post(url("eventtag_add"), tag_form(pixel, retargeting_enabled="on"))
    assert response.status_code == 302, response.content.decode()[:2000]
    tag = EventTag.objects.get(key="checkout")
    remote = emulator.world.accounts[ACCOUNT_ID].tags[tag.remote_id]
    assert (remote.name, remote.type, remote.retargeting_enabled) == (
        "Checkout",
        "CHECKOUT_INITIATED",
        True,
    )
    assert tag.website_tag_id == remote.website_tag_id and tag.pixel == pixel
    assert tag.raw["id"] == tag.remote_id and tag.synced_at is not None
    (post,) = calls(emulator, "POST")
    assert post["query"]["type"] == "CHECKOUT_INITIATED" and post["body_length"] == 0


def test_invalid_window_combination_is_refused_locally_and_nothing_is_written(
    emulator: EmulatorServer, pixel: Pixel, superuser_client: Client
) -> None:
    response = superuser_client.post(
        url("eventtag_add"), tag_form(pixel, click_window=1, view_through_window=7)
    )
    assert response.status_code == 200
    assert admin_forms.MSG_VIEW_WINDOW in response.content.decode()
    assert EventTag.objects.count() == 0
    assert calls(emulator, "POST") == []


def test_window_outside_xs_values_is_refused(
    emulator: EmulatorServer, pixel: Pixel, superuser_client: Client
) -> None:
    response = superuser_client.post(url("eventtag_add"), tag_form(pixel, click_window=3))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert EventTag.objects.count() == 0 and calls(emulator, "POST") == []


def test_x_refusing_shows_its_message_in_the_form_and_writes_nothing(
    emulator: EmulatorServer,
    pixel: Pixel,
    superuser_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Skip the local rule so the request reaches X, which answers 400 with its message.
    monkeypatch.setattr(admin_forms, "window_error", lambda click, view: None)
    response = superuser_client.post(
        url("eventtag_add"), tag_form(pixel, click_window=1, view_through_window=30)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert errors == ["X refused: view_through_window must be less than or equal to click_window"]
    assert "X refused: view_through_window must be less than" in response.content.decode()
    (post,) = calls(emulator, "POST")
    assert post["status"] == 400
    assert EventTag.objects.count() == 0
    assert emulator.world.accounts[ACCOUNT_ID].tags == {}


def test_account_without_tokens_says_so_and_writes_nothing(
    emulator: EmulatorServer, pixel: Pixel, superuser_client: Client
) -> None:
    AdAccount.objects.filter(pk=pixel.account_id).update(
        access_token_encrypted="", access_token_secret_encrypted=""
    )
    response = superuser_client.post(url("eventtag_add"), tag_form(pixel))
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.non_field_errors()
    assert "access_token and access_token_secret are required" in error
    assert EventTag.objects.count() == 0 and calls(emulator, "POST") == []


def test_change_puts_only_the_changed_fields(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    data = tag_form(purchase_tag.pixel, key="purchase", name="Order placed", type="PURCHASE")
    data.pop("account")  # read-only once created
    response = superuser_client.post(url("eventtag_change", purchase_tag.pk), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    (put,) = calls(emulator, "PUT", purchase_tag.remote_id)
    assert put["query"] == {"name": "Order placed"}
    assert emulator.world.accounts[ACCOUNT_ID].tags[purchase_tag.remote_id].name == "Order placed"
    purchase_tag.refresh_from_db()
    assert purchase_tag.name == "Order placed" and purchase_tag.raw["name"] == "Order placed"


def test_local_only_change_does_not_call_x(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    data = tag_form(purchase_tag.pixel, key="order", name="Purchase", type="PURCHASE")
    data.pop("account")
    response = superuser_client.post(url("eventtag_change", purchase_tag.pk), data)
    assert response.status_code == 302
    assert calls(emulator, "PUT") == []
    purchase_tag.refresh_from_db()
    assert purchase_tag.key == "order"


def test_change_refused_by_x_shows_its_message_and_keeps_the_row(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    emulator.world.accounts[ACCOUNT_ID].tags[purchase_tag.remote_id].deleted = True
    data = tag_form(purchase_tag.pixel, key="purchase", name="Renamed", type="PURCHASE")
    data.pop("account")
    response = superuser_client.post(url("eventtag_change", purchase_tag.pk), data)
    assert response.status_code == 200
    assert f"X refused: web_event_tag_id ({purchase_tag.remote_id}) was not found" in (
        response.content.decode()
    )
    purchase_tag.refresh_from_db()
    assert purchase_tag.name == "Purchase"


def test_delete_deletes_on_x_and_flags_the_local_row(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    response = superuser_client.post(url("eventtag_delete", purchase_tag.pk), {"post": "yes"})
    assert response.status_code == 302
    assert emulator.world.accounts[ACCOUNT_ID].tags[purchase_tag.remote_id].deleted is True
    purchase_tag.refresh_from_db()
    assert purchase_tag.deleted is True and purchase_tag.raw["deleted"] is True
    # Already gone on X: no second delete.
    assert superuser_client.get(url("eventtag_delete", purchase_tag.pk)).status_code == 403


def test_delete_refused_by_x_changes_nothing(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    emulator.world.accounts[ACCOUNT_ID].tags[purchase_tag.remote_id].deleted = True
    response = superuser_client.post(
        url("eventtag_delete", purchase_tag.pk), {"post": "yes"}, follow=True
    )
    assert any("X refused: web_event_tag_id" in m for m in messages_of(response))
    purchase_tag.refresh_from_db()
    assert purchase_tag.deleted is False


def test_sync_button_and_action(
    emulator: EmulatorServer, account: AdAccount, superuser_client: Client
) -> None:
    for n in range(3):
        emulator.add_tag(ACCOUNT_ID, name=f"Tag {n}")
    page = superuser_client.get(url("eventtag_changelist"))
    assert url("eventtag_sync") in page.content.decode()
    response = superuser_client.post(url("eventtag_sync"), follow=True)
    assert any("3 tags created" in m for m in messages_of(response))
    assert EventTag.objects.count() == 3
    emulator.world.accounts[ACCOUNT_ID].tags[EventTag.objects.first().remote_id].deleted = True  # type: ignore[union-attr]
    response = superuser_client.post(
        url("eventtag_changelist"),
        {"action": "sync_from_x", ACTION_CHECKBOX_NAME: [EventTag.objects.first().pk]},  # type: ignore[union-attr]
        follow=True,
    )
    assert any("1 flagged deleted" in m for m in messages_of(response))
    assert EventTag.objects.filter(deleted=True).count() == 1


def test_raw_json_is_shown_read_only(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    page = superuser_client.get(url("eventtag_change", purchase_tag.pk))
    html = page.content.decode()
    assert "&quot;website_tag_id&quot;" in html
    assert 'name="raw"' not in html and 'name="remote_id"' not in html


# -- accounts --------------------------------------------------------------------------------


def test_check_access_stores_permissions(
    emulator: EmulatorServer, account: AdAccount, superuser_client: Client
) -> None:
    response = superuser_client.post(
        url("adaccount_changelist"),
        {"action": "check_access_action", ACTION_CHECKBOX_NAME: [account.pk]},
        follow=True,
    )
    assert any("permissions ACCOUNT_ADMIN" in m for m in messages_of(response))
    account.refresh_from_db()
    assert account.permissions == ["ACCOUNT_ADMIN"] and account.access_check_ok is True
    assert account.x_user_id == USER_ID and account.access_checked_at is not None
    page = superuser_client.get(url("adaccount_change", account.pk)).content.decode()
    assert "ACCOUNT_ADMIN" in page


def test_check_access_warns_without_a_sending_permission(
    emulator: EmulatorServer, superuser_client: Client
) -> None:
    emulator.add_account("analyst1", name="Analyst", users={USER_ID: ["CAMPAIGN_ANALYST"]})
    account = AdAccount(account_id="analyst1")
    account.set_tokens(ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
    account.save()
    response = superuser_client.post(url("adaccount_check_access", account.pk), follow=True)
    (message,) = [m for m in response.context["messages"]]
    assert message.level_tag == "warning"
    assert "CAMPAIGN_ANALYST" in str(message) and "AD_MANAGER or ACCOUNT_ADMIN" in str(message)
    account.refresh_from_db()
    assert account.access_check_ok is False and account.permissions == ["CAMPAIGN_ANALYST"]


def test_check_access_refused_by_x_is_stored_without_secrets(
    emulator: EmulatorServer, account: AdAccount, superuser_client: Client
) -> None:
    account.set_tokens("unknown-token", "unknown-secret")
    account.save()
    response = superuser_client.post(url("adaccount_check_access", account.pk), follow=True)
    text = " ".join(messages_of(response))
    assert "cannot send conversions" in text
    assert "unknown-token" not in text and "unknown-secret" not in text
    account.refresh_from_db()
    assert account.access_check_ok is False and "HTTP 401" in account.access_check_message


def test_resume_action_and_button(account: AdAccount, superuser_client: Client) -> None:
    AdAccount.objects.filter(pk=account.pk).update(
        status=AdAccount.Status.PAUSED, paused_reason="Invalid or expired token (HTTP 401)"
    )
    page = superuser_client.get(url("adaccount_change", account.pk)).content.decode()
    assert url("adaccount_resume", account.pk) in page
    superuser_client.post(url("adaccount_resume", account.pk))
    account.refresh_from_db()
    assert account.is_active and account.paused_reason == ""
    AdAccount.objects.filter(pk=account.pk).update(status=AdAccount.Status.PAUSED)
    superuser_client.post(
        url("adaccount_changelist"),
        {"action": "resume_action", ACTION_CHECKBOX_NAME: [account.pk]},
    )
    account.refresh_from_db()
    assert account.is_active


def test_tokens_are_write_only_and_blank_keeps_them(
    account: AdAccount, superuser_client: Client
) -> None:
    form = {"account_id": ACCOUNT_ID, "name": "Shop", "access_token": "", "access_token_secret": ""}
    assert superuser_client.post(url("adaccount_change", account.pk), form).status_code == 302
    account.refresh_from_db()
    assert account.credentials().access_token == ACCESS_TOKEN
    form["access_token"] = "new-token"
    superuser_client.post(url("adaccount_change", account.pk), form)
    account.refresh_from_db()
    credentials = account.credentials()
    assert (credentials.access_token, credentials.access_token_secret) == (
        "new-token",
        ACCESS_TOKEN_SECRET,
    )


def test_connect_button_is_absent_until_the_connect_url_exists(
    account: AdAccount, superuser_client: Client
) -> None:
    page = superuser_client.get(url("adaccount_changelist"))
    assert page.status_code == 200
    try:
        connect = url("adaccount_connect")
    except Exception:
        assert "Connect with X" not in page.content.decode()
    else:
        assert connect in page.content.decode()


def test_secrets_never_appear_in_admin_pages(
    emulator: EmulatorServer, pixel: Pixel, superuser_client: Client
) -> None:
    pixel.set_pixel_token(PIXEL_TOKEN)
    pixel.save()
    account = pixel.account
    secrets = [
        ACCESS_TOKEN,
        ACCESS_TOKEN_SECRET,
        PIXEL_TOKEN,
        account.access_token_encrypted,
        account.access_token_secret_encrypted,
        pixel.pixel_token_encrypted,
    ]
    pages = [
        superuser_client.get(url("adaccount_changelist")),
        superuser_client.get(url("adaccount_change", account.pk)),
        superuser_client.get(url("adaccount_add")),
        superuser_client.get(url("pixel_changelist")),
        superuser_client.get(url("pixel_change", pixel.pk)),
        superuser_client.get(url("conversion_changelist")),
        # A form sent back with an error must not echo the typed secrets either.
        superuser_client.post(
            url("adaccount_change", account.pk),
            {"account_id": "NOT VALID", "access_token": ACCESS_TOKEN, "access_token_secret": "x"},
        ),
        superuser_client.post(
            url("pixel_change", pixel.pk),
            {"pixel_id": "NOT VALID", "account": account.pk, "pixel_token": PIXEL_TOKEN},
        ),
        superuser_client.post(url("adaccount_check_access", account.pk), follow=True),
    ]
    for response in pages:
        assert response.status_code == 200
        html = response.content.decode()
        for secret in secrets:
            assert secret not in html
    assert 'type="password"' in pages[1].content.decode()
    assert PIXEL_TOKEN not in repr(account.credentials(pixel))


# -- conversions -----------------------------------------------------------------------------


def test_send_now_sends_the_selected_pixels_pending_rows(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    rows = make_conversions(purchase_tag, 5)
    Conversion.objects.filter(pk=rows[0].pk).update(
        next_attempt_at=timezone.now() + dt.timedelta(hours=1)
    )
    response = superuser_client.post(
        url("conversion_changelist"),
        {"action": "send_now_action", ACTION_CHECKBOX_NAME: [rows[0].pk]},
        follow=True,
    )
    assert any("5 sent, 0 failed" in m for m in messages_of(response))
    assert sorted(received_ids(emulator)) == [f"order:{n}" for n in range(5)]
    assert Conversion.objects.filter(status="sent").count() == 5


def test_retry_and_mark_skipped(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    rows = make_conversions(purchase_tag, 3)
    Conversion.objects.filter(pk=rows[0].pk).update(status="failed", attempts=8, last_error="x")
    superuser_client.post(
        url("conversion_changelist"),
        {"action": "mark_skipped_action", ACTION_CHECKBOX_NAME: [rows[1].pk]},
    )
    assert Conversion.objects.get(pk=rows[1].pk).status == "skipped"
    superuser_client.post(
        url("conversion_changelist"),
        {"action": "retry_action", ACTION_CHECKBOX_NAME: [rows[0].pk, rows[1].pk]},
    )
    retried = Conversion.objects.filter(pk__in=[rows[0].pk, rows[1].pk])
    assert {(c.status, c.attempts, c.last_error) for c in retried} == {("pending", 0, "")}
    assert received_ids(emulator) == []


def test_conversions_are_read_only_and_cannot_be_added(
    purchase_tag: EventTag, superuser_client: Client
) -> None:
    (row,) = make_conversions(purchase_tag, 1)
    Conversion.objects.filter(pk=row.pk).update(
        hashed_email="e" * 64, last_error="Event ID was not found", debug_id="dbg-123"
    )
    assert superuser_client.get(url("conversion_add")).status_code == 403
    page = superuser_client.get(url("conversion_change", row.pk)).content.decode()
    for shown in ("e" * 64, "Event ID was not found", "dbg-123"):
        assert shown in page
    assert 'name="conversion_id"' not in page and 'name="status"' not in page
    search = superuser_client.get(url("conversion_changelist"), {"q": "order:0"})
    assert search.status_code == 200 and "order:0" in search.content.decode()
    filtered = superuser_client.get(
        url("conversion_changelist"),
        {"status__exact": "pending", "event_tag__id__exact": purchase_tag.pk},
    )
    assert filtered.status_code == 200


def test_health_panel_counts_and_chart(
    emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    rows = make_conversions(purchase_tag, 7)
    now = timezone.now()
    Conversion.objects.filter(pk__in=[r.pk for r in rows[:3]]).update(status="sent", sent_at=now)
    Conversion.objects.filter(pk=rows[3].pk).update(status="failed", failed_at=now)
    Conversion.objects.filter(pk=rows[4].pk).update(status="skipped")
    Conversion.objects.filter(pk=rows[5].pk).update(
        created_at=now - dt.timedelta(hours=2, minutes=5)
    )
    AdAccount.objects.filter(pk=purchase_tag.account_id).update(
        status="paused", paused_reason="Invalid or expired token", paused_at=now
    )
    html = superuser_client.get(url("conversion_changelist")).content.decode()
    counts = dict(re.findall(r'data-status="(\w+)">(\d+)<', html))
    assert counts == {
        "pending": "2",
        "sending": "0",
        "sent": "3",
        "failed": "1",
        "skipped": "1",
        "held": "0",
    }
    assert 'class="xconv-oldest-pending">2 h 5 min<' in html
    assert "<svg" in html and html.count('class="xconv-sent"') == 14
    assert "3 sent, 1 failed" in html  # today's bar title
    assert "Invalid or expired token" in html
    assert "<script" not in html.split('id="xconv-health"')[1].split("</section>")[0]


# -- dedicated permissions ------------------------------------------------------------------


def test_without_send_permission_nothing_is_sent(
    emulator: EmulatorServer, purchase_tag: EventTag, staff_client: Client
) -> None:
    rows = make_conversions(purchase_tag, 2)
    page = staff_client.get(url("conversion_changelist")).content.decode()
    assert "send_now_action" not in page and "retry_action" not in page
    assert "mark_skipped_action" in page  # change permission suffices for that one
    staff_client.post(
        url("conversion_changelist"),
        {"action": "send_now_action", ACTION_CHECKBOX_NAME: [r.pk for r in rows]},
    )
    assert received_ids(emulator) == []
    assert Conversion.objects.filter(status="pending").count() == 2


def test_without_manage_tags_no_tag_writes_reach_x(
    emulator: EmulatorServer, purchase_tag: EventTag, staff_client: Client
) -> None:
    emulator.reset_records()
    pixel = purchase_tag.pixel
    assert pixel is not None
    assert staff_client.get(url("eventtag_add")).status_code == 403
    assert staff_client.post(url("eventtag_add"), tag_form(pixel)).status_code == 403
    data = tag_form(pixel, key="purchase", name="Renamed", type="PURCHASE")
    assert staff_client.post(url("eventtag_change", purchase_tag.pk), data).status_code == 403
    delete = url("eventtag_delete", purchase_tag.pk)
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert staff_client.post(url("eventtag_sync")).status_code == 403
    listing = staff_client.get(url("eventtag_changelist")).content.decode()
    assert "sync_from_x" not in listing and url("eventtag_sync") not in listing
    staff_client.post(
        url("eventtag_changelist"),
        {"action": "sync_from_x", ACTION_CHECKBOX_NAME: [purchase_tag.pk]},
    )
    # Still viewable read-only.
    assert staff_client.get(url("eventtag_change", purchase_tag.pk)).status_code == 200
    assert emulator.requests == []
    purchase_tag.refresh_from_db()
    assert purchase_tag.name == "Purchase" and not purchase_tag.deleted


def test_without_check_access_permission_x_is_not_asked(
    emulator: EmulatorServer, account: AdAccount, staff_client: Client
) -> None:
    assert staff_client.post(url("adaccount_check_access", account.pk)).status_code == 403
    listing = staff_client.get(url("adaccount_changelist")).content.decode()
    assert "check_access_action" not in listing and "sync_tags_action" not in listing
    staff_client.post(
        url("adaccount_changelist"),
        {"action": "check_access_action", ACTION_CHECKBOX_NAME: [account.pk]},
    )
    page = staff_client.get(url("adaccount_change", account.pk)).content.decode()
    assert url("adaccount_check_access", account.pk) not in page
    assert emulator.requests == []
    account.refresh_from_db()
    assert account.access_checked_at is None
