"""Match readiness: shares of each identifier per event key over 7 and 30 days, checked
against hand counts on seeded rows; the twclid drop and IP + UA warnings at their
boundaries; the per-day tally agreeing with an exact count as time passes; /x/health/
and the admin page; and the health panel's warnings with their fixes."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_xconversions import day_tallies, health, readiness
from django_xconversions.admin import health_panel
from django_xconversions.models import (
    AdAccount,
    Conversion,
    EventTag,
    ReadinessTally,
    WorkerHeartbeat,
)

pytestmark = pytest.mark.django_db

READINESS = reverse("admin:xconversions_readinesstally_changelist")
CHANGELIST = reverse("admin:xconversions_conversion_changelist")
EMAIL_HASH = "e" * 64
PHONE_HASH = "f" * 64

_numbers = iter(range(10**9))


def record(
    tag: EventTag | None,
    at: dt.datetime,
    count: int,
    *,
    twclid: bool = False,
    email: bool = False,
    phone: bool = False,
    device: bool = False,
    refused: bool = False,
    key: str = "purchase",
) -> None:
    """``count`` conversions created at ``at`` carrying the identifiers named."""
    rows = [
        Conversion(
            event_tag=tag,
            pixel_id=tag.pixel_id if tag is not None else None,
            event_key=key,
            conversion_time=at,
            conversion_id=f"c{next(_numbers)}",
            twclid=f"click{n}" if twclid else "",
            hashed_email=EMAIL_HASH if email else "",
            hashed_phone=PHONE_HASH if phone else "",
            ip_address="203.0.113.9" if device else None,
            user_agent="Mozilla/5.0" if device else "",
            status="skipped" if refused else ("pending" if tag is not None else "held"),
            error_reason="consent" if refused else ("" if tag is not None else "no_tag"),
        )
        for n in range(count)
    ]
    created = Conversion.objects.bulk_create(rows)
    Conversion.objects.filter(pk__in=[r.pk for r in created]).update(created_at=at)


def noon(days_ago: int) -> dt.datetime:
    today = timezone.localdate()
    return timezone.make_aware(
        dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12))
    )


def only(result: readiness.MatchReadiness, key: str) -> readiness.TagReadiness:
    [found] = [t for t in result.tags if t.key == key]
    return found


# -- shares on known data ------------------------------------------------------------------


def test_shares_over_7_and_30_days_match_hand_counts(tag: EventTag) -> None:
    record(tag, noon(1), 10, twclid=True, device=True)
    record(tag, noon(2), 5, email=True)
    record(tag, noon(6), 3, email=True, phone=True, device=True)
    record(tag, noon(6), 2, device=True)
    record(tag, noon(3), 4, refused=True)  # stored without identifiers
    record(tag, noon(20), 6, phone=True)
    record(tag, noon(29), 2, twclid=True)
    record(tag, noon(30), 50, twclid=True)  # 31 days ago counting today: outside
    record(None, noon(0), 3, email=True, key="newsletter")  # held: no tag has the key
    now = timezone.now()

    result = readiness.match_readiness(now)
    purchase = only(result, "purchase")
    week = purchase.last_7_days
    # 10 + 5 + 3 + 2 + 4 = 24 conversions; twclid 10, email 8, phone 3, IP + UA 15.
    assert week.counts == readiness.Counts(
        conversions=24, twclid=10, email=8, phone=3, ip_user_agent=15, strong=18, refused=4
    )
    assert week.shares == {
        "twclid": round(10 / 24, 4),
        "email": round(8 / 24, 4),
        "phone": round(3 / 24, 4),
        "ip_user_agent": round(15 / 24, 4),
    }
    month = purchase.last_30_days
    assert month.counts == readiness.Counts(
        conversions=32, twclid=12, email=8, phone=9, ip_user_agent=15, strong=26, refused=4
    )
    assert month.shares["phone"] == round(9 / 32, 4)
    assert (month.days, month.first_day, month.last_day) == (
        30,
        timezone.localdate() - dt.timedelta(days=29),
        timezone.localdate(),
    )
    assert (purchase.tag_id, purchase.tag_name) == (tag.pk, "Purchase")
    assert purchase.previous_7_days.counts == readiness.Counts()
    assert purchase.previous_7_days.shares["twclid"] is None
    held = only(result, "newsletter")
    assert held.tag_id is None and held.last_7_days.counts.email == 3
    assert result.warnings == []


def test_days_follow_the_current_time_zone(tag: EventTag, settings: Any) -> None:
    """Days are local days: the 7-day window starts at midnight in Tokyo, not in UTC."""
    settings.TIME_ZONE = "Asia/Tokyo"
    now = timezone.now()
    with timezone.override("Asia/Tokyo"):
        today = timezone.localdate(now)
        edge = timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=6), dt.time()))
        record(tag, edge - dt.timedelta(minutes=1), 1, twclid=True)  # day -7: the week before
        record(tag, edge, 2, email=True)  # first minute of the 7-day window
        result = only(readiness.match_readiness(now), "purchase")
    assert result.last_7_days.counts.conversions == 2
    assert result.previous_7_days.counts.twclid == 1


# -- the twclid drop warning ---------------------------------------------------------------


def weeks(tag: EventTag, before: tuple[int, int], last: tuple[int, int]) -> None:
    """(conversions, with twclid) in the 7 days before, then in the last 7 days."""
    for (total, clicks), day in ((before, 9), (last, 2)):
        record(tag, noon(day), clicks, twclid=True)
        record(tag, noon(day), total - clicks, email=True)


@pytest.mark.parametrize(
    ("before", "last", "warns"),
    [
        ((100, 40), (100, 20), False),  # exactly half: not below it
        ((100, 40), (100, 19), True),
        ((100, 40), (200, 39), True),  # 19.5% < 20%
        ((100, 40), (200, 40), False),
        ((49, 40), (100, 0), False),  # too few conversions the week before
        ((100, 40), (49, 0), False),  # too few in the last week
        ((50, 40), (50, 0), True),  # enough in both
        ((100, 0), (100, 0), False),  # never had a twclid: nothing dropped
    ],
)
def test_twclid_drop_warns_below_half_with_enough_volume(
    tag: EventTag, before: tuple[int, int], last: tuple[int, int], warns: bool
) -> None:
    weeks(tag, before, last)
    purchase = only(readiness.match_readiness(), "purchase")
    assert purchase.previous_7_days.counts.conversions == before[0]
    assert purchase.last_7_days.counts.twclid == last[1]
    codes = [w.code for w in purchase.warnings]
    assert codes == (["twclid_drop"] if warns else [])


def test_drop_warning_reads_in_plain_words_with_the_fix(tag: EventTag) -> None:
    weeks(tag, (100, 40), (80, 8))
    record(tag, noon(1), 20, refused=True)  # last week: 100 conversions, 20 refused
    [warning] = readiness.match_readiness().warnings
    assert warning.message == (
        "Purchase (purchase): twclid on 8% of conversions in the last 7 days (8 of 100), "
        "down from 40% the 7 days before (40 of 100). Visitors refusing tracking rose "
        "from 0% to 20%."
    )
    assert "TwclidMiddleware" in warning.fix and "consent" in warning.fix


# -- the IP + user agent only warning -------------------------------------------------------


@pytest.mark.parametrize(
    ("device_only", "strong", "warns"),
    [(20, 0, True), (19, 0, False), (20, 1, False), (200, 0, True)],
)
def test_a_tag_with_nothing_beyond_ip_and_user_agent_warns(
    tag: EventTag, device_only: int, strong: int, warns: bool
) -> None:
    record(tag, noon(25), device_only, device=True)  # outside the 7 days, inside the 30
    record(tag, noon(3), strong, phone=True, device=True)
    purchase = only(readiness.match_readiness(), "purchase")
    assert [w.code for w in purchase.warnings] == (["device_only"] if warns else [])
    if warns:
        assert purchase.warnings[0].message.startswith(
            f"Purchase (purchase): none of its {device_only} conversions in the last 30 days"
        )
        assert "email=" in purchase.warnings[0].fix


def test_tags_with_warnings_come_first_then_the_busiest(tag: EventTag) -> None:
    other = EventTag.objects.create(
        account=tag.account, pixel=tag.pixel, remote_id="t2", website_tag_id="w2",
        key="sign_up", name="Sign up", type="SIGN_UP",
    )  # fmt: skip
    record(other, noon(1), 30, device=True, key="sign_up")
    record(tag, noon(1), 100, twclid=True)
    record(None, noon(1), 200, email=True, key="zzz")
    assert [t.key for t in readiness.match_readiness().tags] == ["sign_up", "zzz", "purchase"]


# -- the tally -----------------------------------------------------------------------------


def exact(now: dt.datetime) -> readiness.MatchReadiness:
    return readiness.match_readiness(now, large=False)


def test_tally_agrees_with_an_exact_count_as_time_passes(tag: EventTag) -> None:
    """Reads at advancing times, with rows created between them (a few seconds before
    their commit, as track() in a request writes them): the tally never misses nor
    repeats a row, across midnight."""
    start = timezone.now().replace(hour=21, minute=0, second=0, microsecond=0)
    start -= dt.timedelta(days=2)
    for day in range(35):
        record(tag, start - dt.timedelta(days=day, hours=3), 2, twclid=day % 2 == 0, email=True)
    for step in range(30):  # 30 reads, 23 minutes apart: crosses midnight
        now = start + dt.timedelta(minutes=23 * step)
        record(tag, now - dt.timedelta(seconds=4), 1, device=True, phone=step % 3 == 0)
        record(None, now - dt.timedelta(seconds=2), 1, email=True, key="held_key")
        assert readiness.match_readiness(now, large=True) == exact(now), step
    # A day long over is tallied to its end: its row alone answers for it.
    day = timezone.localdate(start) - dt.timedelta(days=5)
    tally = ReadinessTally.objects.get(day=day)
    assert tally.counts["purchase"]["conversions"] == 2
    assert tally.counted_until == day_tallies.day_end(day)


def test_a_reader_racing_another_counts_nothing_twice(
    tag: EventTag, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    for hours in range(1, 6):
        record(tag, now - dt.timedelta(hours=hours, minutes=30), 1, twclid=True)
    days = [timezone.localdate(now) - dt.timedelta(days=n) for n in (1, 0)]
    real_count, raced = readiness._count, []

    def racing(rows: Any) -> Any:
        if not raced:
            raced.append(True)
            readiness._tallies(days, now)  # the other reader, between our count and update
        return real_count(rows)

    monkeypatch.setattr(readiness, "_count", racing)
    readiness._tallies(days, now)
    assert raced
    monkeypatch.setattr(readiness, "_count", real_count)
    assert readiness.match_readiness(now, large=True) == exact(now)


def test_a_large_tables_past_is_counted_a_day_per_read_newest_first(
    tag: EventTag, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time to spare, each read counts one more past day, newest first; until
    every day is, the result says how many are left and holds back the warnings that need
    them; then it equals the exact count."""
    monkeypatch.setattr(readiness, "BACKFILL_SECONDS", 0.0)
    other = EventTag.objects.create(
        account=tag.account, pixel=tag.pixel, remote_id="t2", website_tag_id="w2",
        key="sign_up", name="Sign up", type="SIGN_UP",
    )  # fmt: skip
    weeks(tag, (100, 40), (100, 10))  # a drop: needs the 14 last days
    record(other, noon(28), 25, device=True, key="sign_up")  # IP + UA only: needs all 30
    now = noon(0)
    seen = []
    for _ in range(readiness.DAYS):
        result = readiness.match_readiness(now, large=True)
        seen.append((result.uncounted_days, sorted(w.code for w in result.warnings)))
    assert [left for left, _ in seen] == [*range(28, -1, -1), 0]
    # Days 1 to 13 before today are counted by the 13th read: the drop shows from then.
    assert seen[11] == (17, []) and seen[12] == (16, ["twclid_drop"])
    assert seen[27] == (1, ["twclid_drop"]) and seen[28] == (0, ["device_only", "twclid_drop"])
    assert readiness.match_readiness(now, large=True) == exact(now)


