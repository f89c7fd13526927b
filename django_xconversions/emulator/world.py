"""The emulator's state: apps, users, accounts, pixels, tags, budgets and what X received."""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
TAG_TYPES = (
    "ADDED_PAYMENT_INFO",
    "ADD_TO_CART",
    "ADD_TO_WISHLIST",
    "CHECKOUT_INITIATED",
    "CONTENT_VIEW",
    "CUSTOM",
    "DOWNLOAD",
    "PRODUCT_CUSTOMIZATION",
    "PURCHASE",
    "SEARCH",
    "SIGN_UP",
    "SITE_VISIT",
    "START_TRIAL",
    "SUBSCRIBE",
)
SENDING_PERMISSIONS = frozenset({"AD_MANAGER", "ACCOUNT_ADMIN"})
DEFAULT_BUDGET_EVENTS = 60_000
DEFAULT_BUDGET_WINDOW = 900.0
# User-level limit on requests (X's reference: 100,000 requests per 15 minutes).
USER_REQUEST_LIMIT = 100_000


def new_base36_id(length: int = 5) -> str:
    return "".join(secrets.choice(BASE36) for _ in range(length))


def embed_code(website_tag_id: str) -> str:
    query = f"txn_id={website_tag_id}&p_id=Twitter&tw_sale_amount=0&tw_order_quantity=0"
    image = '<img height="1" width="1" style="display:none;" alt="" src="{}" />'
    amounts = "{ tw_sale_amount: 0, tw_order_quantity: 0 }"
    track = f"twttr.conversion.trackPid('{website_tag_id}',  {amounts});"
    return (
        '<script src="//platform.x.com/oct.js" type="text/javascript"></script>'
        f'<script type="text/javascript">{track}</script><noscript>'
        + image.format(f"https://analytics.x.com/i/adsct?{query}")
        + image.format(f"//t.co/i/adsct?{query}")
        + "</noscript>"
    )


@dataclass
class Tag:
    id: str
    website_tag_id: str
    account_id: str
    name: str
    type: str
    click_window: int
    view_through_window: int
    retargeting_enabled: bool
    status: str = "UNVERIFIED"
    last_tracked_at: str | None = None
    deleted: bool = False
    created_at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "view_through_window": self.view_through_window,
            "click_window": self.click_window,
            "embed_code": embed_code(self.website_tag_id),
            "id": self.id,
            "retargeting_enabled": self.retargeting_enabled,
            "last_tracked_at": self.last_tracked_at,
            "status": self.status,
            "type": self.type,
            "website_tag_id": self.website_tag_id,
            "deleted": self.deleted,
        }


@dataclass
class User:
    user_id: str
    access_token: str
    access_token_secret: str
    screen_name: str = ""


@dataclass
class Account:
    account_id: str
    name: str
    users: dict[str, list[str]]
    tags: dict[str, Tag] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.account_id,
            "name": self.name,
            "approval_status": "ACCEPTED",
            "timezone": "Etc/UTC",
            "deleted": False,
        }


@dataclass
class Pixel:
    pixel_id: str
    account_id: str
    pixel_token: str | None = None


@dataclass
class Window:
    """A fixed rate-limit window that starts with its first request."""

    started: float
    length: float
    used: int = 0

    @property
    def reset_at(self) -> int:
        # Rounded up: a client that waits until the announced reset is never early.
        return math.ceil(self.started + self.length)


