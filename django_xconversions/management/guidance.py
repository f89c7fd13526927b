"""What every command of ours says the same way: the tables missing before ``migrate``,
an unknown ``--account`` or ``--pixel``, counts with their plural, what is not set up yet,
and the accounts that hold pending conversions nothing can send now, with the fix."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeVar

from django.apps import apps
from django.core.management.base import CommandError
from django.db import connections, models, router
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import ngettext

from django_xconversions import clock
from django_xconversions.alerts import at_least, bounded_count
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from django_xconversions.outages import TRANSIENT_ERRORS
from django_xconversions.wording import plural

__all__ = [
    "MIGRATE_FIRST",
    "NO_ACCOUNT",
    "RESUME_FIX",
    "WaitingAccount",
    "find",
    "plural",
    "require_tables",
    "setup_hints",
    "waiting_accounts",
]

MIGRATE_FIRST = "The django-xconversions tables do not exist yet: run `manage.py migrate`."
NO_ACCOUNT = (
    "No ad account yet: connect one in the admin (Ad accounts > Connect with X) or add one "
    "with its access tokens (Ad accounts > Add ad account)."
)
NO_PIXEL = (
    "No pixel yet: add one in the admin (Pixels > Add pixel) with its id from X's Events "
    "Manager; conversions are held until their event tag has a pixel."
)
NO_TAG = (
    "No event tag yet: run `manage.py sync_tags` to copy them from X (or add one in the "
    "admin, Event tags), then give each the key your code tracks."
)
RESUME_FIX = 'Fix the cause, then use "Resume sending" in the admin (Ad accounts).'
RATE_LIMIT_FIX = "Nothing to do: sending resumes by itself then."
# An unknown --account lists at most this many known ids.
KNOWN_SHOWN = 5

M = TypeVar("M", bound=models.Model)


# -- before migrate ----------------------------------------------------------------------


def require_tables() -> None:
    """Raise a CommandError naming ``migrate`` when any table of the app is missing.

    Called first by the ``handle()`` of each command of ours (after the system checks,
    so a settings error is still reported as such): exit status 1, one line, no traceback.
    One catalogue query per database the app's models are written to; nothing is created.
    """
    models_by_alias: dict[str, list[type[models.Model]]] = {}
    for model in apps.get_app_config("xconversions").get_models():
        alias = router.db_for_write(model) or "default"
        models_by_alias.setdefault(alias, []).append(model)
    for alias, app_models in models_by_alias.items():
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                existing = set(connection.introspection.table_names(cursor))
        except TRANSIENT_ERRORS:
            # The database is away, not unmigrated: the command meets the outage its own
            # way (a --loop worker waits it out).
            continue
        missing = sorted(m._meta.db_table for m in app_models if m._meta.db_table not in existing)
        if len(missing) == len(app_models):
            raise CommandError(MIGRATE_FIRST)
        if missing:
            raise CommandError(
                f"Some django-xconversions tables do not exist yet ({', '.join(missing)}): "
                "run `manage.py migrate`."
            )


# -- options naming rows -----------------------------------------------------------------


def find(model: type[M], field: str, value: str | None, flag: str) -> M | None:
    """The row whose ``field`` is ``value`` (None without a value), or a CommandError worded
    the same by every command: ``--account nope: no ad account has this id. Known: ...``."""
    if value is None:
        return None
    try:
        return model._default_manager.get(**{field: value})
    except model.DoesNotExist:  # type: ignore[attr-defined]
        pass
    name = str(model._meta.verbose_name)
    known = list(
        model._default_manager.order_by(field).values_list(field, flat=True)[: KNOWN_SHOWN + 1]
    )
    if not known:
        hint = NO_ACCOUNT if model is AdAccount else f"There is no {name} yet."
    else:
        shown = ", ".join(str(k) for k in known[:KNOWN_SHOWN])
        hint = f"Known: {shown}{' and more' if len(known) > KNOWN_SHOWN else ''}."
    raise CommandError(f"{flag} {value}: no {name} has this id. {hint}")


# -- what is not set up yet --------------------------------------------------------------


def setup_hints() -> list[str]:
    """What is missing before anything can be sent, each with where to set it up."""
    if not AdAccount.objects.exists():
        return [NO_ACCOUNT]
    hints = []
    if not Pixel.objects.exists():
        hints.append(NO_PIXEL)
    if not EventTag.objects.exists():
        hints.append(NO_TAG)
    return hints


# -- accounts holding conversions nothing can send now -----------------------------------


@dataclass(frozen=True)
class WaitingAccount:
    """An account holding pending conversions that are not sent now: paused (by X's
    refusal or unreadable secrets, until a person resumes it) or waiting on X's rate
    limit (until its reset time)."""

    account_id: str
    name: str
    state: str  # "paused" or "rate_limited"
    pending: int  # counted up to alerts.COUNT_BOUND
    reason: str
    since: dt.datetime | None
    until: dt.datetime | None

    @property
    def fix(self) -> str:
        return RESUME_FIX if self.state == "paused" else RATE_LIMIT_FIX

    def line(self, *, paused_now: bool = False) -> str:
        """One self-contained sentence for a command's summary."""
        who = f"Account {self.account_id}" + (f" ({self.name})" if self.name else "")
        noun = ngettext("conversion waits", "conversions wait", self.pending)
        waits = f"{at_least(self.pending)} {noun}."
        if self.state == "rate_limited":
            until = f" until {_when(self.until)}" if self.until else ""
            return f"{who} waits for X's rate limit{until}: {waits} {self.fix}"
        if paused_now:
            state = "was paused by this run"
        elif self.since is not None:
            state = f"is paused since {_when(self.since)}"
        else:
            state = "is paused"
        return f"{who} {state}: {self.reason}. {waits} {self.fix}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "pending": self.pending,
            "reason": self.reason,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "fix": self.fix,
        }


def _when(moment: dt.datetime) -> str:
    return f"{timezone.localtime(moment, dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _one_line(text: str) -> str:
    return " ".join(text.split()).rstrip(".") or "no reason recorded"


def waiting_accounts(
    account: AdAccount | None = None, pixel: Pixel | None = None, now: dt.datetime | None = None
) -> list[WaitingAccount]:
    """Accounts (within the run's --account/--pixel) holding pending conversions that
    are not sent now, paused ones first; one bounded count per account listed."""
    now = now or clock.now()  # the engine's time: rate limits reopen by it
    scope = Q(status=Conversion.Status.PENDING)
    if pixel is not None:
        scope &= Q(pixel=pixel)

    def pending_of(owner: Any) -> QuerySet[Conversion]:
        return Conversion.objects.filter(scope, pixel__account=owner)

    accounts = AdAccount.objects.filter(
        Q(status=AdAccount.Status.PAUSED) | Q(rate_limited_until__gt=now)
    ).filter(Exists(pending_of(OuterRef("pk"))))
    if account is not None:
        accounts = accounts.filter(pk=account.pk)
    if pixel is not None:
        accounts = accounts.filter(pk=pixel.account_id)
    waiting = []
    for row in accounts.order_by("account_id"):
        paused = row.status == AdAccount.Status.PAUSED
        waiting.append(
            WaitingAccount(
                account_id=row.account_id,
                name=row.name,
                state="paused" if paused else "rate_limited",
                pending=bounded_count(pending_of(row)),
                reason=_one_line(row.paused_reason) if paused else "X's rate limit",
                since=row.paused_at if paused else None,
                until=None if paused else row.rate_limited_until,
            )
        )
    return sorted(waiting, key=lambda w: w.state != "paused")
