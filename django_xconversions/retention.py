"""Retention: delete conversions that are done with (sent, failed, skipped) after N days.

Pending and sending rows are never deleted, whatever their age: they are work still owed
to X. Deletion runs in chunks so a large purge never holds one long transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from django_xconversions.conf import xsettings
from django_xconversions.models import Conversion, DeliveryAttempt

FINISHED = (Conversion.Status.SENT, Conversion.Status.FAILED, Conversion.Status.SKIPPED)
CHUNK = 5000


@dataclass(frozen=True)
class PurgeResult:
    cutoff: dt.datetime
    conversions: int
    attempts: int


def cutoff_for(days: float | None, now: dt.datetime | None = None) -> dt.datetime:
    keep = xsettings.RETENTION_DAYS if days is None else days
    if keep < 0:
        raise ValueError("older-than must be a number of days of at least 0.")
    return (now or timezone.now()) - dt.timedelta(days=keep)


def purge(days: float | None = None, *, dry_run: bool = False) -> PurgeResult:
    """Delete finished conversions created before the cutoff, and older delivery attempts."""
    cutoff = cutoff_for(days)
    old = Conversion.objects.filter(status__in=FINISHED, created_at__lt=cutoff)
    old_attempts = DeliveryAttempt.objects.filter(created_at__lt=cutoff)
    if dry_run:
        return PurgeResult(cutoff, old.count(), old_attempts.count())
    conversions = attempts = 0
    while ids := list(old.values_list("pk", flat=True)[:CHUNK]):
        with transaction.atomic():
            # The status filter again: a row re-queued meanwhile is pending and stays.
            conversions += Conversion.objects.filter(pk__in=ids, status__in=FINISHED).delete()[0]
    while ids := list(old_attempts.values_list("pk", flat=True)[:CHUNK]):
        attempts += DeliveryAttempt.objects.filter(pk__in=ids).delete()[0]
    return PurgeResult(cutoff, conversions, attempts)
