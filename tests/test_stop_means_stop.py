"""After X says stop (429 until its reset, 401, 403, a 404 that pauses) not one more
request leaves for that account, in this run or the next; other accounts keep sending."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from django_xconversions import delivery
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from tests.helpers.workers import run_workers

from .conftest import ACCESS_TOKEN, configure, make_conversions
from .two_accounts import add_second_account

pytestmark = pytest.mark.django_db

EACH = 60  # conversions per account: three batches of 20


def requests_for(emulator: EmulatorServer, pixel: Pixel) -> list[dict[str, Any]]:
    path = f"/measurement/conversions/{pixel.pixel_id}"
    return sorted(
        (r for r in emulator.requests if r["path"].endswith(path)), key=lambda r: r["time"]
    )


def wrong_secret(emulator: EmulatorServer, account: AdAccount, pixel: Pixel) -> None:
    account.set_tokens(ACCESS_TOKEN, "wrong-secret")
    account.save()


def pixel_unknown_to_x(emulator: EmulatorServer, account: AdAccount, pixel: Pixel) -> None:
    Pixel.objects.filter(pk=pixel.pk).update(pixel_id="o8z6q")
    pixel.refresh_from_db()


def fault(name: str) -> Callable[[EmulatorServer, AdAccount, Pixel], None]:
    """X refuses this account's first request with ``name``; later ones would pass."""

    def inject(emulator: EmulatorServer, account: AdAccount, pixel: Pixel) -> None:
        emulator.faults.rate_limit_reset_seconds = 60
        emulator.faults.only_pixels = [pixel.pixel_id]
        emulator.faults.script([name])

    return inject


REFUSALS: dict[str, tuple[Callable[[EmulatorServer, AdAccount, Pixel], None], int]] = {
    "401 wrong secret": (wrong_secret, 401),
    "401": (fault("401"), 401),
    "403": (fault("403"), 403),
    "403 client application": (fault("403_client_app"), 403),
    "429 reset in a minute": (fault("429"), 429),
    "404 pausing": (pixel_unknown_to_x, 404),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_no_request_leaves_for_an_account_after_x_says_stop(
    settings: Any,
    emulator: EmulatorServer,
    account: AdAccount,
    purchase_tag: EventTag,
    refusal: str,
) -> None:
    configure(settings, BATCH_SIZE=20)
    other_tag = add_second_account(emulator)
    make_conversions(purchase_tag, EACH)
    make_conversions(other_tag, EACH, start=EACH)
    refuse, status = REFUSALS[refusal]
    pixel = purchase_tag.pixel
    assert pixel is not None
    refuse(emulator, account, pixel)

    # Every answer a little late: a request sent before the refusal is read would show.
    emulator.faults.delay_seconds = 0.05
    first = delivery.send_pending()
    second = delivery.send_pending()

    # The refusal is the first and only request of that account, across both runs.
    assert [r["status"] for r in requests_for(emulator, pixel)] == [status]
    # The other account is not held up.
    assert first.sent == EACH and second.sent == 0
    assert other_tag.pixel is not None
    assert [r["status"] for r in requests_for(emulator, other_tag.pixel)] == [200, 200, 200]
    mine = Conversion.objects.filter(event_tag=purchase_tag)
    assert Counter(mine.values_list("status", flat=True)) == {"pending": EACH}
    assert set(mine.values_list("attempts", flat=True)) == {0}
    stopped = account.account_id
    assert stopped in (first.rate_limited if status == 429 else first.paused)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_send_nothing_more_once_x_refused_one_of_them(
    settings: Any, emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag
) -> None:
    # Three workers at once, each with a batch of each account prepared while another's
    # request is in flight: X refuses the first account's credentials (401). Only the
    # first request may reach X; a batch another worker prepared is released unsent.
    configure(settings, BATCH_SIZE=10)
    other_tag = add_second_account(emulator)
    make_conversions(purchase_tag, EACH)
    make_conversions(other_tag, EACH, start=EACH)
    pixel = purchase_tag.pixel
    assert pixel is not None and other_tag.pixel is not None
    wrong_secret(emulator, account, pixel)
    emulator.faults.delay_seconds = 0.05  # every answer late: the others have prepared

    summaries: list[delivery.SendSummary] = []
    errors = run_workers(3, lambda: summaries.append(delivery.send_pending()))

    assert not errors
    assert [r["status"] for r in requests_for(emulator, pixel)] == [401]
    assert {r["status"] for r in requests_for(emulator, other_tag.pixel)} == {200}
    assert sum(s.sent for s in summaries) == EACH
    assert Counter(Conversion.objects.values_list("status", flat=True)) == {
        "sent": EACH,
        "pending": EACH,
    }
    assert AdAccount.objects.get(pk=account.pk).status == AdAccount.Status.PAUSED
    assert set(
        Conversion.objects.filter(event_tag=purchase_tag).values_list("attempts", flat=True)
    ) == {0}
