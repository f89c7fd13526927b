"""What the admin shows: attempts counted by one rule, status badges, a conversion's
fieldsets and delivery attempts, times to the second, tag states and windows in words,
and messages in singular and plural. (How it looks in Chromium: test_admin_browser.)"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_xconversions import delivery
from django_xconversions.admin import display
from django_xconversions.admin.forms import AdAccountForm, EventTagForm, PixelForm
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, DeliveryAttempt, EventTag, Pixel

from .conftest import configure, make_conversions

pytestmark = pytest.mark.django_db

SECONDS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture
def superuser_client(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:xconversions_{name}", args=args)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def list_row(html: str, conversion_id: str) -> str:
    """The changelist's table row of ``conversion_id``."""
    rows = [r for r in re.findall(r"<tr>.*?</tr>", html, re.S) if f">{conversion_id}<" in r]
    assert len(rows) == 1, conversion_id
    return rows[0]


def attempts_shown(client: Client, conversion_id: str) -> int:
    html = client.get(url("conversion_changelist")).content.decode()
    found = re.search(r'class="field-attempts_display">(\d+)<', list_row(html, conversion_id))
    assert found is not None
    return int(found.group(1))


# -- attempts: one rule for every status ---------------------------------------------------


def test_attempts_count_every_request_that_carried_the_row_whatever_its_status(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag, superuser_client: Client
) -> None:
    """Sent rows showed "Attempts 0": the request that sends (or that X refuses, or the
    last one before giving up) was not counted. One row at a time in the outbox, so every
    request logged carried it."""
    configure(settings, MAX_ATTEMPTS=3, RETRY_BACKOFF_BASE=0.01)

    def run(conversion_id: str, faults: list[str], passes: int) -> tuple[str, int]:
        emulator.faults.script(faults)
        before = DeliveryAttempt.objects.count()
        for _ in range(passes):
            Conversion.objects.filter(status="pending").update(next_attempt_at=timezone.now())
            delivery.send_pending()
        row = Conversion.objects.get(conversion_id=conversion_id)
        requests = DeliveryAttempt.objects.count() - before
        assert attempts_shown(superuser_client, conversion_id) == requests, row.status
        return row.status, requests

    make_conversions(purchase_tag, 1, start=0)
    assert run("order:0", [], 1) == ("sent", 1)  # was "Attempts 0"
    make_conversions(purchase_tag, 1, start=1)
    assert run("order:1", ["503", "500"], 3) == ("sent", 3)
    make_conversions(purchase_tag, 1, start=2)
    assert run("order:2", ["500", "500", "500"], 3) == ("failed", 3)  # gave up after 3
    make_conversions(purchase_tag, 1, start=3)
    emulator.reject_event_ids("order:3")
    assert run("order:3", [], 1) == ("failed", 1)  # refused by X
    make_conversions(purchase_tag, 1, start=4, value=Decimal("5"), currency="ZZZ")
    assert run("order:4", [], 1) == ("failed", 0)  # refused before sending
    assert Conversion.objects.get(conversion_id="order:4").error_reason == "invalid"
    make_conversions(purchase_tag, 1, start=5)
    assert run("order:5", ["503"], 1) == ("pending", 1)  # waiting for its retry


@pytest.mark.parametrize(
    ("status", "reason", "stored", "shown"),
    [
        ("pending", "", 0, 0),
        ("pending", "transient", 2, 2),
        ("sending", "transient", 1, 1),
        ("sent", "", 0, 1),
        ("sent", "", 4, 5),
        ("failed", "rejected", 0, 1),
        ("failed", "not_found", 1, 2),
        ("failed", "max_attempts", 7, 8),
        ("failed", "invalid", 0, 0),
        ("skipped", "consent", 0, 0),
        ("skipped", "manual", 2, 2),
        ("held", "no_tag", 0, 0),
    ],
)
def test_attempts_rule(status: str, reason: str, stored: int, shown: int) -> None:
    assert display.attempts_made(status, reason, stored) == shown


# -- status badges --------------------------------------------------------------------------


