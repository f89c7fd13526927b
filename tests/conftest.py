"""Shared fixtures: the emulator on loopback and a matching local account, pixel and tags."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from requests_oauthlib import OAuth1

from django_xconversions import clock as product_clock
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel
from tests import mail_scan
from tests.helpers import ShiftedClock

pytest_plugins = ["tests.browser"]

CONSUMER_KEY = "test-consumer-key"
CONSUMER_SECRET = "test-consumer-secret"
USER_ID = "756201191646691328"
ACCESS_TOKEN = f"{USER_ID}-access-token"
ACCESS_TOKEN_SECRET = "access-token-secret"
ACCOUNT_ID = "18ce54d4x5t"
PIXEL_ID = "o8z6j"
# Signs a request as the test app and user (the emulator fixture knows both).
AUTH = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_TOKEN_SECRET)

# Marked `serial`: `make test` (tests/run_suite.py) runs them alone, after the rest of the
# suite has run on two pytest-xdist workers. Entries are node ids or their prefixes (a
# module, a test and all its parameters). These assert on the order in which concurrent
# requests arrive or on a wall-time bound a fraction of a second above the wait they time:
# CPU taken by the other worker can break them (the fairness order did). The multi-process
# load and fault tests (worker processes, PostgreSQL restarts, benches, SQLite lock
# timeouts, real-time leases) passed two at a time on a loaded machine: they stay parallel.
SERIAL = (
    "tests/test_fairness.py",
    "tests/test_client.py::test_timeout_is_request_timeout",
    "tests/test_emulator.py::test_scripted_faults_then_ok",
)


def _listed(nodeid: str, entries: tuple[str, ...]) -> bool:
    return any(nodeid == e or nodeid.startswith((f"{e}::", f"{e}[")) for e in entries)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _listed(item.nodeid, SERIAL):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _no_raw_identifier_in_outgoing_mail() -> Iterator[None]:
    """After every test: no mail sent (ADMINS error reports above all) holds a raw email
    address or phone number."""
    yield
    from django.core import mail

    mail_scan.fail_on_identifiers(getattr(mail, "outbox", []))


@pytest.fixture
def clock() -> Iterator[ShiftedClock]:
    """The product's clock, moved forward by ``clock.advance(seconds)`` (and the emulated
    X's, when the test uses ``emulator``): a lease, a rate-limit window or a retry is over
    without waiting for it."""
    shifted = ShiftedClock()
    with product_clock.use(shifted):
        yield shifted


@pytest.fixture
def emulator(settings: Any, clock: ShiftedClock) -> Iterator[EmulatorServer]:
    """A running emulator that knows the test app, user, account and pixel; its clock is
    the test's (``clock``), so X's time and ours move together."""
    emu = EmulatorServer(host="127.0.0.1", port=0, clock=clock)
    emu.add_app(CONSUMER_KEY, CONSUMER_SECRET)
    emu.add_user(USER_ID, ACCESS_TOKEN, ACCESS_TOKEN_SECRET, screen_name="shop")
    emu.add_account(ACCOUNT_ID, name="Shop", users={USER_ID: ["ACCOUNT_ADMIN"]})
    emu.add_pixel(ACCOUNT_ID, PIXEL_ID)
    emu.start()
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "API_BASE_URL": emu.url,
        "OAUTH_BASE_URL": emu.url,
        "CONSUMER_KEY": CONSUMER_KEY,
        "CONSUMER_SECRET": CONSUMER_SECRET,
    }
    try:
        yield emu
    finally:
        emu.stop()


def configure(settings: Any, **values: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, **values}


@pytest.fixture
def account(db: None) -> AdAccount:
    account = AdAccount(account_id=ACCOUNT_ID, name="Shop")
    account.set_tokens(ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
    account.save()
    return account


@pytest.fixture
def pixel(account: AdAccount) -> Pixel:
    return Pixel.objects.create(pixel_id=PIXEL_ID, account=account, name="Shop pixel")


def mirror_tag(emulator: EmulatorServer, pixel: Pixel, key: str, tag_type: str) -> EventTag:
    """Create a tag in the emulator and the same tag locally."""
    remote = emulator.add_tag(pixel.account.account_id, name=key.title(), type=tag_type)
    return EventTag.objects.create(
        account=pixel.account,
        pixel=pixel,
        remote_id=remote["id"],
        website_tag_id=remote["website_tag_id"],
        key=key,
        name=remote["name"],
        type=tag_type,
        raw=remote,
    )


@pytest.fixture
def purchase_tag(emulator: EmulatorServer, pixel: Pixel) -> EventTag:
    return mirror_tag(emulator, pixel, "purchase", "PURCHASE")


@pytest.fixture
def tag(pixel: Pixel) -> EventTag:
    """A local purchase tag (no emulator): what track("purchase", ...) routes to."""
    return EventTag.objects.create(
        account=pixel.account,
        pixel=pixel,
        remote_id="o3bk1",
        website_tag_id="ny3od",
        key="purchase",
        name="Purchase",
        type=EventTag.Type.PURCHASE,
    )


@pytest.fixture
def shop_tags(pixel: Pixel) -> dict[str, EventTag]:
    """Local purchase and sign_up tags, the keys the test shop's SOURCES use."""
    tags = {}
    for number, (key, tag_type) in enumerate(
        (
            ("purchase", EventTag.Type.PURCHASE),
            ("sign_up", EventTag.Type.SIGN_UP),
        )
    ):
        tags[key] = EventTag.objects.create(
            account=pixel.account,
            pixel=pixel,
            remote_id=f"r{number}",
            website_tag_id=f"w{number}",
            key=key,
            name=key,
            type=tag_type,
        )
    return tags


def make_conversions(
    tag: EventTag, count: int, *, start: int = 0, **fields: Any
) -> list[Conversion]:
    """Pending conversions with a twclid, created in bulk (no signals)."""
    now = timezone.now()
    rows = [
        Conversion(
            event_tag=tag,
            pixel_id=tag.pixel_id,
            conversion_time=now - dt.timedelta(minutes=1),
            conversion_id=f"order:{n}",
            twclid=f"click{n}",
            value=fields.get("value"),
            currency=fields.get("currency", ""),
            next_attempt_at=now - dt.timedelta(seconds=1),
        )
        for n in range(start, start + count)
    ]
    return Conversion.objects.bulk_create(rows, batch_size=500)


def received_ids(emulator: EmulatorServer) -> list[str]:
    return [r["conversion"]["conversion_id"] for r in emulator.received]
