"""Connect with X in Chromium: the admin, the emulator's authorize page, and back."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from django_xconversions.client import XAdsClient
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount
from tests.browser import log_in_as_superuser, screenshot

from .conftest import ACCOUNT_ID, CONSUMER_KEY, USER_ID, configure

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_connect_with_x_in_the_browser(
    page: Any, live_server: Any, emulator: EmulatorServer, settings: Any
) -> None:
    configure(settings, OAUTH_BASE_URL=emulator.url)
    account = AdAccount.objects.create(account_id=ACCOUNT_ID, name="Shop")
    # X refuses localhost callbacks: the admin is opened on 127.0.0.1, as X's docs advise.
    site = f"http://127.0.0.1:{urlsplit(live_server.url).port}"
    emulator.allow_callback(CONSUMER_KEY, f"{site}/admin/xconversions/adaccount/connect/callback/")

    log_in_as_superuser(page, site)

    # The account's page, then the list's "Connect with X" button (or its URL).
    page.goto(f"{site}/admin/xconversions/adaccount/{account.pk}/change/")
    page.goto(f"{site}/admin/xconversions/adaccount/")
    if page.locator("a.xconv-connect").count():
        page.click("a.xconv-connect")
    else:
        page.goto(f"{site}/admin/xconversions/adaccount/connect/")
    page.select_option("#id_account", str(account.pk))
    page.check("input[name=method][value=web]")
    screenshot(page, "connect-with-x-start")
    page.click("#xconv-connect-submit")

    # X's authorize page (the emulator's): sign in as the user and authorize.
    page.wait_for_url(f"{emulator.url}/oauth/authorize*")
    page.select_option("#user_id", USER_ID)
    page.click("#allow")

    page.wait_for_selector("ul.messagelist")
    assert page.url == f"{site}/admin/xconversions/adaccount/{account.pk}/change/"
    message = page.inner_text("ul.messagelist li.success")
    assert "connected with X as @shop" in message
    screenshot(page, "connect-with-x")

    account.refresh_from_db()
    credentials = account.credentials()
    with XAdsClient(
        access_token=credentials.access_token, access_token_secret=credentials.access_token_secret
    ) as client:
        assert client.authenticated_user_access(ACCOUNT_ID)["permissions"] == ["ACCOUNT_ADMIN"]
    # Neither token nor secret ever reached the browser.
    html = page.content()
    assert credentials.access_token not in html and credentials.access_token_secret not in html