def test_status_badges_carry_the_word_and_escape_what_they_show(
    tag: EventTag, superuser_client: Client
) -> None:
    badge = str(display.status_badge("failed", "<b>Failed</b>"))
    assert badge == (
        '<span class="xconv-status xconv-status-failed" data-status="failed">'
        "&lt;b&gt;Failed&lt;/b&gt;</span>"
    )
    hostile = '"><script>alert(1)</script>'
    for n, status in enumerate(Conversion.Status.values):
        make_conversions(tag, 1, start=n)
        Conversion.objects.filter(conversion_id=f"order:{n}").update(status=status)
    Conversion.objects.filter(conversion_id="order:3").update(
        conversion_id=hostile, last_error=hostile, error_reason="rejected", debug_id=hostile
    )
    html = superuser_client.get(url("conversion_changelist")).content.decode()
    for status, label in Conversion.Status.choices:
        assert f'data-status="{status}">{label}</span>' in html
    assert "<script>alert(1)" not in html
    escaped = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f'title="Rejected by X: {escaped}"' in html  # the whole error on hover
    assert f'data-copy="{escaped}"' in html  # the debug ID's copy button


def test_list_columns_and_debug_id_clipped_with_the_whole_on_hover(
    tag: EventTag, superuser_client: Client
) -> None:
    (row,) = make_conversions(tag, 1)
    debug_id = "0f8e5c3a9b7d4e21a6c3f0e9d8b7a6c5"
    Conversion.objects.filter(pk=row.pk).update(status="sent", debug_id=debug_id)
    response = superuser_client.get(url("conversion_changelist"))
    headers = [h["text"] for h in response.context["result_headers"]][1:]
    assert headers == [
        "Conversion ID",
        "Event",
        "Status",
        "Conversion time",
        "Attempts",
        "Error",
        "Debug ID",
    ]
    cells = list_row(response.content.decode(), "order:0")
    assert f'<code class="xconv-clip xconv-clip-id" title="{debug_id}">{debug_id}</code>' in cells
    assert 'class="xconv-copy"' in cells
    assert re.search(rf'<time class="xconv-time" datetime="[^"]+" title="[^"]+">{SECONDS}<', cells)
    assert "xconversions/admin.css" in response.content.decode()


def test_list_queries_do_not_grow_with_the_rows_shown(
    tag: EventTag, superuser_client: Client
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert superuser_client.get(url("conversion_changelist")).status_code == 200
        return len(captured.captured_queries)

    make_conversions(tag, 3)
    superuser_client.get(url("conversion_changelist"))  # the session's first read
    few = queries()
    make_conversions(tag, 60, start=100)
    Conversion.objects.filter(conversion_id__startswith="order:1").update(status="sent")
    assert queries() == few


# -- a conversion's page ---------------------------------------------------------------------


def test_conversion_page_in_fieldsets_with_its_delivery_attempts(
    tag: EventTag, superuser_client: Client
) -> None:
    (row,) = make_conversions(tag, 1)
    now = timezone.now()
    Conversion.objects.filter(pk=row.pk).update(
        status="sent", sent_at=now, debug_id="dbg-sent", created_at=now - dt.timedelta(minutes=5)
    )
    account, pixel = tag.account, tag.pixel
    for seconds, status, debug_id in ((200, 503, "dbg-503"), (1, 200, "dbg-sent")):
        DeliveryAttempt.objects.create(
            account=account, pixel=pixel, event_count=1, http_status=status,
            outcome="sent" if status == 200 else "server_error", debug_id=debug_id,
            created_at=now - dt.timedelta(seconds=seconds),
        )  # fmt: skip
    # Another pixel's request, and one from before the conversion was recorded: not its.
    other = Pixel.objects.create(pixel_id="other", account=account)
    DeliveryAttempt.objects.create(pixel=other, event_count=1, outcome="sent", debug_id="dbg-x")
    DeliveryAttempt.objects.create(
        pixel=pixel, event_count=1, outcome="sent", debug_id="dbg-old",
        created_at=now - dt.timedelta(hours=1),
    )  # fmt: skip

    response = superuser_client.get(url("conversion_change", row.pk))
    titles = [fieldset.name for fieldset in response.context["adminform"]]
    assert titles == ["Event", "Identifiers (hashed)", "Values and contents", "Delivery and errors"]
    html = response.content.decode()
    group = html.split('id="xconv-attempts-group"')[1].split("</table>")[0]
    assert group.count("<tr") == 3  # the head and its pixel's two requests
    assert "dbg-503" in group and "dbg-sent" in group
    assert "dbg-x" not in group and "dbg-old" not in group
    assert '<tr class="xconv-carried"' in group
    assert len(re.findall(rf">{SECONDS}</time>", group)) == 2
    assert group.index("dbg-sent") < group.index("dbg-503")  # latest first
    assert 'data-status="sent">Sent</span>' in html  # the status badge in its fieldset
    assert 'name="status"' not in html  # read-only


def test_held_conversion_page_says_no_request_was_made(superuser_client: Client) -> None:
    row = Conversion.objects.create(
        event_key="newsletter", conversion_time=timezone.now(), conversion_id="n:1",
        status="held", error_reason="no_tag",
    )  # fmt: skip
    html = superuser_client.get(url("conversion_change", row.pk)).content.decode()
    assert "No request to X for this conversion" in html


def test_delivery_attempts_list_shows_seconds(pixel: Pixel, superuser_client: Client) -> None:
    at = dt.datetime(2026, 11, 30, 0, 16, 5, tzinfo=dt.timezone.utc)
    DeliveryAttempt.objects.create(pixel=pixel, event_count=3, outcome="sent", created_at=at)
    html = superuser_client.get(url("deliveryattempt_changelist")).content.decode()
    assert ">2026-11-30 00:16:05</time>" in html
    assert "12:16 a.m." not in html


def test_health_panel_last_sent_to_the_second(tag: EventTag, superuser_client: Client) -> None:
    at = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=3)
    (row,) = make_conversions(tag, 1)
    Conversion.objects.filter(pk=row.pk).update(status=Conversion.Status.SENT, sent_at=at)
    html = superuser_client.get(url("conversion_changelist")).content.decode()
    shown = timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(rf"Last sent</th><td>{shown}</td>", html), html


