"""The admin in Chromium: log in, check access, sync tags, create a tag, read the health
panel and send pending conversions, against the emulator over loopback."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, DeliveryAttempt, EventTag, Pixel
from tests.browser import log_in_as_superuser, overflow, screenshot, watch_console

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
    assert "3 tags created" in messages(page)
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


# -- the admin at a glance, at 1366 px -----------------------------------------------------

WIDTH = 1366
SECONDS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
LONG_ERROR = (
    "X refused: Event ID tw-o8z6j-ny3od was not found for the pixel; the conversion_id "
    "is kept for 48 hours for deduplication and its contents were "
    + "content_id sku-42 content_price 19.99 "
    * 6
)


def shop_outbox(pixel: Pixel) -> tuple[EventTag, EventTag, Conversion]:
    """A shop's outbox as it looks after a week: UUID conversion ids, every status, long
    errors from X, debug ids; a live purchase tag and a sign-up tag deleted on X."""
    purchase = EventTag.objects.create(
        account=pixel.account, pixel=pixel, remote_id="o3bk1", website_tag_id="ny3od",
        key="purchase", name="Purchase", type="PURCHASE", click_window=7,
        view_through_window=1, status="TRACKING",
        raw={"id": "o3bk1", "name": "Purchase", "website_tag_id": "ny3od"},
    )  # fmt: skip
    sign_up = EventTag.objects.create(
        account=pixel.account, pixel=pixel, remote_id="o3bk2", website_tag_id="ny3oe",
        key="sign_up", name="Sign up", type="SIGN_UP", click_window=1,
        view_through_window=1, deleted=True,
    )  # fmt: skip
    now = timezone.now()
    statuses = ["sent", "sent", "failed", "pending", "sent", "skipped", "held", "sending"]
    rows = []
    for n in range(40):
        status = statuses[n % len(statuses)]
        tag = None if status == "held" else purchase
        rows.append(
            Conversion(
                event_tag=tag,
                pixel=pixel if tag else None,
                event_key="newsletter" if tag is None else "purchase",
                conversion_time=now - dt.timedelta(hours=n, seconds=n * 7),
                conversion_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://shop.example/o/{n}")),
                hashed_email=f"{n:02d}"
                + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15"[:62],
                ip_address="203.0.113.9",
                user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
                value=Decimal("129.90"),
                currency="EUR",
                number_items=2,
                contents=[{"content_id": "sku-42", "content_price": "64.95", "num_items": 2}],
                status=status,
                attempts=2 if status in ("failed", "pending") else 0,
                error_reason={
                    "failed": "rejected",
                    "pending": "transient",
                    "held": "no_tag",
                    "skipped": "consent",
                }.get(status, ""),
                last_error={
                    "failed": LONG_ERROR,
                    "pending": "X answered 503 Service Unavailable; retrying in 4 min",
                    "held": "No event tag with the key 'newsletter': create it or sync tags.",
                }.get(status, ""),
                debug_id=f"{uuid.uuid5(uuid.NAMESPACE_DNS, str(n)).hex}"
                if status == "sent"
                else "",
                sent_at=now - dt.timedelta(hours=n) if status == "sent" else None,
                failed_at=now - dt.timedelta(hours=n) if status == "failed" else None,
            )
        )
    Conversion.objects.bulk_create(rows)
    for row in Conversion.objects.all():  # recorded seconds before their conversion time
        Conversion.objects.filter(pk=row.pk).update(created_at=row.conversion_time)
    for n in range(12):
        at = now - dt.timedelta(hours=n, seconds=2)  # the request that decided row n
        kind = statuses[n % len(statuses)]
        if kind == "failed":  # two 503s, then X's refusal
            for seconds in (5, 4):
                DeliveryAttempt.objects.create(
                    account=pixel.account, pixel=pixel, event_count=3, http_status=503,
                    outcome="server_error", error_body="Service Unavailable",
                    duration_ms=30_000, created_at=at - dt.timedelta(seconds=seconds),
                )  # fmt: skip
        DeliveryAttempt.objects.create(
            account=pixel.account, pixel=pixel, event_count=n + 1,
            http_status=400 if kind == "failed" else 200,
            outcome="bad_request" if kind == "failed" else "sent",
            error_code="INVALID_PARAMETER" if kind == "failed" else "",
            error_body=LONG_ERROR if kind == "failed" else "",
            debug_id=uuid.uuid5(uuid.NAMESPACE_DNS, str(n)).hex, duration_ms=120 + n,
            created_at=at,
        )  # fmt: skip
    failed_row = Conversion.objects.filter(status="failed").first()
    assert failed_row is not None
    return purchase, sign_up, failed_row


def test_admin_pages_read_at_a_glance_at_1366_px(page: Any, live_server: Any, pixel: Pixel) -> None:
    _purchase, sign_up, failed_row = shop_outbox(pixel)
    page.set_viewport_size({"width": WIDTH, "height": 900})
    errors = watch_console(page)
    site = live_server.url
    log_in_as_superuser(page, site)

    # The conversion list, filter sidebar open: every column in view, one line a row.
    page.goto(f"{site}/admin/xconversions/conversion/")
    page.wait_for_selector("#changelist-filter")
    assert overflow(page) == 0
    assert overflow(page, "#changelist-form .results") == 0
    headers = page.locator("#result_list thead th")
    names = [headers.nth(n).inner_text().strip() for n in range(headers.count())][1:]
    assert [n.upper() for n in names] == [n.upper() for n in [
        "Conversion ID", "Event", "Status", "Conversion time", "Attempts", "Error", "Debug ID",
    ]], names  # fmt: skip
    widths = page.eval_on_selector_all(
        "#result_list thead th", "ths => ths.map(t => [t.className, t.offsetWidth, t.scrollWidth])"
    )
    assert all(scroll <= width for _name, width, scroll in widths), str(widths)
    right = page.evaluate("document.documentElement.clientWidth")
    for n in range(headers.count()):
        box = headers.nth(n).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= right, (n, box)
    heights = page.eval_on_selector_all(
        "#result_list tbody tr", "rows => rows.map(r => r.offsetHeight)"
    )
    assert len(heights) == 40 and max(heights) < 40, heights
    row = page.locator("#result_list tbody tr", has_text=failed_row.conversion_id[:8])
    badge = row.locator(".xconv-status")
    assert badge.inner_text() == "Failed"
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    screenshot(page, "admin-conversions")  # test-artifacts/ (README: make screenshots)

    # One conversion: its fieldsets and the attempts of its pixel.
    page.goto(f"{site}/admin/xconversions/conversion/{failed_row.pk}/change/")
    titles = page.locator("fieldset.module h2").all_inner_texts()
    assert titles[:4] == [
        "Event", "Identifiers (hashed)", "Values and contents", "Delivery and errors",
    ], titles  # fmt: skip
    assert overflow(page) == 0
    attempts = page.locator("#xconv-attempts-group tbody tr")
    assert attempts.count() == 3  # two 503s, then the 400
    assert page.locator("#xconv-attempts-group").inner_text().count(":") >= 6  # seconds
    assert page.locator(".field-attempts_display .readonly").inner_text() == "3"
    screenshot(page, "admin-conversion")  # test-artifacts/ (README: make screenshots)

    # Delivery attempts and event tags: compact lists that fit, times to the second.
    for listing in ("deliveryattempt", "eventtag", "adaccount"):
        page.goto(f"{site}/admin/xconversions/{listing}/")
        assert overflow(page) == 0 and overflow(page, "#changelist-form .results") == 0, listing
    page.goto(f"{site}/admin/xconversions/deliveryattempt/")
    times = page.locator("#result_list .field-time").all_inner_texts()
    assert len(times) == 16 and all(re.fullmatch(SECONDS, t) for t in times), times
    heights = page.eval_on_selector_all(
        "#result_list tbody tr", "rows => rows.map(r => r.offsetHeight)"
    )
    assert max(heights) < 36, heights

    # The tag deleted on X says so, in words; windows in proper plurals.
    page.goto(f"{site}/admin/xconversions/eventtag/{sign_up.pk}/change/")
    text = page.inner_text("#content-main")
    assert "Deleted on X" in text and "1 day" in text and "1 days" not in text, text
    assert overflow(page) == 0
    screenshot(page, "admin-tag")  # test-artifacts/ (README: make screenshots)

    # Connect with X in the admin's own form style: each label placed against its field
    # as the admin's own forms place theirs (beside it on Django 5.2, above it on 6).
    def arrangement(label_for: str) -> tuple[bool, bool]:
        label = page.locator(f"label[for={label_for}]").bounding_box()
        field = page.locator(f"#{label_for}").bounding_box()
        assert label and field, label_for
        return abs(label["y"] - field["y"]) < 12, field["x"] >= label["x"] + 150

    page.goto(f"{site}/admin/xconversions/adaccount/add/")
    admins_own = arrangement("id_account_id")
    page.goto(f"{site}/admin/xconversions/adaccount/connect/")
    assert arrangement("id_account") == admins_own
    assert overflow(page) == 0
    screenshot(page, "admin-connect")  # test-artifacts/ (README: make screenshots)
    assert errors == [], errors
