"""A second ad account with its own pixel and purchase tag, on X (the emulator) and here."""

from __future__ import annotations

from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, EventTag, Pixel

from .conftest import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, USER_ID, mirror_tag

OTHER_ACCOUNT_ID = "18ce54d4x6u"
OTHER_PIXEL_ID = "o8z7k"


def add_second_account(
    emulator: EmulatorServer, access_token_secret: str = ACCESS_TOKEN_SECRET
) -> EventTag:
    """The second account's purchase tag; the account is created after the fixtures' one,
    so the delivery engine reaches it second."""
    emulator.add_account(OTHER_ACCOUNT_ID, name="Other shop", users={USER_ID: ["ACCOUNT_ADMIN"]})
    emulator.add_pixel(OTHER_ACCOUNT_ID, OTHER_PIXEL_ID)
    account = AdAccount(account_id=OTHER_ACCOUNT_ID, name="Other shop")
    account.set_tokens(ACCESS_TOKEN, access_token_secret)
    account.save()
    pixel = Pixel.objects.create(pixel_id=OTHER_PIXEL_ID, account=account, name="Other pixel")
    return mirror_tag(emulator, pixel, "other_purchase", "PURCHASE")