# -- event tags and forms ----------------------------------------------------------------------


def test_tag_page_says_its_state_on_x_in_words(tag: EventTag, superuser_client: Client) -> None:
    live = superuser_client.get(url("eventtag_change", tag.pk)).content.decode()
    assert "State on X" in live and "xconv-state-live" in live and ">Live<" in live
    EventTag.objects.filter(pk=tag.pk).update(deleted=True, click_window=1, view_through_window=1)
    deleted = superuser_client.get(url("eventtag_change", tag.pk)).content.decode()
    assert ">Deleted on X<" in deleted
    assert "Deleted:" not in deleted and "Deleted on X." not in deleted
    assert "1 day<" in deleted and "1 days" not in deleted
    listing = superuser_client.get(url("eventtag_changelist")).content.decode()
    assert ">Deleted on X<" in listing and "1 days" not in listing
    live_only = superuser_client.get(url("eventtag_changelist"), {"state_on_x": "live"})
    assert live_only.context["cl"].result_count == 0
    deleted_only = superuser_client.get(url("eventtag_changelist"), {"state_on_x": "deleted"})
    assert deleted_only.context["cl"].result_count == 1


def test_window_choices_and_token_labels_read_properly(db: None) -> None:
    choices = dict(EventTagForm().fields["click_window"].choices)  # type: ignore[attr-defined]
    assert choices == {1: "1 day", 7: "7 days", 14: "14 days", 30: "30 days"}
    view = dict(EventTagForm().fields["view_through_window"].choices)  # type: ignore[attr-defined]
    assert view[0] == "0 days" and view[1] == "1 day"
    assert AdAccountForm().fields["access_token"].label == "Access token"
    assert AdAccountForm().fields["access_token_secret"].label == "Access token secret"
    assert PixelForm().fields["pixel_token"].label == "Pixel token"
    assert display.days(1) == "1 day" and display.days(2) == "2 days"


def test_connect_page_uses_the_admin_form_style(
    account: AdAccount, superuser_client: Client
) -> None:
    html = superuser_client.get(url("adaccount_connect")).content.decode()
    assert "admin/css/forms.css" in html
    assert '<fieldset class="module aligned">' in html
    assert 'class="radiolist' in html and "vTextField" in html
    assert '<div class="submit-row">' in html


# -- messages in singular and plural -----------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2])
def test_action_messages_in_singular_and_plural(
    tag: EventTag, superuser_client: Client, count: int
) -> None:
    rows = make_conversions(tag, count)
    ids = [r.pk for r in rows]

    def act(action: str) -> list[str]:
        data = {"action": action, ACTION_CHECKBOX_NAME: ids}
        return messages_of(superuser_client.post(url("conversion_changelist"), data, follow=True))

    noun = "conversion" if count == 1 else "conversions"
    assert f"{count} {noun} marked skipped." in act("mark_skipped_action")
    assert f"{count} {noun} queued again." in act("retry_action")
    AdAccount.objects.update(status="paused")
    data = {"action": "resume_action", ACTION_CHECKBOX_NAME: [tag.account_id]}
    resumed = messages_of(superuser_client.post(url("adaccount_changelist"), data, follow=True))
    assert "1 account resumed." in resumed
    for text in (*act("mark_skipped_action"), *act("retry_action"), *resumed):
        assert "(s)" not in text and "1 conversions" not in text
