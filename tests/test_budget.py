"""The shared budget folds in X's rate-limit headers: tighter within a window, and a
count of another window never carries over."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

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


def folded_in_python(
    state: dict[str, Any], limit: int | None, remaining: int | None, window_end: dt.datetime
) -> dict[str, Any]:
    """The rule observe() applies, as plain Python over the row's values."""
    configured = 60_000
    known_end = state["budget_window_ends_at"]
    newer = (
        state["budget_window_from_x"]
        and known_end is not None
        and abs(window_end - known_end) > budget.WINDOW_TOLERANCE
    )
    folded = {**state, "budget_window_ends_at": window_end, "budget_window_from_x": True}
    if limit is not None:
        current = None if newer else state["budget_limit"]
        folded["budget_limit"] = min(configured, limit, current or configured)
        if remaining is not None:
            used_at_x = max(0, limit - remaining)
            folded["budget_used"] = used_at_x if newer else max(state["budget_used"], used_at_x)
    return folded


@seed(20261130)
@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    from_x=st.booleans(),
    known_offset=st.one_of(st.none(), st.integers(min_value=-5, max_value=900)),
    known_limit=st.one_of(st.none(), st.integers(min_value=0, max_value=100_000)),
    used=st.integers(min_value=0, max_value=100_000),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=100_000)),
    remaining=st.one_of(st.none(), st.integers(min_value=0, max_value=100_000)),
    reset_offset=st.integers(min_value=1, max_value=900),
    near=st.booleans(),
)
def test_observe_folds_headers_in_as_the_rule_says(
    settings: Any,
    account: AdAccount,
    from_x: bool,
    known_offset: int | None,
    known_limit: int | None,
    used: int,
    limit: int | None,
    remaining: int | None,
    reset_offset: int,
    near: bool,
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=60_000)
    now = timezone.now().replace(microsecond=0)
    if near and known_offset is not None:
        # Around X's announced reset (plus our margin): the same window or another one.
        known_offset = reset_offset + 1 + known_offset % 25 - 12
    state = {
        "budget_window_from_x": from_x,
        "budget_window_ends_at": None
        if known_offset is None
        else now + dt.timedelta(seconds=known_offset),
        "budget_limit": known_limit,
        "budget_used": used,
    }
    AdAccount.objects.filter(pk=account.pk).update(**state)
    reset_at = (now + dt.timedelta(seconds=reset_offset)).timestamp()
    budget.observe(account.pk, limit=limit, remaining=remaining, reset_at=reset_at)
    window_end = dt.datetime.fromtimestamp(reset_at, tz=dt.timezone.utc) + budget.RESET_MARGIN
    stored = AdAccount.objects.values(*state).get(pk=account.pk)
    assert stored == folded_in_python(state, limit, remaining, window_end)


def reserved_in_python(
    state: dict[str, Any], wanted: int, now: dt.datetime, configured: int, window: int
) -> tuple[int, dt.datetime | None, dict[str, Any]]:
    """The rule reserve() applies, as plain Python: (granted, wait_until, new state)."""
    state = dict(state)
    if state["rate_limited_until"] and state["rate_limited_until"] > now:
        return 0, state["rate_limited_until"], state
    if state["budget_window_ends_at"] is None or state["budget_window_ends_at"] <= now:
        state.update(
            budget_window_ends_at=now + dt.timedelta(seconds=window),
            budget_limit=configured,
            budget_used=0,
            budget_window_from_x=False,
        )
    limit = min(state["budget_limit"] or 0, configured)
    granted = max(0, min(wanted, limit - state["budget_used"]))
    state["budget_used"] += granted
    return granted, None if granted == wanted else state["budget_window_ends_at"], state


@seed(20261130)
@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limited_offset=st.one_of(st.none(), st.integers(min_value=-60, max_value=60)),
    ends_offset=st.one_of(st.none(), st.integers(min_value=-60, max_value=900)),
    known_limit=st.one_of(st.none(), st.integers(min_value=0, max_value=1_200)),
    used=st.one_of(st.just(0), st.integers(min_value=0, max_value=1_200)),
    wanted=st.one_of(st.just(500), st.integers(min_value=0, max_value=600)),
    from_x=st.booleans(),
)
def test_reserve_grants_as_the_rule_says(
    settings: Any,
    account: AdAccount,
    limited_offset: int | None,
    ends_offset: int | None,
    known_limit: int | None,
    used: int,
    wanted: int,
    from_x: bool,
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=1_000, RATE_LIMIT_WINDOW=60)
    now = timezone.now()

    def moment(offset: int | None) -> dt.datetime | None:
        return None if offset is None else now + dt.timedelta(seconds=offset)

    state = {
        "rate_limited_until": moment(limited_offset),
        "budget_window_ends_at": moment(ends_offset),
        "budget_limit": known_limit,
        "budget_used": used,
        "budget_window_from_x": from_x,
    }
    AdAccount.objects.filter(pk=account.pk).update(**state)
    grant = budget.reserve(account.pk, wanted, now)
    granted, wait_until, expected = reserved_in_python(state, wanted, now, 1_000, 60)
    assert (grant.events, grant.wait_until) == (granted, wait_until)
    assert AdAccount.objects.values(*state).get(pk=account.pk) == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reservation_says_whether_another_worker_waits_to_send_for_the_account(
    settings: Any, account: AdAccount
) -> None:
    configure(settings, RATE_LIMIT_EVENTS=60_000)
    other = AdAccount.objects.create(account_id="18ce54d4x6u", name="Other")
    budget.reserve(account.pk, 0)  # the window is open: reservations take one statement
    budget.reserve(other.pk, 0)
    assert budget.reserve(account.pk, 10).events == 10
    assert budget.others_waiting(account.pk) is False
    waiting = connections.create_connection(DEFAULT_DB_ALIAS)  # another worker's session
    try:
        with waiting.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock_shared(%s::int4, %s::int4)",
                [budget.WAITING_LOCK, budget.lock_key(account.pk)],
            )
            assert cursor.fetchone()[0]
        assert budget.reserve(account.pk, 10).events == 10
        assert budget.others_waiting(account.pk) is True
        assert budget.others_waiting(account.pk) is False  # read once
        assert budget.reserve(other.pk, 10).events == 10
        assert budget.others_waiting(other.pk) is False  # that account has no waiter
        with waiting.cursor() as cursor:  # its turn came
            cursor.execute(
                "SELECT pg_advisory_unlock_shared(%s::int4, %s::int4)",
                [budget.WAITING_LOCK, budget.lock_key(account.pk)],
            )
        assert budget.reserve(account.pk, 10).events == 10
        assert budget.others_waiting(account.pk) is False
    finally:
        waiting.close()
    # Taking the waiting lock to test it does not keep it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert cursor.fetchone()[0] == 0
