"""The engine's clock: what it reads, and a test's clock moving it (and the emulated X's)."""

from __future__ import annotations

import datetime as dt
import time
from email.utils import format_datetime
from typing import Any

import pytest
from django.utils import timezone

from django_xconversions import budget, delivery, leases, ratelimit
from django_xconversions import clock as xclock
from django_xconversions.models import AdAccount, Conversion, EventTag
from tests.conftest import make_conversions
from tests.helpers import ShiftedClock


def test_now_is_timezone_now_with_and_without_use_tz(settings: Any) -> None:
    before, read, after = timezone.now(), xclock.now(), timezone.now()
    assert read.tzinfo is dt.timezone.utc and before <= read <= after
    settings.USE_TZ = False
    before, read, after = timezone.now(), xclock.now(), timezone.now()
    assert read.tzinfo is None and before <= read <= after


def test_use_swaps_the_source_for_the_block_only() -> None:
    shifted = ShiftedClock()
    shifted.advance(3600)
    with pytest.raises(RuntimeError), xclock.use(shifted):
        assert xclock.time() - time.time() == pytest.approx(3600, abs=1)
        assert xclock.monotonic() - time.monotonic() == pytest.approx(3600, abs=1)
        raise RuntimeError
    assert xclock.time() == pytest.approx(time.time(), abs=1)
    with pytest.raises(ValueError, match="does not go back"):
        shifted.advance(-1)


def test_retry_after_dates_are_read_against_the_clock(clock: ShiftedClock) -> None:
    in_an_hour = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    header = format_datetime(in_an_hour, usegmt=True)
    assert ratelimit.parse_retry_after(header) == pytest.approx(3600, abs=2)
    clock.advance(1800)
    assert ratelimit.parse_retry_after(header) == pytest.approx(1800, abs=2)


@pytest.mark.django_db
def test_leases_budget_windows_and_rate_limits_run_out_when_the_clock_moves(
    settings: Any, clock: ShiftedClock, tag: EventTag
) -> None:
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "LEASE_SECONDS": 60,
        "RATE_LIMIT_EVENTS": 10,
        "RATE_LIMIT_WINDOW": 900,
    }
    make_conversions(tag, 3)
    claimed = delivery.claim(tag.pixel, 3)
    assert len(claimed.rows) == 3 and delivery.recover_expired_leases() == 0
    clock.advance(61)
    assert delivery.recover_expired_leases() == 3
    assert leases.lease_from_now() - timezone.now() > dt.timedelta(seconds=60 + 60)

    account = tag.pixel.account_id
    assert budget.reserve(account, 10).events == 10
    assert budget.reserve(account, 1).events == 0
    clock.advance(900)
    assert budget.reserve(account, 1).events == 1
    until = xclock.now() + dt.timedelta(seconds=120)
    budget.wait_out_rate_limit(account, until)
    over = until + budget.RESET_MARGIN
    assert budget.reserve(account, 1) == budget.Grant(0, over)
    clock.advance((over - xclock.now()).total_seconds())
    assert budget.reserve(account, 1).events == 1
    assert AdAccount.objects.get(pk=account).rate_limited_until == over
    assert Conversion.objects.filter(status="pending").count() == 3
