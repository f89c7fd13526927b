"""The health panel and the Match readiness page in Chromium at 1366 px: no console
error, no horizontal overflow, a chart with y-axis labels whose failed bars show beside
a busy day, warnings with their fixes (the README's pictures come from make screenshots)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from tests.browser import log_in_as_superuser, overflow, screenshot, watch_console

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 1366


def rows(tag: EventTag, count: int, *, start: int, at: dt.datetime, **fields: Any) -> None:
    """``count`` conversions of ``tag`` created at ``at`` with ``fields``."""
    created = Conversion.objects.bulk_create(
        [
            Conversion(
                event_tag=tag,
                pixel_id=tag.pixel_id,
                event_key=tag.key or "",
                conversion_time=at,
                conversion_id=f"{tag.key}:{n}",
                **fields,
            )
            for n in range(start, start + count)
        ],
        batch_size=1000,
    )
    Conversion.objects.filter(pk__in=[c.pk for c in created]).update(created_at=at)


def seed() -> None:
    """Two weeks of a shop: a busy day (3,000 sent, 5 failed), a purchase tag whose twclid
    share fell this week, a sign-up tag with IP + user agent only, a stuck row, a paused
    account."""
    account = AdAccount.objects.create(account_id="18ce54d4x5t", name="Shop")
    pixel = Pixel.objects.create(pixel_id="o8z6j", account=account, name="Shop pixel")
    purchase, sign_up = (
        EventTag.objects.create(
            account=account,
            pixel=pixel,
            remote_id=key,
            website_tag_id=key.replace("_", ""),
            key=key,
            name=name,
            type=kind,
        )
        for key, name, kind in (
            ("purchase", "Purchase", "PURCHASE"),
            ("sign_up", "Sign up", "SIGN_UP"),
        )
    )
    now = timezone.now()
    device = {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0"}
    number = 0
    for days_ago in range(1, 14):
        at = now - dt.timedelta(days=days_ago)
        busy = days_ago == 3
        sent = 2997 if busy else 40 + 7 * days_ago  # with sign-ups: 3,000 sent
        clicks = sent * (4 if days_ago >= 7 else 1) // 10  # 39% the week before, 10% now
        rows(purchase, clicks, start=number, at=at, twclid="click", status="sent", sent_at=at)
        number += clicks
        rows(purchase, sent - clicks, start=number, at=at, hashed_email="e" * 64,
             status="sent", sent_at=at)  # fmt: skip
        number += sent - clicks
        failed = 5 if busy else days_ago % 3
        rows(purchase, failed, start=number, at=at, hashed_email="e" * 64, status="failed",
             failed_at=at, error_reason="rejected")  # fmt: skip
        number += failed
        rows(sign_up, 3, start=number, at=at, status="sent", sent_at=at, **device)
        number += 3
    rows(purchase, 1, start=number, at=now - dt.timedelta(minutes=30), twclid="click",
         status="sending", lease_expires_at=now - dt.timedelta(minutes=20))  # fmt: skip
    AdAccount.objects.create(
        account_id="9pl4cx2k1", name="Brand account", status="paused",
        paused_reason="Invalid or expired token (HTTP 401)", paused_at=now,
    )  # fmt: skip


def test_health_panel_and_readiness_page(page: Any, live_server: Any) -> None:
    seed()
    page.set_viewport_size({"width": WIDTH, "height": 900})
    errors = watch_console(page)
    log_in_as_superuser(page, live_server.url)

    page.goto(f"{live_server.url}/admin/xconversions/conversion/")
    panel = page.locator("#xconv-health")
    panel.wait_for()
    assert overflow(page) == 0
    labels = panel.locator("text.xconv-axis-label").all_text_contents()
    assert labels[:4] == ["0", "1,000", "2,000", "3,000"], labels
    busy = panel.locator("g.xconv-day", has=page.locator("title", has_text="3,000 sent, 5 failed"))
    assert busy.count() == 1
    sent_box = busy.locator("rect.xconv-sent").bounding_box()
    failed_box = busy.locator("rect.xconv-failed").bounding_box()
    assert failed_box["height"] > 10 and sent_box["height"] > 100, (sent_box, failed_box)
    quiet = panel.locator("g.xconv-day", has=page.locator("title", has_text=" 1 failed"))
    assert quiet.first.locator("rect.xconv-failed").bounding_box()["height"] >= 2
    warnings = panel.locator("[data-warning]")
    codes = [warnings.nth(n).get_attribute("data-warning") for n in range(warnings.count())]
    assert codes == ["stuck", "twclid_drop", "device_only"], codes
    assert "python manage.py send_conversions --loop" in panel.inner_text()
    assert "Resume sending" in panel.inner_text()
    screenshot(page, "health-panel")  # in test-artifacts/, should what follows fail

    page.click("text=Identifiers per event tag")
    page.wait_for_selector("#xconv-readiness")
    assert page.inner_text("h1") == "Match readiness"
    screenshot(page, "match-readiness")  # in test-artifacts/, should what follows fail
    assert overflow(page) == 0
    purchase = page.locator('tr[data-key="purchase"]')
    # 330 of 3,335 purchases in the last 7 days (the stuck one too); 305 of 777 before.
    twclid = purchase.locator('[data-window="7"][data-field="twclid"]').inner_text()
    assert twclid.startswith("10%") and "39% the week before" in twclid, twclid
    assert page.locator('tr[data-key="sign_up"] .xconv-badge').inner_text() == "IP + UA only"
    assert page.locator(".xconv-warnings [data-warning]").count() == 2
    assert errors == [], errors
