"""The per-account event budget, shared by every worker through the database.

Each request to X first reserves its events here, under a row lock on the account (in the
claim's own transaction, so a claim and its reservation commit together), so any
number of workers on any number of machines together stay within
XCONVERSIONS["RATE_LIMIT_EVENTS"] per XCONVERSIONS["RATE_LIMIT_WINDOW"] seconds.
X's own rate-limit headers, when a response carries them, tighten the window: its reset
time becomes ours and what X says is used counts as used.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import F, Field, Value
from django.db.models.functions import Greatest

from django_xconversions import clock
from django_xconversions.conf import xsettings
from django_xconversions.models import AdAccount

# Waiting a moment past X's announced reset absorbs clock skew and whole-second rounding.
RESET_MARGIN = dt.timedelta(seconds=1)
# Reset times closer than this describe the same window of X's.
WINDOW_TOLERANCE = dt.timedelta(seconds=2)

# PostgreSQL advisory locks on an account (first key; the second is the account's id):
# held by the worker whose request for it is in flight (rounds.AccountGate), and held
# shared by workers waiting to send for it. A reservation says whether any is waiting, so
# the worker sending for it lets them have a turn (read with ``others_waiting``).
SENDING_LOCK = 0x78636F6E  # "xcon"
WAITING_LOCK = 0x78636F77  # "xcow"

_seen = threading.local()

_BUDGET_FIELDS = ["budget_window_ends_at", "budget_limit", "budget_used", "budget_window_from_x"]


@dataclass(frozen=True)
class Grant:
    """How many events may be sent now; when fewer than wanted, until when to wait."""

    events: int
    wait_until: dt.datetime | None = None


def reserve(account_id: int, wanted: int, now: dt.datetime | None = None) -> Grant:
    """Take up to ``wanted`` events from the account's budget for the current window.

    Inside a transaction (a claim's) the reservation is part of it: no savepoint, and
    the account's row stays locked until that transaction ends.
    """
    now = now or clock.now()
    with transaction.atomic(savepoint=False):
        if wanted > 0 and _take_whole(account_id, wanted, now):
            return Grant(wanted)
        account = (
            AdAccount.objects.select_for_update()
            .only("rate_limited_until", *_BUDGET_FIELDS)
            .get(pk=account_id)
        )
        if account.rate_limited_until and account.rate_limited_until > now:
            return Grant(0, account.rate_limited_until)
        if account.budget_window_ends_at is None or account.budget_window_ends_at <= now:
            account.budget_window_ends_at = now + dt.timedelta(seconds=xsettings.RATE_LIMIT_WINDOW)
            account.budget_limit = xsettings.RATE_LIMIT_EVENTS
            account.budget_used = 0
            account.budget_window_from_x = False
        limit = min(account.budget_limit or 0, xsettings.RATE_LIMIT_EVENTS)
        granted = max(0, min(wanted, limit - account.budget_used))
        account.budget_used += granted
        account.save(update_fields=_BUDGET_FIELDS)
    return Grant(granted, None if granted == wanted else account.budget_window_ends_at)


def lock_key(account_id: int) -> int:
    """The second key of an account's advisory locks."""
    return account_id & 0x7FFFFFFF


def others_waiting(account_id: int) -> bool:
    """Whether, at this thread's last reservation for the account, another worker was
    waiting to send for it (PostgreSQL; read once)."""
    waiting: dict[int, bool] = getattr(_seen, "waiting", {})
    return waiting.pop(account_id, False)


def _take_whole(account_id: int, wanted: int, now: dt.datetime) -> bool:
    """The common case in one statement: the window is open, the account not rate
    limited, and ``wanted`` events fit. False: nothing taken (the caller decides)."""
    adapt = connection.ops.adapt_datetimefield_value
    configured = xsettings.RATE_LIMIT_EVENTS
    params = [wanted, account_id, adapt(now), adapt(now), wanted, configured, configured]
    postgresql = connection.vendor == "postgresql"
    if postgresql:
        params += [WAITING_LOCK, WAITING_LOCK]
    with connection.cursor() as cursor:
        cursor.execute(_take_whole_sql(connection.vendor), params)
        if cursor.rowcount != 1:
            return False
        if postgresql:
            waiting = getattr(_seen, "waiting", None)
            if waiting is None:
                waiting = _seen.waiting = {}
            waiting[account_id] = not cursor.fetchone()[0]
        return True


@cache
def _take_whole_sql(vendor: str) -> str:
    used, ends = _column("budget_used"), _column("budget_window_ends_at")
    limited, limit = _column("rate_limited_until"), f"COALESCE({_column('budget_limit')}, 0)"
    table = connection.ops.quote_name(AdAccount._meta.db_table)
    sql = (
        f"UPDATE {table} SET {used} = {used} + %s "  # noqa: S608
        f"WHERE {_column('id')} = %s AND ({limited} IS NULL OR {limited} <= %s) "
        f"AND {ends} > %s "
        f"AND {used} + %s <= CASE WHEN {limit} < %s THEN {limit} ELSE %s END"
    )
    if vendor == "postgresql":
        # Free of waiters: its waiting lock can be taken (and is let go at once).
        key = f"({_column('id')} & 2147483647)::int4"
        sql += (
            f" RETURNING CASE WHEN pg_try_advisory_lock(%s::int4, {key}) "
            f"THEN pg_advisory_unlock(%s::int4, {key}) ELSE false END"
        )
    return sql


def give_back(account_id: int, events: int) -> None:
    """Return events reserved but not sent (fewer rows were due than reserved)."""
    if events > 0:
        AdAccount.objects.filter(pk=account_id).update(
            budget_used=Greatest(F("budget_used") - events, Value(0))
        )


def observe(
    account_id: int, *, limit: int | None, remaining: int | None, reset_at: float | None
) -> None:
    """Fold X's rate-limit headers into the shared budget (only ever tighter).

    One conditional UPDATE (after every answer, so written as SQL once rather than
    compiled each time): every condition reads the row as it was, under the row lock the
    UPDATE takes, so concurrent workers fold their answers in one after the other.
    """
    if reset_at is None:
        return
    window_end = dt.datetime.fromtimestamp(reset_at, tz=dt.timezone.utc) + RESET_MARGIN
    if window_end <= clock.now():
        return
    bound = min(xsettings.RATE_LIMIT_EVENTS, limit) if limit is not None else 0
    used_at_x = max(0, limit - remaining) if limit is not None and remaining is not None else 0
    adapt = connection.ops.adapt_datetimefield_value
    # X announcing another reset than the window of X's we count in: that window is over
    # (or was a brief one), and what was used in it says nothing of this one.
    newer = [adapt(window_end - WINDOW_TOLERANCE), adapt(window_end + WINDOW_TOLERANCE)]
    params = [
        # X's window is the one that binds: reopen ours just after X's reset.
        adapt(window_end),
        True,
        # The limit: X's, or ours if lower; within one window of X's, the lowest seen.
        limit is not None,
        *newer,
        bound,
        bound,
        # Within a window the larger count wins: ours includes requests in flight.
        limit is not None and remaining is not None,
        *newer,
        used_at_x,
        used_at_x,
        account_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_observe_sql(connection.vendor), params)


def _column(name: str) -> str:
    field = cast("Field[Any, Any]", AdAccount._meta.get_field(name))
    return str(connection.ops.quote_name(str(field.column)))


@cache
def _observe_sql(vendor: str) -> str:
    column = {name: _column(name) for name in _BUDGET_FIELDS}
    ends, from_x = column["budget_window_ends_at"], column["budget_window_from_x"]
    limit, used = column["budget_limit"], column["budget_used"]
    newer = f"({from_x} AND ({ends} < %s OR {ends} > %s))"
    table = connection.ops.quote_name(AdAccount._meta.db_table)
    return (
        f"UPDATE {table} SET {ends} = %s, {from_x} = %s, "  # noqa: S608
        f"{limit} = CASE WHEN NOT %s THEN {limit} "
        f"WHEN {newer} OR {limit} IS NULL OR {limit} = 0 OR {limit} > %s THEN %s "
        f"ELSE {limit} END, "
        f"{used} = CASE WHEN NOT %s THEN {used} WHEN {newer} OR {used} < %s THEN %s "
        f"ELSE {used} END "
        f"WHERE {_column('id')} = %s"
    )


def wait_out_rate_limit(account_id: int, until: dt.datetime) -> None:
    """X answered 429: nothing is sent for this account until ``until``."""
    AdAccount.objects.filter(pk=account_id).update(rate_limited_until=until + RESET_MARGIN)