def test_the_page_says_when_past_days_are_still_counted(
    tag: EventTag, staff_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readiness, "BACKFILL_SECONDS", 0.0)
    monkeypatch.setattr(health, "EXACT_BELOW", 0)  # every table counts as large
    record(tag, noon(3), 5, twclid=True)
    html = staff_client.get(READINESS).content.decode()
    assert 'data-uncounted="28"' in html and "Still counting: 28 past days" in html
    assert 'data-uncounted="27"' in staff_client.get(READINESS).content.decode()


def test_tallies_outside_the_month_are_dropped(tag: EventTag) -> None:
    now = timezone.now()
    old = timezone.localdate(now) - dt.timedelta(days=45)
    ReadinessTally.objects.create(
        day=old, time_zone=timezone.get_current_timezone_name(), counted_until=now
    )
    readiness.match_readiness(now, large=True)
    assert not ReadinessTally.objects.filter(day=old).exists()
    assert ReadinessTally.objects.count() == readiness.DAYS


# -- /x/health/ ----------------------------------------------------------------------------


def test_api_health_has_match_readiness_and_keeps_its_keys(tag: EventTag) -> None:
    record(tag, noon(1), 30, device=True)
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("root", "root@example.com", "pw"))
    data = api.get(reverse("xconversions_api:health")).json()
    assert {
        "by_status", "oldest_pending_seconds", "last_sent_at", "failed_last_hour",
        "failed_requests_last_hour", "paused_accounts", "daily", "workers", "problems",
        "held", "estimated", "match_readiness",
    } <= set(data)  # fmt: skip
    section = data["match_readiness"]
    assert section["last_day"] == timezone.localdate().isoformat()
    [purchase] = section["tags"]
    assert purchase["key"] == "purchase" and purchase["tag_name"] == "Purchase"
    assert purchase["last_7_days"]["counts"]["ip_user_agent"] == 30
    assert purchase["last_7_days"]["shares"] == {
        "twclid": 0.0, "email": 0.0, "phone": 0.0, "ip_user_agent": 1.0,
    }  # fmt: skip
    assert purchase["previous_7_days"]["shares"]["twclid"] is None
    assert [w["code"] for w in purchase["warnings"]] == ["device_only"]
    assert purchase["warnings"][0]["fix"]


