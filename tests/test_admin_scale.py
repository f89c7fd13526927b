"""The admin, the health panel, /x/health/ and the API list at scale: a bounded number of
queries whatever the table holds, no full COUNT(*) where estimates apply, orders read from
an index, and a chart tally that never counts a sent conversion twice or misses one.

Timings live in bench/admin_scale.py; these tests check what makes them hold."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_xconversions import alerts, day_tallies, health, readiness
from django_xconversions.models import (
    AdAccount,
    Conversion,
    EventTag,
    Pixel,
    SentTally,
    WorkerHeartbeat,
)

from .conftest import make_conversions

pytestmark = pytest.mark.django_db

TABLE = Conversion._meta.db_table
CHANGELIST = reverse("admin:xconversions_conversion_changelist")
HEALTH = reverse("xconversions_api:health")
CONVERSIONS = reverse("xconversions_api:conversion-list")


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "pw")


@pytest.fixture
def staff_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    client.get(CHANGELIST)  # the session and the user's first read are not the page's
    return client


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table counts as large: estimates apply as on tens of millions of rows."""
    monkeypatch.setattr(health, "EXACT_BELOW", 0)


def mixed_outbox(tag: EventTag, count: int) -> None:
    """``count`` rows: sent over the last days, some failed, skipped, held and pending."""
    now = timezone.now()
    rows = make_conversions(tag, count)
    for n, row in enumerate(rows):
        kind = n % 10
        if kind < 6:
            row.status, row.sent_at = "sent", now - dt.timedelta(hours=7 * n % 300)
        elif kind == 6:
            row.status, row.failed_at = "failed", now - dt.timedelta(hours=n % 200)
            row.error_reason = "rejected"
        elif kind == 7:
            row.status, row.error_reason = "skipped", "consent"
        elif kind == 8:
            row.status, row.error_reason, row.event_tag, row.pixel = "held", "no_tag", None, None
            row.event_key = "newsletter"
    Conversion.objects.bulk_update(
        rows, ["status", "sent_at", "failed_at", "error_reason", "event_tag", "pixel", "event_key"]
    )
    WorkerHeartbeat.objects.create(
        worker_id="w1", host="h", pid=1, started_at=now, last_beat_at=now
    )
    AdAccount.objects.create(account_id="paused1", status="paused", paused_reason="401")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TABLE}")


def queries_of(request: Any) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = request()
    assert getattr(response, "status_code", 200) == 200
    return [q["sql"] for q in captured.captured_queries]


def conversion_queries(queries: list[str]) -> list[str]:
    return [q for q in queries if f'FROM "{TABLE}"' in q and not q.startswith("EXPLAIN")]


def full_counts(queries: list[str]) -> list[str]:
    """Counts and aggregates over the whole conversion table (no WHERE, no LIMIT)."""
    return [
        q
        for q in conversion_queries(queries)
        if re.search(r"COUNT\(|GROUP BY|DISTINCT", q) and " WHERE " not in q and "LIMIT" not in q
    ]


# -- a bounded number of queries --------------------------------------------------------


@pytest.mark.parametrize("estimates", [False, True], ids=["exact", "estimated"])
def test_changelist_and_health_queries_do_not_grow_with_the_table(
    purchase_tag: EventTag, staff_client: Client, request: Any, estimates: bool
) -> None:
    if estimates:
        request.getfixturevalue("large")
    mixed_outbox(purchase_tag, 40)
    health.health()  # the first read of a large table starts the chart's tally
    page = queries_of(lambda: staff_client.get(CHANGELIST))
    panel = queries_of(lambda: health.health())
    make_conversions(purchase_tag, 400, start=1000)
    mixed_outbox_more = queries_of(lambda: staff_client.get(CHANGELIST))
    assert len(mixed_outbox_more) == len(page) <= 45, mixed_outbox_more
    assert len(queries_of(lambda: health.health())) == len(panel) <= 30


# -- no full count where an estimate serves ---------------------------------------------


