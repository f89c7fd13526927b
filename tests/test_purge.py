"""purge_conversions: finished rows past retention go; pending and sending rows stay."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_xconversions.models import Conversion, DeliveryAttempt, EventTag
from tests.conftest import configure, make_conversions

pytestmark = pytest.mark.django_db


def aged(tag: EventTag, days: float) -> list[int]:
    """One conversion per status, created ``days`` ago."""
    rows = make_conversions(tag, 5, start=int(days * 100))
    created = timezone.now() - dt.timedelta(days=days)
    for row, status in zip(rows, ["pending", "sending", "sent", "failed", "skipped"], strict=True):
        Conversion.objects.filter(pk=row.pk).update(status=status, created_at=created)
    return [row.pk for row in rows]


def test_purges_finished_rows_older_than_the_cutoff_only(shop_tags: dict[str, EventTag]) -> None:
    old = aged(shop_tags["purchase"], 40)
    recent = aged(shop_tags["purchase"], 10)
    attempt = DeliveryAttempt.objects.create(
        account=shop_tags["purchase"].account, pixel=shop_tags["purchase"].pixel, event_count=1
    )
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(
        created_at=timezone.now() - dt.timedelta(days=41)
    )
    out = StringIO()
    call_command("purge_conversions", "--older-than", "30", stdout=out)
    assert "Deleted 3 conversions and 1 delivery attempt created" in out.getvalue()
    left = dict(Conversion.objects.values_list("pk", "status"))
    assert set(left) == {old[0], old[1], *recent}
    assert left[old[0]] == "pending" and left[old[1]] == "sending"
    assert not DeliveryAttempt.objects.exists()


def test_default_retention_comes_from_settings_and_dry_run_deletes_nothing(
    settings: Any, shop_tags: dict[str, EventTag]
) -> None:
    aged(shop_tags["purchase"], 8)
    configure(settings, RETENTION_DAYS=7)
    out = StringIO()
    call_command("purge_conversions", "--dry-run", stdout=out)
    assert "Would delete 3 conversions" in out.getvalue()
    assert Conversion.objects.count() == 5
    call_command("purge_conversions", stdout=StringIO())
    assert Conversion.objects.count() == 2


def test_a_negative_age_is_refused(shop_tags: dict[str, EventTag]) -> None:
    with pytest.raises(CommandError, match="at least 0"):
        call_command("purge_conversions", "--older-than", "-1")
