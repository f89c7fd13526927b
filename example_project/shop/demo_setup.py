"""The demo account, pixel and tags of the emulator's demo world, shared by
``manage.py demo`` and ``manage.py run_shop``.

With a real X account you would connect it in the admin instead (Connect with X) and
run ``manage.py sync_tags``; this is the same done with the emulator's fixed tokens.
"""

from __future__ import annotations

import os

from django.conf import settings

from django_xconversions.emulator import DEMO_WORLD
from django_xconversions.models import AdAccount, EventTag, Pixel
from django_xconversions.tags import SyncResult, sync_account_tags

# Event tag keys the shop's SOURCES use, and the tag type each is bound to.
KEYS = {"purchase": EventTag.Type.PURCHASE, "sign_up": EventTag.Type.SIGN_UP}


def use_api(url: str) -> None:
    """Point this process, and the processes it starts, at the API running at ``url``."""
    app = DEMO_WORLD["apps"][0]
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "API_BASE_URL": url,
        "OAUTH_BASE_URL": url,
        "CONSUMER_KEY": app["consumer_key"],
        "CONSUMER_SECRET": app["consumer_secret"],
    }
    os.environ.update(
        X_API_BASE_URL=url,
        X_OAUTH_BASE_URL=url,
        X_CONSUMER_KEY=app["consumer_key"],
        X_CONSUMER_SECRET=app["consumer_secret"],
    )


def connect_demo_account() -> AdAccount:
    """The demo world's account with its (encrypted) tokens, active, and its pixel."""
    user = DEMO_WORLD["users"][0]
    spec = DEMO_WORLD["accounts"][0]
    account, _ = AdAccount.objects.update_or_create(
        account_id=spec["account_id"], defaults={"name": spec["name"]}
    )
    account.set_tokens(user["access_token"], user["access_token_secret"])
    account.save()
    account.resume()
    Pixel.objects.update_or_create(
        pixel_id=spec["pixels"][0]["pixel_id"],
        defaults={"account": account, "name": "Demo pixel"},
    )
    return account


def sync_demo_tags(account: AdAccount) -> SyncResult:
    """Copy the account's tags from the API, send them through its pixel and make sure
    the keys SOURCES name exist (sync gives each new tag its type as key when free)."""
    result = sync_account_tags(account)
    tags = EventTag.objects.filter(account=account, deleted=False)
    tags.update(pixel=account.pixels.get())
    for key, tag_type in KEYS.items():
        if tags.filter(key=key).exists():
            continue
        tag = tags.filter(type=tag_type, key=None).order_by("pk").first()
        if tag is not None:
            # A key is unique: take it from a tag deleted on X if one still holds it.
            EventTag.objects.filter(key=key, deleted=True).update(key=None)
            tag.key = key
            tag.save(update_fields=["key"])
    return result