# -- the admin -----------------------------------------------------------------------------


@pytest.fixture
def staff_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def test_readiness_page_shows_numbers_warnings_and_fixes(
    tag: EventTag, staff_client: Client
) -> None:
    weeks(tag, (100, 40), (100, 10))
    html = staff_client.get(READINESS).content.decode()
    assert "<h1>Match readiness</h1>" in html
    row = re.search(r'<tr data-key="purchase".*?</tr>', html, re.S)
    assert row is not None
    cells = dict(re.findall(r'data-window="7" data-field="(\w+)"[^>]*>([^<]*)<', row.group()))
    assert cells == {
        "conversions": "100",
        "twclid": "10%",
        "email": "90%",
        "phone": "0%",
        "ip_user_agent": "0%",
    }
    assert "40% the week before" in row.group()
    assert 'data-window="30" data-field="conversions">200<' in row.group()
    assert 'data-warning="twclid_drop"' in html and "What to do:" in html
    assert "below 50% of its share over the 7 days before" in html  # the rule, in words
    index = staff_client.get(reverse("admin:index")).content.decode()
    assert READINESS in index  # listed in the admin index


def test_readiness_page_needs_the_view_conversion_permission(tag: EventTag, db: None) -> None:
    staff = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(READINESS).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_conversion"))
    assert client.get(READINESS).status_code == 200
    for other in ("add/", "1/change/", "1/delete/"):  # the page alone, no tally rows
        assert client.get(READINESS + other).status_code == 404


