"""Prometheus metrics: the scrape is Prometheus' text format and counts what a drain did;
the view has its own permission; the package works without prometheus-client."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_xconversions import delivery, metrics, track
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag
from tests.conftest import make_conversions
from tests.helpers.processes import run_python

METRICS = reverse("xconversions_api:metrics")
PASSWORD = "scrape-password"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def scraper(django_user_model: Any, *, permitted: bool = True, **flags: Any) -> Client:
    """A client logging in with HTTP basic auth, as Prometheus' basic_auth does."""
    user = django_user_model.objects.create_user("prometheus", password=PASSWORD, **flags)
    if permitted:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="xconversions", codename="view_metrics")
        )
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {token}")


def scrape(client: Client) -> Samples:
    response = client.get(METRICS)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.mark.django_db(transaction=True)
def test_a_scrape_counts_what_a_drain_did(
    django_user_model: Any,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    account: AdAccount,
    settings: Any,
) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "BATCH_SIZE": 100}
    client = scraper(django_user_model)
    before = scrape(client)
    make_conversions(purchase_tag, 240)
    for number in range(10):
        track("purchase", email=f"c{number}@example.com", conversion_id=f"tracked:{number}")
    track("no_such_key", email="held@example.com")
    emulator.reject_event_ids("order:7")

    pending = scrape(client)
    assert value(pending, "xconversions_pending_conversions", account=account.account_id) == 250
    assert value(pending, "xconversions_held_conversions", reason="no_tag") == 1
    assert value(pending, "xconversions_account_paused", account=account.account_id) == 0
    assert value(pending, "xconversions_oldest_pending_age_seconds", account=account.account_id) > 0

    summary = delivery.send_pending()
    assert summary.sent == 249

    after = scrape(client)
    assert grew(before, after, "xconversions_conversions_recorded_total", status="pending") == 10
    assert grew(before, after, "xconversions_conversions_recorded_total", status="held") == 1
    assert grew(before, after, "xconversions_conversions_sent_total") == 249
    assert grew(before, after, "xconversions_conversions_failed_total", reason="rejected") == 1
    ok = grew(before, after, "xconversions_requests_total", status="200")
    refused = grew(before, after, "xconversions_requests_total", status="400")
    assert ok + refused == summary.requests
    assert refused >= 1 and ok >= 3
    assert grew(before, after, "xconversions_request_seconds_count") == summary.requests
    assert grew(before, after, "xconversions_request_seconds_sum") > 0
    assert grew(before, after, "xconversions_request_seconds_bucket", le="+Inf") == (
        summary.requests
    )
    assert value(after, "xconversions_pending_conversions", account=account.account_id) == 0
    assert value(after, "xconversions_sending_conversions", account=account.account_id) == 0
    assert value(after, "xconversions_oldest_pending_age_seconds", account=account.account_id) == 0


@pytest.mark.django_db(transaction=True)
def test_429s_per_account_and_a_paused_account(
    django_user_model: Any,
    emulator: EmulatorServer,
    purchase_tag: EventTag,
    account: AdAccount,
) -> None:
    client = scraper(django_user_model)
    before = scrape(client)
    make_conversions(purchase_tag, 5)
    emulator.faults.script(["429"])
    delivery.send_pending()
    # X said wait: waited out here, so that the next request meets the 401.
    AdAccount.objects.filter(pk=account.pk).update(
        rate_limited_until=None, budget_window_ends_at=None
    )
    emulator.faults.script(["401"])
    delivery.send_pending()
    after = scrape(client)
    assert grew(before, after, "xconversions_rate_limited_total", account=account.account_id) == 1
    assert grew(before, after, "xconversions_requests_total", status="429") == 1
    assert grew(before, after, "xconversions_requests_total", status="401") == 1
    assert grew(before, after, "xconversions_conversions_sent_total") == 0
    assert value(after, "xconversions_account_paused", account=account.account_id) == 1
    assert value(after, "xconversions_pending_conversions", account=account.account_id) == 5


@pytest.mark.django_db(transaction=True)
def test_counters_wait_for_the_commit(emulator: EmulatorServer, purchase_tag: EventTag) -> None:
    from django.db import transaction

    make_conversions(purchase_tag, 3)
    sent_before = metrics.SENT._value.get()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert delivery.send_pending().sent == 3
        raise RuntimeError("rolled back")
    assert metrics.SENT._value.get() == sent_before
    assert delivery.send_pending().sent == 3
    assert metrics.SENT._value.get() == sent_before + 3


