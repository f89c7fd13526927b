"""One account's trouble stays with it: a secret no configured key opens pauses that
account, with the setting and the fix named, and every other account still sends."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from cryptography.fernet import Fernet

from django_xconversions import delivery
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag

from .conftest import configure, make_conversions, received_ids
from .two_accounts import OTHER_ACCOUNT_ID, add_second_account

pytestmark = pytest.mark.django_db


def written_with_a_forgotten_key(settings: Any, save: Any) -> None:
    """Store secrets under a key that is then dropped from the configuration."""
    current = settings.XCONVERSIONS["ENCRYPTION_KEY"]
    configure(settings, ENCRYPTION_KEY=Fernet.generate_key().decode())
    save()
    configure(settings, ENCRYPTION_KEY=current)


@pytest.mark.parametrize("secret", ["account tokens", "pixel token"])
def test_unreadable_secret_pauses_only_its_account(
    settings: Any,
    emulator: EmulatorServer,
    account: AdAccount,
    purchase_tag: EventTag,
    secret: str,
) -> None:
    configure(settings, BATCH_SIZE=50)
    healthy_tag = add_second_account(emulator)
    # The broken account is reached first: its trouble must not stop the one after it.
    broken, broken_pixel = account, purchase_tag.pixel
    assert broken_pixel is not None
    if secret == "account tokens":
        written_with_a_forgotten_key(settings, lambda: (broken.set_tokens("t", "s"), broken.save()))
    else:
        written_with_a_forgotten_key(
            settings, lambda: (broken_pixel.set_pixel_token("p"), broken_pixel.save())
        )
    make_conversions(purchase_tag, 40)
    make_conversions(healthy_tag, 120, start=40)

    summary = delivery.send_pending()

    assert summary.sent == 120
    assert set(received_ids(emulator)) == {f"order:{n}" for n in range(40, 160)}
    broken.refresh_from_db()
    assert broken.status == AdAccount.Status.PAUSED
    assert 'XCONVERSIONS["ENCRYPTION_KEY"]' in broken.paused_reason
    assert "reconnect" in broken.paused_reason
    assert summary.paused == {broken.account_id: broken.paused_reason}
    assert summary.as_dict()["paused"] == {broken.account_id: broken.paused_reason}
    theirs = Conversion.objects.filter(event_tag=purchase_tag)
    assert Counter(theirs.values_list("status", flat=True)) == {"pending": 40}
    assert AdAccount.objects.get(account_id=OTHER_ACCOUNT_ID).status == AdAccount.Status.ACTIVE
    # Later runs leave the paused account alone and still send nothing of it.
    assert delivery.send_pending().paused == {}
