"""Dead and stuck senders are visible: the worker admin (live or gone), the health panel
above the conversion list and the REST API's health say what send_conversions --check says."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_xconversions.heartbeat import BEAT_SECONDS, LIVE_FACTOR, forget_old_workers
from django_xconversions.models import AdAccount, Conversion, EventTag, WorkerHeartbeat

from .conftest import make_conversions

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def worker(worker_id: str, seconds_ago: float, **fields: object) -> WorkerHeartbeat:
    beat = timezone.now() - dt.timedelta(seconds=seconds_ago)
    return WorkerHeartbeat.objects.create(
        worker_id=worker_id,
        host=f"host-{worker_id}",
        pid=1000 + len(worker_id),
        started_at=beat - dt.timedelta(hours=1),
        last_beat_at=beat,
        **fields,
    )


def stuck_and_paused(tag: EventTag) -> None:
    """Two rows stuck past their lease, and a paused account holding pending rows."""
    rows = make_conversions(tag, 5)
    Conversion.objects.filter(pk__in=[r.pk for r in rows[:2]]).update(
        status="sending", lease_expires_at=timezone.now() - dt.timedelta(minutes=30)
    )
    AdAccount.objects.filter(pk=tag.account_id).update(
        status="paused", paused_reason="Access token refused"
    )


def test_worker_admin_lists_live_and_gone_workers(staff_client: Client) -> None:
    live_for = BEAT_SECONDS * LIVE_FACTOR
    worker("alive", 1, current_pixel="o8z6j")
    worker("silent", live_for + 5)
    worker("stopped", 1, stopped_at=timezone.now())
    changelist = reverse("admin:xconversions_workerheartbeat_changelist")
    text = staff_client.get(changelist).content.decode()
    rows = re.findall(r"<tr.*?</tr>", text, re.S)
    state_of = {
        name: ("live" if ">live<" in row else "gone")
        for row in rows
        for name in ("alive", "silent", "stopped")
        if f"host-{name}<" in row
    }
    assert state_of == {"alive": "live", "silent": "gone", "stopped": "gone"}, text
    live = staff_client.get(changelist, {"state": "live"}).content.decode()
    listed = [row for row in re.findall(r"<tr.*?</tr>", live, re.S) if "host-" in row]
    assert len(listed) == 1 and "host-alive<" in listed[0]


def test_health_panel_shows_problems_and_workers(
    staff_client: Client, purchase_tag: EventTag
) -> None:
    stuck_and_paused(purchase_tag)
    worker("alive", 1, current_pixel="o8z6j")
    worker("silent", 600)
    html = staff_client.get(reverse("admin:xconversions_conversion_changelist")).content.decode()
    panel = html.split('id="xconv-health"')[1].split("</section>")[0]
    assert 'data-problem="stuck">2 conversions sending past their lease' in panel
    assert (
        'data-problem="paused_with_pending">account 18ce54d4x5t is paused holding 3 pending'
        in panel
    )
    assert re.search(r'class="xconv-live">live</strong> host-alive:\d+, last beat', panel)
    assert "sending pixel o8z6j" in panel
    assert re.search(r'class="xconv-gone">gone</strong> host-silent:\d+', panel)


def test_health_panel_without_workers_says_so(staff_client: Client) -> None:
    html = staff_client.get(reverse("admin:xconversions_conversion_changelist")).content.decode()
    assert "No send_conversions --loop worker seen yet." in html
    assert "data-problem=" not in html


def test_api_health_lists_problems_and_workers(purchase_tag: EventTag) -> None:
    stuck_and_paused(purchase_tag)
    Conversion.objects.filter(status="pending").update(
        next_attempt_at=timezone.now() - dt.timedelta(hours=1)
    )
    AdAccount.objects.update(status="active")
    worker("old", 3600)
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("root", "root@example.com", "pw"))
    data = api.get(reverse("xconversions_api:health")).json()
    assert [p["code"] for p in data["problems"]] == ["stuck", "no_worker"]
    assert data["problems"][1]["message"] == (
        "no worker seen for 60 minutes while 3 conversions are due"
    )
    assert [(w["host"], w["live"]) for w in data["workers"]] == [("host-old", False)]


def test_workers_unseen_for_a_week_are_forgotten(db: None) -> None:
    worker("recent", 3600)
    worker("ancient", 8 * 24 * 3600)
    assert forget_old_workers() == 1
    assert list(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == ["recent"]
