"""The admin in Chromium: log in, check access, sync tags, create a tag, read the health
panel and send pending conversions, against the emulator over loopback."""

from __future__ import annotations

from typing import Any

import pytest

from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from tests.browser import log_in_as_superuser, screenshot

from .conftest import ACCOUNT_ID, make_conversions, received_ids

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def run_action(page: Any, action: str) -> None:
    page.check("#action-toggle")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist")


def messages(page: Any) -> str:
    return str(page.inner_text("ul.messagelist"))


def test_admin_end_to_end(
    page: Any, live_server: Any, emulator: EmulatorServer, pixel: Pixel
) -> None:
    for n in range(3):
        emulator.add_tag(ACCOUNT_ID, name=f"Remote {n}", type="SITE_VISIT" if n else "SIGN_UP")
    admin = f"{live_server.url}/admin/"
    log_in_as_superuser(page, live_server.url)

    # Check access: X says ACCOUNT_ADMIN.
    page.goto(f"{admin}xconversions/adaccount/")
    run_action(page, "check_access_action")
    assert "ACCOUNT_ADMIN" in messages(page)
    assert AdAccount.objects.get().access_check_ok is True

    # Sync tags with the list's button.
    page.goto(f"{admin}xconversions/eventtag/")
    page.click("button.xconv-sync-button")
    page.wait_for_selector("ul.messagelist")
    assert "3 tag(s) created" in messages(page)
    assert EventTag.objects.count() == 3

    # Create a tag: it exists on X, bound to the pixel.
    page.goto(f"{admin}xconversions/eventtag/add/")
    page.select_option("#id_account", str(pixel.account.pk))
    page.select_option("#id_pixel", str(pixel.pk))
    page.fill("#id_key", "purchase")
    page.fill("#id_name", "Purchase")
    page.select_option("#id_type", "PURCHASE")
    page.select_option("#id_click_window", "7")
    page.select_option("#id_view_through_window", "1")
    page.click("input[name=_save]")
    page.wait_for_selector("ul.messagelist")
    tag = EventTag.objects.get(key="purchase")
    remote = emulator.world.accounts[ACCOUNT_ID].tags[tag.remote_id]
    assert (remote.name, remote.click_window) == ("Purchase", 7)

    # Health panel with its chart, then send the pending conversions with the action.
    make_conversions(tag, 4)
    page.goto(f"{admin}xconversions/conversion/")
    panel = page.locator("#xconv-health")
    assert panel.locator("td[data-status=pending]").inner_text() == "4"
    assert panel.locator("svg rect.xconv-sent").count() == 14
    run_action(page, "send_now_action")
    assert "4 sent, 0 failed" in messages(page)
    assert sorted(received_ids(emulator)) == [f"order:{n}" for n in range(4)]
    assert Conversion.objects.filter(status="sent").count() == 4
    assert panel.locator("td[data-status=sent]").inner_text() == "4"
    screenshot(page, "admin-health")
    assert page.dialogs == []