@pytest.mark.postgres
def test_large_table_pages_read_no_full_count(
    purchase_tag: EventTag, staff_client: Client, superuser: User, large: None
) -> None:
    mixed_outbox(purchase_tag, 60)
    health.health()  # the first read of a large table starts the chart's tally
    api = APIClient()
    api.force_authenticate(superuser)
    pages = {
        "changelist": queries_of(lambda: staff_client.get(CHANGELIST)),
        "changelist, failed": queries_of(
            lambda: staff_client.get(CHANGELIST, {"status__exact": "failed"})
        ),
        "health": queries_of(lambda: api.get(HEALTH)),
        "api list": queries_of(lambda: api.get(CONVERSIONS)),
    }
    for name, queries in pages.items():
        assert full_counts(queries) == [], name
        # The paginator's count is the planner's estimate, not a COUNT(*).
        counts = [q for q in conversion_queries(queries) if '"__count"' in q]
        assert [q for q in counts if "failed_at" not in q] == [], name
    # Statuses are counted one by one through their indexes, and bounded.
    bounded = [q for q in pages["health"] if "LIMIT" in q and "COUNT(*)" in q]
    assert len(bounded) >= 5
    # No date hierarchy: no DISTINCT over the conversions' dates.
    assert not [q for q in pages["changelist"] if "DISTINCT" in q and TABLE in q]


@pytest.mark.postgres
def test_large_table_counts_a_narrow_search_exactly(
    purchase_tag: EventTag, staff_client: Client, large: None, monkeypatch: Any
) -> None:
    """The planner's guess for a search can be millions; a search that finds few rows
    says how many it found, and a large list says about how many it holds."""
    monkeypatch.setattr(health, "SURE_BELOW", 20)
    mixed_outbox(purchase_tag, 60)
    found = staff_client.get(CHANGELIST, {"q": "order:1"}).content.decode()
    assert re.search(r"11 results \(", found)  # order:1 and order:10-19
    Conversion.objects.filter(pk__in=Conversion.objects.values("pk")[:30]).delete()
    estimate = health.planner_rows(Conversion.objects.all())  # not analyzed again: ~60
    assert estimate > 30
    assert f"{estimate} conversions" in staff_client.get(CHANGELIST).content.decode()


def test_small_tables_stay_exact(purchase_tag: EventTag, staff_client: Client) -> None:
    """Below EXACT_BELOW (and always on SQLite) every count is exact, with no estimate."""
    mixed_outbox(purchase_tag, 30)
    state = health.health()
    assert state.estimated == []
    exact = {s: Conversion.objects.filter(status=s).count() for s in Conversion.Status.values}
    assert state.by_status == exact
    html = staff_client.get(CHANGELIST).content.decode()
    assert "\u2248" not in html.split('id="xconv-health"')[1].split("</section>")[0]
    assert "30 conversions" in html


@pytest.mark.postgres
def test_large_table_shows_estimates_as_estimates(
    purchase_tag: EventTag, staff_client: Client, superuser: User, large: None, monkeypatch: Any
) -> None:
    """Sent is the table's estimate less the counted states; a state past the bound is
    the planner's estimate; both are marked, and states under the bound stay exact."""
    monkeypatch.setattr(alerts, "COUNT_BOUND", 5)
    mixed_outbox(purchase_tag, 40)  # 4 failed, 4 skipped, 4 held, 4 pending, 24 sent
    make_conversions(purchase_tag, 6, start=500)  # 10 pending: past the bound
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
    state = health.health()
    assert sorted(state.estimated) == ["pending", "sent"]
    assert state.by_status["failed"] == 4 and state.by_status["held"] == 4
    assert state.by_status["pending"] >= 5
    assert state.by_status["sent"] == max(
        0,
        health.planner_rows(Conversion.objects.all())
        - sum(n for s, n in state.by_status.items() if s != "sent"),
    )
    api = APIClient()
    api.force_authenticate(superuser)
    assert sorted(api.get(HEALTH).json()["estimated"]) == ["pending", "sent"]
    html = staff_client.get(CHANGELIST).content.decode()
    assert re.search(r'data-status="sent">\u2248 \d+<', html)
    assert 'data-status="failed">4<' in html
    # Bounded counts read as such in what needs a person.
    assert alerts.at_least(5) == "5 or more" and alerts.at_least(4) == "4"


# -- orders read from an index ------------------------------------------------------------


def plan_of(sql: str, params: Any = None) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def nodes(node: dict[str, Any]) -> Iterator[str]:
        yield node["Node Type"]
        for child in node.get("Plans", ()):
            yield from nodes(child)

    return list(nodes(plan[0]["Plan"]))


def main_select(queries: list[str]) -> str:
    selects = [q for q in queries if q.startswith(f'SELECT "{TABLE}"."id"') and "LIMIT" in q]
    assert len(selects) == 1, queries
    return selects[0]