def test_the_oldest_pending_age_counts_from_when_a_row_fell_due(
    purchase_tag: EventTag, account: AdAccount
) -> None:
    make_conversions(purchase_tag, 2)
    Conversion.objects.filter(conversion_id="order:0").update(
        next_attempt_at=timezone.now() - dt.timedelta(minutes=10)
    )
    Conversion.objects.filter(conversion_id="order:1").update(
        next_attempt_at=timezone.now() + dt.timedelta(minutes=10)
    )
    families = {family.name: family for family in metrics.BacklogCollector().collect()}
    ages = {
        s.labels["account"]: s.value
        for s in families["xconversions_oldest_pending_age_seconds"].samples
    }
    assert 600 <= ages[account.account_id] < 660
    Conversion.objects.filter(conversion_id="order:0").update(status="sent")
    families = {family.name: family for family in metrics.BacklogCollector().collect()}
    ages = {
        s.labels["account"]: s.value
        for s in families["xconversions_oldest_pending_age_seconds"].samples
    }
    assert ages[account.account_id] == 0  # pending, but not due yet


# -- the view ------------------------------------------------------------------------------


def test_the_view_needs_its_own_permission(django_user_model: Any, db: None) -> None:
    assert Client().get(METRICS).status_code in (401, 403)
    refused = scraper(django_user_model, permitted=False, is_staff=True)
    response = refused.get(METRICS)
    assert response.status_code == 403
    assert "xconversions.view_metrics" in response.json()["detail"]
    django_user_model.objects.all().delete()
    # The permission alone is enough: a scraper needs neither staff nor conversions.
    assert scrape(scraper(django_user_model)) is not None


def test_an_inactive_scraper_is_refused(django_user_model: Any, db: None) -> None:
    client = scraper(django_user_model)
    django_user_model.objects.update(is_active=False)
    assert client.get(METRICS).status_code in (401, 403)


def test_openmetrics_when_asked(django_user_model: Any, db: None) -> None:
    response = scraper(django_user_model).get(
        METRICS, HTTP_ACCEPT="application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_the_view_says_what_to_install_without_prometheus_client(
    django_user_model: Any, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "AVAILABLE", False)
    response = scraper(django_user_model).get(METRICS)
    assert response.status_code == 501
    assert "pip install 'django-xconversions[metrics]'" in response.content.decode()


def test_our_metrics_plug_into_an_existing_registry(db: None, pixel: Any) -> None:
    existing = CollectorRegistry()
    metrics.register(existing)
    text = generate_latest(existing).decode()
    for name in (
        "xconversions_conversions_sent_total",
        "xconversions_requests_total",
        "xconversions_request_seconds_bucket",
        "xconversions_pending_conversions{",
        "xconversions_account_paused{",
    ):
        assert name in text


def _child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_python(
        "-c", code, DJANGO_SETTINGS_MODULE="tests.settings", XCONVERSIONS_TEST_DB="sqlite", **env
    )


def test_everything_works_without_prometheus_client() -> None:
    code = """
import sys
sys.modules["prometheus_client"] = None  # as if not installed
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django_xconversions import metrics, observe, track
from django_xconversions.models import AdAccount, EventTag, Pixel
assert not metrics.AVAILABLE
account = AdAccount.objects.create(account_id="abc", name="A")
pixel = Pixel.objects.create(pixel_id="p1", account=account)
EventTag.objects.create(account=account, pixel=pixel, remote_id="r", website_tag_id="w",
                        key="purchase", name="P", type="PURCHASE")
stored = track("purchase", email="a@example.com")
observe.request(account, pixel, events=1, http_status=200, outcome="sent", seconds=0.1)
print(stored.status)
"""
    child = _child(code)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "pending"


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR: a worker's counters show in the web process's scrape."""
    worker = _child(
        "import django; django.setup()\n"
        "from django_xconversions import metrics\n"
        "metrics.count_sent(7)\n",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    assert worker.returncode == 0, worker.stderr
    web = _child(
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from django_xconversions import metrics\n"
        "metrics.count_sent(2)\n"
        "print(metrics.render()[0].decode())\n",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    assert web.returncode == 0, web.stderr
    assert "xconversions_conversions_sent_total 9.0" in web.stdout
    assert "# TYPE xconversions_pending_conversions gauge" in web.stdout


def test_a_worker_serves_its_own_counters() -> None:
    """``metrics.serve``: a worker on a host of its own; the backlog gauges stay with the
    view (every process would report the same database-wide numbers)."""
    import requests

    server, thread = metrics.serve(0)
    try:
        metrics.count_sent(1)
        answer = requests.get(f"http://127.0.0.1:{server.server_port}/", timeout=5)
        assert answer.status_code == 200
        sent = {
            sample.name: sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }
        assert sent["xconversions_conversions_sent_total"] == metrics.SENT._value.get()
        assert "xconversions_pending_conversions" not in answer.text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