class World:
    """Everything the emulated X knows. All access goes through ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, str] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, User] = {}
        self.accounts: dict[str, Account] = {}
        self.pixels: dict[str, Pixel] = {}
        self.budget_events = DEFAULT_BUDGET_EVENTS
        self.budget_window = DEFAULT_BUDGET_WINDOW
        self.event_windows: dict[str, Window] = {}
        self.request_windows: dict[str, Window] = {}
        self.seen_nonces: set[tuple[str, str, str, str]] = set()
        self.rejected_conversion_ids: set[str] = set()
        self.used_ids: set[str] = set()  # tag, event and pixel ids handed out
        self.tags_by_event_id: dict[str, Tag] = {}
        self.record_mode = "full"
        self.received: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []

    # -- seeding ---------------------------------------------------------------------------

    def add_app(self, consumer_key: str, consumer_secret: str) -> None:
        with self.lock:
            self.apps[consumer_key] = consumer_secret

    def add_user(
        self, user_id: str, access_token: str, access_token_secret: str, screen_name: str = ""
    ) -> None:
        with self.lock:
            user = User(user_id, access_token, access_token_secret, screen_name)
            self.users[user_id] = user
            self.tokens[access_token] = user

    def add_account(
        self, account_id: str, name: str = "", users: dict[str, list[str]] | None = None
    ) -> None:
        with self.lock:
            self.accounts[account_id] = Account(account_id, name or account_id, dict(users or {}))

    def add_pixel(self, account_id: str, pixel_id: str, pixel_token: str | None = None) -> None:
        with self.lock:
            if account_id not in self.accounts:
                raise KeyError(f"unknown account {account_id}")
            self.pixels[pixel_id] = Pixel(pixel_id, account_id, pixel_token)
            self.used_ids.add(pixel_id)

    def add_tag(
        self,
        account_id: str,
        *,
        name: str,
        type: str = "PURCHASE",
        click_window: int = 30,
        view_through_window: int = 1,
        retargeting_enabled: bool = False,
        id: str | None = None,
        website_tag_id: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            account = self.accounts[account_id]
            tag = Tag(
                id=id or self._unused_id(),
                website_tag_id=website_tag_id or self._unused_id(),
                account_id=account_id,
                name=name,
                type=type,
                click_window=click_window,
                view_through_window=view_through_window,
                retargeting_enabled=retargeting_enabled,
            )
            account.tags[tag.id] = tag
            self.tags_by_event_id[tag.website_tag_id] = tag
            self.used_ids.update((tag.id, tag.website_tag_id))
            return tag.as_json()

    def _unused_id(self) -> str:
        while True:
            candidate = new_base36_id()
            if candidate not in self.used_ids:
                self.used_ids.add(candidate)
                return candidate

    def set_budget(self, events: int, window_seconds: float) -> None:
        with self.lock:
            self.budget_events = events
            self.budget_window = window_seconds
            self.event_windows.clear()

    # -- lookups ---------------------------------------------------------------------------

    def tag_by_event_id(self, account_id: str, event_id: str) -> Tag | None:
        tag = self.tags_by_event_id.get(event_id)
        if tag is None or tag.deleted or tag.account_id != account_id:
            return None
        return tag

    def any_tag_with_event_id(self, event_id: str) -> Tag | None:
        tag = self.tags_by_event_id.get(event_id)
        return None if tag is None or tag.deleted else tag

    # -- rate limits -----------------------------------------------------------------------

    def _window(self, windows: dict[str, Window], key: str, length: float, now: float) -> Window:
        window = windows.get(key)
        if window is None or now >= window.started + window.length:
            window = windows[key] = Window(now, length)
        return window

    def event_window(self, account_id: str, now: float) -> Window:
        return self._window(self.event_windows, account_id, self.budget_window, now)

    def request_window(self, user_key: str, now: float) -> Window:
        return self._window(self.request_windows, user_key, DEFAULT_BUDGET_WINDOW, now)

    # -- records ---------------------------------------------------------------------------

    def record_conversions(
        self, pixel: Pixel, conversions: list[dict[str, Any]], debug_id: str, now: float
    ) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        for conversion in conversions:
            event_id = str(conversion["event_id"])
            tag = self.tag_by_event_id(pixel.account_id, _bare_event_id(event_id, pixel.pixel_id))
            if tag is not None:
                tag.status, tag.last_tracked_at = "TRACKING", stamp
            kept = (
                conversion
                if self.record_mode == "full"
                else {"conversion_id": conversion.get("conversion_id")}
            )
            self.received.append(
                {
                    "pixel_id": pixel.pixel_id,
                    "account_id": pixel.account_id,
                    "event_id": event_id,
                    "conversion": kept,
                    "debug_id": debug_id,
                    "received_at": now,
                }
            )

    def reset_records(self) -> None:
        with self.lock:
            self.received.clear()
            self.requests.clear()


def _bare_event_id(event_id: str, pixel_id: str) -> str:
    """``tw-<pixel>-<event>`` and ``<event>`` name the same event."""
    prefix = f"tw-{pixel_id}-"
    return event_id[len(prefix) :] if event_id.startswith(prefix) else event_id


bare_event_id = _bare_event_id
