"""The shared budget folds in X's rate-limit headers: tighter within a window, and a
count of another window never carries over."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from django_xconversions import budget
from django_xconversions.models import AdAccount
from tests.conftest import configure

pytestmark = pytest.mark.django_db


def reset_in(seconds: float) -> float:
    return (timezone.now() + dt.timedelta(seconds=seconds)).timestamp()


def test_within_one_window_the_larger_count_wins(settings: Any, account: AdAccount) -> None:
    configure(settings, RATE_LIMIT_EVENTS=60_000)
    reset = reset_in(600)
    assert budget.reserve(account.pk, 500).events == 500
    budget.observe(account.pk, limit=60_000, remaining=59_800, reset_at=reset)
    account.refresh_from_db()
    assert account.budget_used == 500  # ours counts what X has not seen yet
    budget.observe(account.pk, limit=60_000, remaining=50_000, reset_at=reset)
    account.refresh_from_db()
    assert account.budget_used == 10_000  # X counts another sender's events too


def test_an_exhausted_window_does_not_leak_into_the_next(settings: Any, account: AdAccount) -> None:
    configure(settings, RATE_LIMIT_EVENTS=10**9)
    # A 429 says: nothing left until a reset one second away.
    budget.observe(account.pk, limit=60_000, remaining=0, reset_at=reset_in(1))
    assert budget.reserve(account.pk, 100).events == 0
    # Then answers describe X's 15-minute window, in which little is used.
    budget.observe(account.pk, limit=60_000, remaining=55_000, reset_at=reset_in(900))
    account.refresh_from_db()
    assert account.budget_used == 5_000 and account.budget_limit == 60_000
    assert budget.reserve(account.pk, 500).events == 500
