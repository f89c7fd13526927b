"""Match readiness: per event key, the share of conversions carrying each identifier X
matches on (twclid, email, phone, IP address + user agent) over the last 7 and 30 days,
and warnings when that share tells of a fault.

X attributes a conversion only when an identifier matches one of its users: twclid (the
click id of an ad) matches best, hashed email and phone next, IP + user agent alone
least. A twclid share that halves from one week to the next usually means TwclidMiddleware
was removed or a consent change now refuses tracking for everyone.

Read by health() (so /x/health/ and the health panel) and by the admin's Match readiness
page. Emails and phones are counted from their hashed columns (raw ones are never
stored). Small tables (and SQLite) are counted exactly. On a large PostgreSQL table each
local day's counts are memoised in a ReadinessTally row, moved forward as it is read over
the rows created since (the ``(created_at, id)`` index): a read costs a few statements
over a few minutes of rows, whatever the table holds. Past days never counted (the first
reads of a large table) are counted newest first, one day, then as many per statement as
the time left allows, for about BACKFILL_SECONDS per read; until they all are, the result
says how many days are left and holds back the warnings that need them. Tallied days
assume rows are not deleted within 30 days (RETENTION_DAYS is 90 by default) and that a
row commits within SETTLE of its created_at.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from django_xconversions import day_tallies
from django_xconversions.day_tallies import day_end, day_start
from django_xconversions.models import Conversion, EventTag, ReadinessTally

DAYS = 30
WEEK = 7
# The twclid share warns when the last 7 days fall below this fraction of the 7 before...
DROP_RATIO = Fraction(1, 2)
# ...and both weeks recorded at least this many conversions of the tag (fewer say little).
MIN_WEEK_CONVERSIONS = 50
# A tag warns of IP + user agent only after this many such conversions in 30 days.
MIN_DEVICE_ONLY = 20
# Rows are tallied once created_at is this old: the transaction that wrote them has long
# committed (track() runs inside a request).
SETTLE = dt.timedelta(minutes=15)
# The tally moves forward in steps of at least this much (one small write per step).
TALLY_STEP = dt.timedelta(minutes=5)
# A read counts past days never counted for about this long (at least one day per read).
BACKFILL_SECONDS = 0.5

# Shown and served as shares of the window's conversions.
IDENTIFIERS = ("twclid", "email", "phone", "ip_user_agent")

MIDDLEWARE_FIX = (
    "Check that django_xconversions.middleware.TwclidMiddleware is still in MIDDLEWARE "
    "(after SessionMiddleware), that the landing pages of your ads go through it, and that "
    "a consent change does not refuse tracking for every visitor; the Conversions list "
    "shows which recent rows lack a twclid."
)
DEVICE_ONLY_FIX = (
    "Pass email= or phone= to track() (or user=, whose email is used), or bind them in "
    "SOURCES, and keep TwclidMiddleware installed so visitors from ads bring their twclid."
)


@dataclass(frozen=True)
class Counts:
    """Conversions recorded, and how many carried each identifier."""

    conversions: int = 0
    twclid: int = 0
    email: int = 0
    phone: int = 0
    ip_user_agent: int = 0
    # Carrying a twclid, an email or a phone: more than IP + user agent.
    strong: int = 0
    # Skipped because the visitor refused tracking: stored without identifiers.
    refused: int = 0

    def values(self) -> tuple[int, ...]:
        return (
            self.conversions,
            self.twclid,
            self.email,
            self.phone,
            self.ip_user_agent,
            self.strong,
            self.refused,
        )

    def __add__(self, other: Counts) -> Counts:
        return Counts.total([self, other])

    @classmethod
    def total(cls, many: list[Counts]) -> Counts:
        """The sum of ``many`` (column by column: a window adds up to 30 days)."""
        if not many:
            return cls()
        return cls(*map(sum, zip(*(counts.values() for counts in many), strict=True)))

    @classmethod
    def of(cls, values: dict[str, Any]) -> Counts:
        return cls(*(int(values.get(name) or 0) for name in NAMES))


FIELDS = fields(Counts)
NAMES = tuple(f.name for f in FIELDS)


@dataclass(frozen=True)
class Window:
    """One event key's counts over ``days`` local days, and the share of each identifier
    (0 to 1; None without conversions)."""

    days: int
    first_day: dt.date
    last_day: dt.date
    counts: Counts
    shares: dict[str, float | None]


@dataclass(frozen=True)
class ReadinessWarning:
    code: str  # "twclid_drop" or "device_only"
    message: str
    fix: str


@dataclass(frozen=True)
class TagReadiness:
    key: str
    # The event tag that has the key now (None: no tag has it, the rows are held).
    tag_id: int | None
    tag_name: str
    last_7_days: Window
    previous_7_days: Window
    last_30_days: Window
    warnings: list[ReadinessWarning] = field(default_factory=list)


@dataclass(frozen=True)
class MatchReadiness:
    first_day: dt.date
    last_day: dt.date
    tags: list[TagReadiness]
    # Past days not counted yet (a large table's first reads): their conversions are
    # missing from the windows, and warnings that need them wait.
    uncounted_days: int = 0

    @property
    def warnings(self) -> list[ReadinessWarning]:
        return [warning for tag in self.tags for warning in tag.warnings]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- counting -----------------------------------------------------------------------------


def _aggregates() -> dict[str, Count]:
    """Counts.FIELDS as aggregates, named ``n_<field>`` (a name like ``twclid`` would
    shadow the column its filter reads)."""
    twclid, email, phone = ~Q(twclid=""), ~Q(hashed_email=""), ~Q(hashed_phone="")
    return {
        "n_conversions": Count("pk"),
        "n_twclid": Count("pk", filter=twclid),
        "n_email": Count("pk", filter=email),
        "n_phone": Count("pk", filter=phone),
        "n_ip_user_agent": Count("pk", filter=Q(ip_address__isnull=False) & ~Q(user_agent="")),
        "n_strong": Count("pk", filter=twclid | email | phone),
        "n_refused": Count(
            "pk",
            filter=Q(status=Conversion.Status.SKIPPED, error_reason=Conversion.ErrorReason.CONSENT),
        ),
    }


def _bucket(event_key: str, tag_id: int | None) -> str:
    """Rows are grouped by the key they were recorded with (held rows included); rows
    written without one by their tag."""
    if event_key:
        return event_key
    return f"#{tag_id}" if tag_id is not None else ""


PerDay = dict[dt.date, dict[str, Counts]]


def _count(rows: Any) -> PerDay:
    """``rows`` counted per local day (of created_at) and bucket."""
    counted = (
        rows.annotate(day=TruncDate("created_at"))
        .values("day", "event_key", "event_tag_id")
        .annotate(**_aggregates())
        .order_by()
    )
    per_day: PerDay = {}
    for row in counted:
        buckets = per_day.setdefault(row["day"], {})
        name = _bucket(row["event_key"], row["event_tag_id"])
        counts = Counts.of({f.name: row[f"n_{f.name}"] for f in FIELDS})
        buckets[name] = buckets.get(name, Counts()) + counts
    return per_day


def _merge(stored: dict[str, Any], added: dict[str, Counts]) -> dict[str, Any]:
    merged = {name: Counts.of(values) for name, values in stored.items()}
    for name, counts in added.items():
        merged[name] = merged.get(name, Counts()) + counts
    return {name: asdict(counts) for name, counts in merged.items()}


def _move(tallies: dict[dt.date, ReadinessTally], moving: dict[dt.date, dt.datetime]) -> None:
    """Count the rows of each day in ``moving`` from its tally's counted_until up to the
    given moment, in one statement (each day its own range of the created_at index)."""
    ranges = Q(pk__in=[])
    for day, upto in moving.items():
        ranges |= Q(created_at__gte=tallies[day].counted_until, created_at__lt=upto)
    added = _count(Conversion.objects.filter(ranges))
    for day, upto in moving.items():
        tally = tallies[day]
        counts = _merge(tally.counts, added.get(day, {}))
        moved = ReadinessTally.objects.filter(
            pk=tally.pk, counted_until=tally.counted_until
        ).update(counts=counts, counted_until=upto)
        if moved:  # else another reader moved it meanwhile; read it back
            tally.counts, tally.counted_until = counts, upto
        else:
            tally.refresh_from_db()


def _tallies(
    days: list[dt.date], now: dt.datetime
) -> tuple[dict[dt.date, ReadinessTally], list[dt.date]]:
    """The tally of each day, moved forward to ``now - SETTLE`` (in TALLY_STEP steps),
    and the past days left uncounted for a later read (see BACKFILL_SECONDS)."""
    tallies = day_tallies.of_days(ReadinessTally, days)
    settled = now - SETTLE
    moving: dict[dt.date, dt.datetime] = {}
    past: list[dt.date] = []  # closed days never counted, newest first
    for day in sorted(tallies, reverse=True):
        tally = tallies[day]
        upto = day_tallies.until(tally, settled, TALLY_STEP)
        if upto is None:
            continue
        if upto == day_end(day) and tally.counted_until == day_start(day):
            past.append(day)
        else:
            moving[day] = upto
    if moving:
        _move(tallies, moving)
    # Newest first, one day, then as many as the time left allows at the pace seen.
    started, size = time.monotonic(), 1
    while past:
        chunk, past = past[:size], past[size:]
        counting = time.monotonic()
        _move(tallies, {day: day_end(day) for day in chunk})
        now_spent = time.monotonic()
        left = BACKFILL_SECONDS - (now_spent - started)
        if left <= 0:
            break
        per_day = (now_spent - counting) / len(chunk)
        size = max(1, int(left / per_day)) if per_day > 0 else len(past)
    return tallies, past


def _tallied_per_day(days: list[dt.date], now: dt.datetime) -> tuple[PerDay, list[dt.date]]:
    """Per day from the tallies plus the rows created since each was counted; and the
    past days not counted yet."""
    tallies, uncounted = _tallies(days, now)
    per_day: PerDay = {
        day: {name: Counts.of(values) for name, values in tally.counts.items()}
        for day, tally in tallies.items()
    }
    open_days = [
        tally
        for day, tally in tallies.items()
        if tally.counted_until < day_end(day) and day not in uncounted
    ]
    if open_days:
        recent = Q(pk__in=[])
        for tally in open_days:
            recent |= Q(
                created_at__gte=tally.counted_until,
                created_at__lt=day_end(tally.day),
            )
        for day, buckets in _count(Conversion.objects.filter(recent)).items():
            totals = per_day.setdefault(day, {})
            for name, counts in buckets.items():
                totals[name] = totals.get(name, Counts()) + counts
    return per_day, uncounted


def per_day_counts(
    days: list[dt.date], now: dt.datetime, *, large: bool
) -> tuple[PerDay, list[dt.date]]:
    """Counts per local day and bucket for ``days`` (consecutive, oldest first), and the
    days not counted yet (only ever on a large table's first reads)."""
    if large:
        return _tallied_per_day(days, now)
    return _count(Conversion.objects.filter(created_at__gte=day_start(days[0]))), []


# -- windows and warnings -----------------------------------------------------------------


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _window(per_day: PerDay, name: str, days: list[dt.date]) -> Window:
    counts = Counts.total([c for day in days if (c := per_day.get(day, {}).get(name)) is not None])
    whole = counts.conversions
    return Window(
        days=len(days),
        first_day=days[0],
        last_day=days[-1],
        counts=counts,
        shares={name: _share(getattr(counts, name), whole) for name in IDENTIFIERS},
    )


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def twclid_dropped(last: Counts, previous: Counts) -> bool:
    """The last 7 days' twclid share is below DROP_RATIO of the 7 days before, with at
    least MIN_WEEK_CONVERSIONS conversions in each week (compared exactly, not in floats)."""
    if min(last.conversions, previous.conversions) < MIN_WEEK_CONVERSIONS:
        return False
    if not previous.twclid:
        return False
    return Fraction(last.twclid, last.conversions) < DROP_RATIO * Fraction(
        previous.twclid, previous.conversions
    )


def device_only(month: Counts) -> bool:
    """At least MIN_DEVICE_ONLY conversions with IP + user agent in 30 days, and none
    with a twclid, an email or a phone."""
    return month.strong == 0 and month.ip_user_agent >= MIN_DEVICE_ONLY


def _warnings(
    label: str, last: Window, previous: Window, month: Window, uncounted: list[dt.date]
) -> list[ReadinessWarning]:
    """The warnings of one key; none that needs a day not counted yet."""
    warnings = []
    fortnight_counted = not any(day >= previous.first_day for day in uncounted)
    if fortnight_counted and twclid_dropped(last.counts, previous.counts):
        message = (
            f"{label}: twclid on {percent(last.shares['twclid'])} of conversions in the last "
            f"7 days ({last.counts.twclid:,} of {last.counts.conversions:,}), down from "
            f"{percent(previous.shares['twclid'])} the 7 days before "
            f"({previous.counts.twclid:,} of {previous.counts.conversions:,})."
        )
        refused_now = last.counts.refused / last.counts.conversions
        refused_before = previous.counts.refused / previous.counts.conversions
        if refused_now > refused_before:
            message += (
                f" Visitors refusing tracking rose from {percent(refused_before)} to "
                f"{percent(refused_now)}."
            )
        warnings.append(ReadinessWarning("twclid_drop", message, MIDDLEWARE_FIX))
    if not uncounted and device_only(month.counts):
        warnings.append(
            ReadinessWarning(
                "device_only",
                f"{label}: none of its {month.counts.conversions:,} conversions in the last 30 "
                "days carries a twclid, an email or a phone; IP address + user agent alone "
                "match the fewest users on X.",
                DEVICE_ONLY_FIX,
            )
        )
    return warnings


def _tags_of(names: list[str]) -> dict[str, EventTag]:
    keys = [name for name in names if name and not name.startswith("#")]
    ids = [int(name[1:]) for name in names if name.startswith("#")]
    tags = EventTag.objects.filter(Q(key__in=keys) | Q(pk__in=ids)).only("pk", "key", "name")
    found: dict[str, EventTag] = {}
    for tag in tags:
        if tag.key:
            found[tag.key] = tag
        found[f"#{tag.pk}"] = tag
    return found


def match_readiness(now: dt.datetime | None = None, *, large: bool = False) -> MatchReadiness:
    """Match readiness of every event key recorded in the last 30 local days, those with
    warnings first, then the busiest. ``large``: count from the tallies (see above)."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    days = [today - dt.timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    per_day, uncounted = per_day_counts(days, now, large=large)
    names = sorted({name for buckets in per_day.values() for name in buckets})
    tags = _tags_of(names)
    result = []
    for name in names:
        month = _window(per_day, name, days)
        if not month.counts.conversions:
            continue
        last = _window(per_day, name, days[-WEEK:])
        previous = _window(per_day, name, days[-2 * WEEK : -WEEK])
        tag = tags.get(name)
        key = (tag.key or name) if tag is not None else name
        label = f"{tag.name} ({key})" if tag is not None else (key or "(no key)")
        result.append(
            TagReadiness(
                key=key,
                tag_id=tag.pk if tag is not None else None,
                tag_name=tag.name if tag is not None else "",
                last_7_days=last,
                previous_7_days=previous,
                last_30_days=month,
                warnings=_warnings(label, last, previous, month, uncounted),
            )
        )
    result.sort(key=lambda t: (not t.warnings, -t.last_30_days.counts.conversions, t.key))
    return MatchReadiness(
        first_day=days[0], last_day=days[-1], tags=result, uncounted_days=len(uncounted)
    )