def test_readiness_page_without_conversions_says_so(staff_client: Client) -> None:
    assert "No conversion recorded in the last 30 days." in (
        staff_client.get(READINESS).content.decode()
    )


# -- the health panel's warnings ------------------------------------------------------------


def panel_of(client: Client) -> str:
    html = client.get(CHANGELIST).content.decode()
    return html.split('id="xconv-health"')[1].split("</section>")[0]


def test_panel_warns_with_the_fix_of_each_problem(tag: EventTag, staff_client: Client) -> None:
    now = timezone.now()
    record(tag, now - dt.timedelta(hours=1), 2, twclid=True)
    Conversion.objects.filter(event_tag=tag).update(
        status="sending", lease_expires_at=now - dt.timedelta(minutes=10)
    )
    record(tag, now - dt.timedelta(hours=1), 3, twclid=True)
    Conversion.objects.filter(status="pending").update(next_attempt_at=now - dt.timedelta(hours=1))
    WorkerHeartbeat.objects.create(
        worker_id="w", host="h", pid=1, started_at=now, last_beat_at=now - dt.timedelta(hours=2)
    )
    record(None, now, 2, email=True, key="newsletter")
    AdAccount.objects.create(
        account_id="acc2", name="Other", status="paused", paused_reason="Invalid token"
    )
    panel = panel_of(staff_client)
    warnings = re.findall(r'data-warning="(\w+)"', panel)
    assert warnings == ["stuck", "no_worker", "held"]
    stuck = panel.split('data-warning="stuck"')[1].split("</li>")[0]
    assert "2 conversions sending past their lease" in stuck
    assert "python manage.py send_conversions --loop" in stuck
    assert "?status__exact=sending" in stuck
    worker = panel.split('data-warning="no_worker"')[1].split("</li>")[0]
    assert reverse("admin:xconversions_workerheartbeat_changelist") in worker
    held = panel.split('data-warning="held"')[1].split("</li>")[0]
    assert 'data-held-reason="no_tag">2<' in held and "newsletter" in held
    assert "Set the key on an event tag" in held
    # A paused account: listed with the action that resumes it.
    assert "Invalid token" in panel and "Resume sending" in panel
    assert "?status__exact=paused" in panel