@pytest.mark.postgres
def test_changelist_and_api_list_orders_come_from_an_index(
    purchase_tag: EventTag, staff_client: Client, superuser: User
) -> None:
    """Sorting is disabled for the planner: a plan that still sorts has no index for the
    order, and at ten million rows it would sort them all."""
    mixed_outbox(purchase_tag, 1100)  # more than a page (100) of each filter
    api = APIClient()
    api.force_authenticate(superuser)
    statements = {
        "changelist": main_select(queries_of(lambda: staff_client.get(CHANGELIST))),
        "changelist by status": main_select(
            queries_of(lambda: staff_client.get(CHANGELIST, {"status__exact": "failed"}))
        ),
        "changelist by reason": main_select(
            queries_of(lambda: staff_client.get(CHANGELIST, {"error_reason__exact": "rejected"}))
        ),
        "api list": main_select(queries_of(lambda: api.get(CONVERSIONS))),
    }
    for name, sql in statements.items():
        with connection.cursor():
            nodes = plan_of(sql)
        assert not {"Sort", "Seq Scan"} & set(nodes), (name, nodes)


def index_names(sql: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def names(node: dict[str, Any]) -> Iterator[str]:
        if "Index Name" in node:
            yield node["Index Name"]
        for child in node.get("Plans", ()):
            yield from names(child)

    return set(names(plan[0]["Plan"]))


@pytest.mark.postgres
def test_changelist_by_pixel_reads_the_pixel_index(
    purchase_tag: EventTag, staff_client: Client
) -> None:
    """The pixel's rows newest first, from (pixel, created_at, id): walking the whole
    created_at index and keeping one pixel's rows would read ten million entries for a
    pixel with few."""
    mixed_outbox(purchase_tag, 1100)
    assert purchase_tag.pixel is not None
    rare = Pixel.objects.create(pixel_id="o8z7k", account=purchase_tag.pixel.account)
    few = Conversion.objects.order_by("pk").values_list("pk", flat=True)[:5]
    Conversion.objects.filter(pk__in=list(few)).update(pixel=rare)
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{TABLE}"')
    queries = queries_of(lambda: staff_client.get(CHANGELIST, {"pixel__id__exact": rare.pk}))
    # One page's worth: Django reads the rows without a LIMIT.
    (sql,) = [q for q in queries if q.startswith(f'SELECT "{TABLE}"."id"') and "ORDER BY" in q]
    assert "xconv_pixel_created" in index_names(sql), sql


# -- the chart's tally --------------------------------------------------------------------


def sent_rows(tag: EventTag, times: list[dt.datetime], start: int) -> None:
    rows = make_conversions(tag, len(times), start=start)
    for row, at in zip(rows, times, strict=True):
        row.status, row.sent_at = "sent", at
    Conversion.objects.bulk_update(rows, ["status", "sent_at"])


def exact_chart(now: dt.datetime) -> list[health.DayOutcome]:
    return health.daily_outcomes(now=now, large=False)


def test_tally_agrees_with_an_exact_count_as_time_passes(purchase_tag: EventTag) -> None:
    """Reads at advancing times, with rows sent between them (each a few seconds before
    it commits, as a worker writes them): the tally never misses nor repeats a row."""
    start = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    start -= dt.timedelta(days=3)
    sent_rows(
        purchase_tag, [start - dt.timedelta(days=d, hours=h) for d in range(12) for h in (1, 5)], 0
    )
    number = 100
    for step in range(40):  # 40 reads, 47 minutes apart: crosses midnight twice
        now = start + dt.timedelta(minutes=47 * step)
        sent_rows(purchase_tag, [now - dt.timedelta(seconds=s) for s in (2, 9)], number)
        number += 2
        assert health.daily_outcomes(now=now, large=True) == exact_chart(now), step
    # A day long over is tallied to its end: the chart reads its one row, no index.
    day = timezone.localdate(start) - dt.timedelta(days=5)
    tally = SentTally.objects.get(day=day)
    assert tally.sent == 2 and tally.counted_until == day_tallies.day_end(day)


def test_a_reader_racing_another_counts_nothing_twice(
    purchase_tag: EventTag, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two readers move one tally at once: the second's conditional update finds it moved
    and reads it back instead of adding its count on top."""
    now = timezone.now()
    sent_rows(purchase_tag, [now - dt.timedelta(hours=h, minutes=30) for h in range(1, 6)], 0)
    days = [timezone.localdate(now) - dt.timedelta(days=n) for n in (1, 0)]
    real_sent, raced = health._sent, []

    def racing(since: dt.datetime, until: dt.datetime) -> int:
        if not raced:
            raced.append(True)
            health._tallies(days, now)  # the other reader, between our read and update
        return real_sent(since, until)

    monkeypatch.setattr(health, "_sent", racing)
    health._tallies(days, now)
    assert raced
    assert health.daily_outcomes(now=now, large=True) == exact_chart(now)


def test_tallies_outside_the_chart_are_dropped(purchase_tag: EventTag) -> None:
    now = timezone.now()
    old = timezone.localdate(now) - dt.timedelta(days=40)
    SentTally.objects.create(
        day=old, time_zone=timezone.get_current_timezone_name(), counted_until=now
    )
    health.daily_outcomes(now=now, large=True)
    assert not SentTally.objects.filter(day=old).exists()
    assert SentTally.objects.count() == health.CHART_DAYS


# -- the bench itself ---------------------------------------------------------------------


@pytest.mark.postgres
def test_admin_scale_bench_runs_and_checks_its_targets(tmp_path: Any) -> None:
    """bench/admin_scale.py at a small size (no timing asserted): it seeds the mix it
    claims, every page answers, and it reports each target."""
    root = Path(__file__).resolve().parent.parent
    output = tmp_path / "admin_scale.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    command = ["bench/admin_scale.py", "--rows", "20000", "--repeat", "1", "--output"]
    subprocess.run(  # noqa: S603
        [sys.executable, *command, str(output)],
        cwd=root,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    result = json.loads(output.read_text())
    assert result["rows"] == 20_000 and isinstance(result["meets_targets"], bool)
    assert {t["metric"].split()[0] for t in result["targets"]} == {
        "admin_changelist",
        "health_panel",
        "api_health",
        "api_list",
    }
    assert all(page["queries"] > 0 for page in result["pages"].values())


# -- match readiness ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def readiness_counts_its_past_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large table's first read counts readiness's whole past here (the time it may
    take per read is tested in test_readiness.py): query counts do not depend on the
    machine's speed."""
    monkeypatch.setattr(readiness, "BACKFILL_SECONDS", 3600.0)


def readiness_outbox(tag: EventTag, count: int, days: int = 30) -> None:
    """``count`` rows created over the last ``days`` days with a mix of identifiers."""
    now = timezone.now()
    rows = make_conversions(tag, count, start=5000)
    for n, row in enumerate(rows):
        row.created_at = now - dt.timedelta(hours=(n * 7) % (24 * days))
        row.twclid = f"click{n}" if n % 3 else ""
        row.hashed_email = "e" * 64 if n % 4 == 0 else ""
        row.ip_address, row.user_agent = ("203.0.113.9", "Mozilla/5.0") if n % 2 else (None, "")
    Conversion.objects.bulk_update(
        rows, ["created_at", "twclid", "hashed_email", "ip_address", "user_agent"]
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TABLE}")


@pytest.mark.parametrize("tallied", [False, True], ids=["exact", "tallied"])
def test_match_readiness_queries_do_not_grow_with_the_table(
    purchase_tag: EventTag, tallied: bool
) -> None:
    readiness_outbox(purchase_tag, 300)
    first = queries_of(lambda: readiness.match_readiness(large=tallied))
    # The first tallied read: today's rows, the newest past day, then the other 28 days
    # (the pace seen leaves time for all), and the rows since the tallies' end.
    assert len(conversion_queries(first)) <= 4, conversion_queries(first)
    before = queries_of(lambda: readiness.match_readiness(large=tallied))
    make_conversions(purchase_tag, 400, start=20_000)
    after = queries_of(lambda: readiness.match_readiness(large=tallied))
    assert len(after) == len(before) <= 4, after
    # Tallied: today's rows only (the closed days are read from their tally rows).
    if tallied:
        [live] = conversion_queries(after)
        assert '"created_at" >=' in live


@pytest.mark.postgres
def test_match_readiness_at_scale_reads_index_ranges_only(
    purchase_tag: EventTag, staff_client: Client, superuser: User, large: None
) -> None:
    """On a large table the readiness page and /x/health/ count only rows created since
    the tallies' last move, through the (created_at, id) index: no whole-table count,
    GROUP BY or sequential scan, whatever the table holds."""
    readiness_outbox(purchase_tag, 2000)
    assert readiness.match_readiness(large=True).uncounted_days == 0  # the first read
    api = APIClient()
    api.force_authenticate(superuser)
    pages = {
        "readiness page": queries_of(
            lambda: staff_client.get(reverse("admin:xconversions_readinesstally_changelist"))
        ),
        "health": queries_of(lambda: api.get(HEALTH)),
    }
    for name, queries in pages.items():
        assert full_counts(queries) == [], name
        # One readiness statement: the rows created since the tallies last moved.
        [counting] = [q for q in conversion_queries(queries) if '"n_twclid"' in q]
        assert '"created_at" >=' in counting, counting
        nodes = plan_of(counting)
        assert "Seq Scan" not in nodes, (name, nodes)
    page = pages["readiness page"]
    assert len(page) <= 20, page
