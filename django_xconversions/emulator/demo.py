"""A fixed demo world, and seeding an emulator from a JSON-like description of one.

The description has the shape of DEMO_WORLD: "apps" (optional "callback_urls": their
allowlist for Connect with X; optional "loopback_callbacks": true, demo mode, also approves
any callback on 127.0.0.1, localhost or [::1] at any port), "users", "accounts" (each with
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
            # Demo mode (local development, never X's rule): a callback on any loopback
            # host and port is approved too, so `runserver 18120` can connect an account.
            "loopback_callbacks": True,
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
        if app.get("loopback_callbacks"):
            emulator.allow_loopback_callbacks(app["consumer_key"])
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


def demo_settings(url: str) -> str:
    """The XCONVERSIONS lines a project pastes to talk to the demo world at ``url``."""
    app = DEMO_WORLD["apps"][0]
    return "\n".join(
        [
            "XCONVERSIONS |= {  # after your XCONVERSIONS: your other keys stay",
            f'    "API_BASE_URL": "{url}",',
            f'    "OAUTH_BASE_URL": "{url}",',
            f'    "CONSUMER_KEY": "{app["consumer_key"]}",',
            f'    "CONSUMER_SECRET": "{app["consumer_secret"]}",',
            "}",
        ]
    )


def demo_summary(url: str) -> str:
    """What ``--demo`` prints below its first line: the demo world's credentials and ids,
    the settings to paste, and where to see what X received."""
    app, user = DEMO_WORLD["apps"][0], DEMO_WORLD["users"][0]
    account = DEMO_WORLD["accounts"][0]
    pixel = account["pixels"][0]
    tags = [f"{t['name']} ({t['type']}): event id {t['website_tag_id']}" for t in account["tags"]]
    rows = [
        ("consumer key", app["consumer_key"]),
        ("consumer secret", app["consumer_secret"]),
        ("user", f"@{user['screen_name']} (user id {user['user_id']})"),
        ("access token", user["access_token"]),
        ("access token secret", user["access_token_secret"]),
        ("ad account id", f"{account['account_id']} ({account['name']})"),
        ("pixel id", f"{pixel['pixel_id']} (pixel token {pixel['pixel_token']})"),
        ("event tags", tags[0]),
        *(("", tag) for tag in tags[1:]),
        ("Connect with X", "PIN, or a callback on 127.0.0.1, localhost or [::1], any port"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(
        [
            "",
            "Demo world (for local development; every value here is public):",
            *(f"  {label.ljust(width)}{value}".rstrip() for label, value in rows),
            "",
            "Settings to paste into your settings.py:",
            "",
            demo_settings(url),
            "",
            f"What X received: {url}/_emulator/pixels/{pixel['pixel_id']}"
            f" (JSON: {url}/_emulator/received)",
            "Ctrl-C stops the emulator; --json prints the demo world as JSON instead.",
        ]
    )