def in_flight(tag: EventTag, lease_left: dt.timedelta) -> None:
    """One conversion sending, its lease ending in ``lease_left``."""
    record(tag, timezone.now() - dt.timedelta(minutes=1), 1, twclid=True)
    Conversion.objects.update(status="sending", lease_expires_at=timezone.now() + lease_left)


def test_panel_warns_as_soon_as_the_worker_is_gone_with_a_row_sending(
    tag: EventTag, staff_client: Client
) -> None:
    """The worker died while a row was sending: nothing is due and the lease runs for
    minutes yet, so alerts see nothing; the panel says the worker is gone and what to do."""
    in_flight(tag, dt.timedelta(minutes=9))
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id="w", host="web1", pid=42, started_at=now - dt.timedelta(hours=1),
        last_beat_at=now - dt.timedelta(seconds=40),
    )  # fmt: skip
    panel = panel_of(staff_client)
    assert re.findall(r'data-warning="(\w+)"', panel) == ["workers_gone"]
    gone = panel.split('data-warning="workers_gone"')[1].split("</li>")[0]
    assert re.search(r"the last, web1:42, beat 4\d s ago", gone), gone
    assert "while 1 conversion waits to be sent" in gone and "send_conversions --loop" in gone


@pytest.mark.parametrize("worker", ["live", "never seen"])
def test_no_workers_gone_warning_with_a_live_worker_or_none_ever(
    tag: EventTag, staff_client: Client, worker: str
) -> None:
    """A live worker is sending it; with no worker ever seen sends may run elsewhere (in
    the web process, a task queue)."""
    in_flight(tag, dt.timedelta(minutes=9))
    if worker == "live":
        now = timezone.now()
        WorkerHeartbeat.objects.create(
            worker_id="w", host="web1", pid=42, started_at=now, last_beat_at=now
        )
    assert "data-warning=" not in panel_of(staff_client)


def test_panel_links_readiness_and_repeats_its_warnings(
    tag: EventTag, staff_client: Client
) -> None:
    record(tag, noon(2), 25, device=True)
    panel = panel_of(staff_client)
    assert 'data-warning="device_only"' in panel
    assert READINESS in panel and "1 warning" in panel


# -- the chart -----------------------------------------------------------------------------


def day(offset: int, sent: int, failed: int) -> health.DayOutcome:
    return health.DayOutcome(dt.date(2026, 11, 1) + dt.timedelta(days=offset), sent, failed)


def test_failed_bars_stay_visible_beside_a_busy_day() -> None:
    bars, top = health_panel.chart_bars([day(0, 3000, 0), day(1, 10, 5), day(2, 0, 1)])
    assert top == 3000
    assert bars[0].sent_height == health_panel.SENT_HEIGHT
    assert bars[1].failed_height == health_panel.FAILED_HEIGHT  # its own scale: 5 of 5
    assert bars[2].failed_height >= health_panel.MIN_BAR  # 1 of 5
    assert bars[1].sent_height >= health_panel.MIN_BAR  # 10 of 3,000 still shows
    assert bars[2].sent_height == 0
    assert bars[1].title == "2026-11-02: 10 sent, 5 failed"
    assert bars[0].title == "2026-11-01: 3,000 sent, 0 failed"


@pytest.mark.parametrize(
    ("peak", "labels"),
    [
        (3000, ["0", "1,000", "2,000", "3,000"]),
        (0, ["0", "1"]),
        (7, ["0", "2", "4", "6", "8"]),
        (250, ["0", "100", "200", "300"]),
        (10, ["0", "5", "10"]),  # whole steps: not 2.5 (rounded up to 3, ending at 12)
        (1_234_567, ["0", "500,000", "1,000,000", "1,500,000"]),
    ],
)
def test_axis_ticks_are_round(peak: int, labels: list[str]) -> None:
    _, top = health_panel.chart_bars([day(0, peak, 0)])
    ticks = health_panel.axis_ticks(top)
    assert [t.label for t in ticks] == labels
    assert ticks[0].y == health_panel.TOP_SPACE + health_panel.SENT_HEIGHT
    assert ticks[-1].y == health_panel.TOP_SPACE
