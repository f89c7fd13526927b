"""A fixed demo world, and seeding an emulator from a JSON-like description of one.

The description has the shape of DEMO_WORLD: "apps" (optional "callback_urls": their
allowlist for Connect with X), "users", "accounts" (each with
optional nested "pixels" and "tags"); top-level "pixels" and "tags" lists whose items name
their "account_id" are accepted too. Optional keys: "budget" ({"events",
"window_seconds"}), "faults" (FaultPlan.configure: "script", the set_rates arguments,
"only_pixels", "delay_seconds", "not_found_wording", "slow_seconds", ...; see faults.py),
"record" ("ids" keeps only conversion ids) and "reject_conversion_ids" (a list).
``--config FILE`` takes the same in JSON (``python -m django_xconversions.emulator --help``
prints the format with an example).
"""

from __future__ import annotations

import copy
from typing import Any

from django_xconversions.emulator.server import EmulatorServer

DEMO_WORLD: dict[str, Any] = {
    "apps": [
        {
            "consumer_key": "demo-consumer-key",
            "consumer_secret": "demo-consumer-secret",
            # The example shop's admin (make run), so "Connect with X" works offline.
            "callback_urls": [
                "http://127.0.0.1:8000/admin/xconversions/adaccount/connect/callback/"
            ],
        }
    ],
    "users": [
        {
            "user_id": "1000000001",
            "screen_name": "demo_shop",
            "access_token": "1000000001-demoAccessToken",
            "access_token_secret": "demo-access-token-secret",
        }
    ],
    "accounts": [
        {
            "account_id": "18ce54d4x5t",
            "name": "Demo shop",
            "users": {"1000000001": ["ACCOUNT_ADMIN"]},
            "pixels": [{"pixel_id": "o8z6j", "pixel_token": "demo-pixel-token"}],
            "tags": [
                {"id": "o3bk1", "website_tag_id": "ny3od", "name": "Purchase", "type": "PURCHASE"},
                {"id": "o3bk2", "website_tag_id": "ny3oe", "name": "Sign up", "type": "SIGN_UP"},
            ],
        }
    ],
}


def demo_world() -> dict[str, Any]:
    """A copy of DEMO_WORLD, free to change (the Django side reuses these values)."""
    return copy.deepcopy(DEMO_WORLD)


def seed(emulator: EmulatorServer, world: dict[str, Any]) -> None:
    for app in world.get("apps", []):
        emulator.add_app(app["consumer_key"], app["consumer_secret"])
        for url in app.get("callback_urls", []):  # the 3-legged OAuth allowlist
            emulator.allow_callback(app["consumer_key"], url)
    for user in world.get("users", []):
        emulator.add_user(
            user["user_id"],
            user["access_token"],
            user["access_token_secret"],
            user.get("screen_name", ""),
        )
    for account in world.get("accounts", []):
        emulator.add_account(account["account_id"], account.get("name", ""), account.get("users"))
        for pixel in account.get("pixels", []):
            emulator.add_pixel(account["account_id"], pixel["pixel_id"], pixel.get("pixel_token"))
        for tag in account.get("tags", []):
            emulator.add_tag(account["account_id"], **tag)
    for pixel in world.get("pixels", []):
        emulator.add_pixel(pixel["account_id"], pixel["pixel_id"], pixel.get("pixel_token"))
    for tag in world.get("tags", []):
        fields = {k: v for k, v in tag.items() if k != "account_id"}
        emulator.add_tag(tag["account_id"], **fields)
    budget = world.get("budget")
    if budget:
        emulator.set_budget(int(budget["events"]), float(budget["window_seconds"]))
    faults = world.get("faults")
    if faults:
        emulator.faults.configure(faults)
    if world.get("record") == "ids":
        emulator.record_ids_only()
    if world.get("reject_conversion_ids"):
        emulator.reject_event_ids(*world["reject_conversion_ids"])
