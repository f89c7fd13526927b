"""The emulator's state: apps, users, accounts, pixels, tags, budgets and what X received."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# What the emulator asks for the time: seconds since the epoch, as time.time() answers.
Clock = Callable[[], float]

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
CLICK_WINDOWS = (1, 7, 14, 30)
VIEW_THROUGH_WINDOWS = (0, 1, 7, 14, 30)
SENDING_PERMISSIONS = frozenset({"AD_MANAGER", "ACCOUNT_ADMIN"})
DEFAULT_BUDGET_EVENTS = 60_000
DEFAULT_BUDGET_WINDOW = 900.0
# User-level limit on requests (X's reference: 100,000 requests per 15 minutes).
USER_REQUEST_LIMIT = 100_000
# Nonces older than this are forgotten (twice the 300 s timestamp tolerance).
NONCE_HORIZON = 600


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
    # The event source (pixel) the event was created in; None: any pixel of the account.
    pixel_id: str | None = None
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
    """Everything the emulated X knows.

    Writes go through ``lock``; hot-path reads of single dict entries (tags, pixels, tokens)
    do not need it.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self.lock = threading.RLock()
        # Every "now" of the emulated X (rate-limit windows, OAuth timestamps and nonces,
        # request-token expiry): tests pass a clock they move instead of sleeping.
        self.clock = clock
        self.apps: dict[str, str] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, User] = {}
        self.accounts: dict[str, Account] = {}
        self.pixels: dict[str, Pixel] = {}
        self.budget_events = DEFAULT_BUDGET_EVENTS
        self.budget_window = DEFAULT_BUDGET_WINDOW
        self.event_windows: dict[str, Window] = {}
        self.request_windows: dict[str, Window] = {}
        # (consumer key, token, timestamp, nonce) -> timestamp; pruned once too old to replay.
        self.seen_nonces: dict[tuple[str, str, str, str], int] = {}
        self.nonces_pruned_at = clock()
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
        pixel_id: str | None = None,
        id: str | None = None,
        website_tag_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a tag as X would; ``id`` and ``website_tag_id`` pin ids (fixed demo worlds)."""
        # Seeding mistakes fail loudly here rather than as puzzling API answers later.
        if type not in TAG_TYPES:
            raise ValueError(f"unknown tag type {type!r}; X's types are {TAG_TYPES}")
        if click_window not in CLICK_WINDOWS or view_through_window not in VIEW_THROUGH_WINDOWS:
            raise ValueError("click_window or view_through_window is not one of X's values")
        if view_through_window > click_window:
            raise ValueError("view_through_window must be less than or equal to click_window")
        with self.lock:
            account = self.accounts[account_id]
            pixel = self.pixels.get(pixel_id) if pixel_id is not None else None
            if pixel_id is not None and (pixel is None or pixel.account_id != account_id):
                raise KeyError(f"pixel {pixel_id} is not a pixel of account {account_id}")
            for fixed in (id, website_tag_id):
                if fixed is not None and fixed in self.used_ids:
                    raise ValueError(f"id {fixed} is already taken")
            tag = Tag(
                id=id or self._unused_id(),
                website_tag_id=website_tag_id or self._unused_id(),
                account_id=account_id,
                name=name,
                type=type,
                click_window=click_window,
                view_through_window=view_through_window,
                retargeting_enabled=retargeting_enabled,
                pixel_id=pixel_id,
                created_at=self.clock(),
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

    # Plain dict reads: atomic under the GIL, so validation runs without the lock.
    def live_tag(self, event_id: str) -> Tag | None:
        """The non-deleted tag whose event id (website_tag_id) is ``event_id``, if any."""
        tag = self.tags_by_event_id.get(event_id)
        return None if tag is None or tag.deleted else tag

    def remember_nonce(self, key: tuple[str, str, str, str], timestamp: int, now: float) -> bool:
        """False if ``key`` was seen before (a replay). Old nonces are forgotten: their
        timestamps are outside the tolerance, so a replay of them fails anyway."""
        with self.lock:
            if key in self.seen_nonces:
                return False
            if now - self.nonces_pruned_at > 60:
                horizon = now - NONCE_HORIZON
                self.seen_nonces = {k: t for k, t in self.seen_nonces.items() if t >= horizon}
                self.nonces_pruned_at = now
            self.seen_nonces[key] = timestamp
            return True

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
        """Keep an accepted batch; the caller holds ``lock``."""
        event_ids = {str(c["event_id"]) for c in conversions}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        for event_id in event_ids:
            tag = self.live_tag(bare_event_id(event_id, pixel.pixel_id))
            if tag is not None:
                # Emulator choice: X flips a tag to TRACKING 12 to 24 hours after its first
                # event; here it happens at once, so the change is observable in tests.
                tag.status, tag.last_tracked_at = "TRACKING", stamp
        full = self.record_mode == "full"
        pixel_id, account_id = pixel.pixel_id, pixel.account_id
        self.received.extend(
            {
                "pixel_id": pixel_id,
                "account_id": account_id,
                "event_id": conversion["event_id"],
                "conversion": (
                    conversion if full else {"conversion_id": conversion.get("conversion_id")}
                ),
                "debug_id": debug_id,
                "received_at": now,
            }
            for conversion in conversions
        )

    def conversion_requests(
        self, pixel_id: str | None = None, after: float | None = None
    ) -> list[dict[str, Any]]:
        """Logged conversions requests in order of arrival, of ``pixel_id`` if given, that
        arrived after ``after`` (a time.monotonic() value) if given."""
        with self.lock:
            entries = sorted(self.requests, key=lambda e: e["monotonic"])
        return [
            entry
            for entry in entries
            if entry["pixel_id"] is not None
            and (pixel_id is None or entry["pixel_id"] == pixel_id)
            and (after is None or entry["monotonic"] > after)
        ]

    def reset_records(self) -> None:
        with self.lock:
            self.received.clear()
            self.requests.clear()


def bare_event_id(event_id: str, pixel_id: str) -> str:
    """``tw-<pixel>-<event>`` and ``<event>`` name the same event (for this pixel only)."""
    prefix = f"tw-{pixel_id}-"
    return event_id[len(prefix) :] if event_id.startswith(prefix) else event_id
