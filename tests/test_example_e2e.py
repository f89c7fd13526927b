"""The example shop in Chromium, end to end: a visitor from an ad signs up, buys, pays;
send_conversions delivers to the emulator exactly what the visitor typed.

The shop runs as users run it (example_project/manage.py runserver: its settings, urls,
templates and SOURCES) on a temporary SQLite database, against an emulator started here
with the demo world."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_xconversions.emulator import EmulatorServer, demo_world, seed
from django_xconversions.emulator.world import bare_event_id
from tests.browser import screenshot
from tests.helpers.example_project import (
    EVIL,
    MANAGE_PY,
    example_env,
    free_port,
    manage,
    rows,
    stop,
    wait_listening,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TWCLID = "26l1b2rn9ndm8q7x2mcqw4lvbt"
PIXEL_ID = "o8z6j"
PURCHASE_EVENT, SIGN_UP_EVENT = "ny3od", "ny3oe"  # website_tag_id of the demo world's tags
QUEUE = "() => window.twq.queue.map((call) => Array.from(call))"


class Shop:
    def __init__(self, url: str, database: Path, env: dict[str, str], emulator: Any) -> None:
        self.url, self.database, self.env, self.emulator = url, database, env, emulator

    def conversion_ids(self) -> dict[str, str]:
        stored = rows(
            self.database,
            "SELECT t.key, c.conversion_id FROM xconversions_conversion c "
            "JOIN xconversions_eventtag t ON t.id = c.event_tag_id",
        )
        assert len(stored) == len(dict(stored)), stored
        return dict(stored)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    emulator = EmulatorServer(host="127.0.0.1", port=0)
    seed(emulator, demo_world())
    emulator.start()
    server = None
    try:
        database = tmp_path / "shop.sqlite3"
        env = example_env(database, X_API_BASE_URL=emulator.url)
        manage(env, "run_shop", "--no-serve", "--no-emulator")  # account, pixel, tags
        # Shop data is untrusted: a product named with markup, sold and sent as text.
        with sqlite3.connect(database) as connection:
            connection.execute(
                "INSERT INTO shop_product (sku, name, price, description) VALUES (?, ?, ?, '')",
                ("script-test", EVIL, "4.00"),
            )
        port = free_port()
        server = subprocess.Popen(  # noqa: S603
            [sys.executable, str(MANAGE_PY), "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_listening(port, server)
        yield Shop(f"http://127.0.0.1:{port}", database, env, emulator)
    finally:
        if server is not None:
            stop(server)
        emulator.stop()


def pixel_calls(page: Any) -> list[list[Any]]:
    calls: list[list[Any]] = page.evaluate(QUEUE)
    assert calls[0] == ["config", PIXEL_ID]
    return calls


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_visitor_from_an_ad_signs_up_and_buys(shop: Shop, page: Any) -> None:
    # X's uwt.js is not fetched: twq() then keeps its calls in twq.queue, for us to read.
    page.route(
        "https://static.ads-twitter.com/**",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=""),
    )
    page.goto(f"{shop.url}/?twclid={TWCLID}")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Email").fill("  Jane.Doe@Example.COM ")
    page.get_by_label("Phone").fill("(415) 555-0123")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Welcome, Jane.Doe@Example.COM").wait_for()
    sign_up_call = pixel_calls(page)[1]
    assert sign_up_call[:2] == ["event", f"tw-{PIXEL_ID}-{SIGN_UP_EVENT}"]
    assert sign_up_call[2] == {"conversion_id": shop.conversion_ids()["sign_up"]}

    page.get_by_role("link", name="Start shopping").click()
    blanket = page.locator("form.product", has_text="Blanket")
    blanket.get_by_label("Quantity").fill("2")
    blanket.get_by_role("button", name="Add to cart").click()
    page.get_by_role("link", name="Products").click()
    page.locator("form.product", has=page.get_by_text(EVIL, exact=True)).get_by_role(
        "button", name="Add to cart"
    ).click()
    page.get_by_text(EVIL, exact=True).wait_for()  # the cart shows it as text
    assert page.locator("#total").inner_text() == "$29.00"
    page.get_by_role("button", name="Check out").click()
    page.get_by_role("button", name="Pay").click()
    page.get_by_role("heading", name="Thank you!").wait_for()
    screenshot(page, "example-shop-confirmation")

    # The confirmation page's event carries the stored purchase's conversion_id.
    ids = shop.conversion_ids()
    event, event_id, parameters = pixel_calls(page)[1]
    assert (event, event_id) == ("event", f"tw-{PIXEL_ID}-{PURCHASE_EVENT}")
    assert parameters == {
        "conversion_id": ids["purchase"],
        "value": 29.0,
        "currency": "USD",
        "number_items": 3,
        "contents": [
            {
                "content_id": "blanket",
                "content_name": "Blanket",
                "content_price": 12.5,
                "num_items": 2,
            },
            {
                "content_id": "script-test",
                "content_name": EVIL,
                "content_price": 4.0,
                "num_items": 1,
            },
        ],
    }
    # Shop data never runs as code: in the page or in the pixel script.
    assert page.locator("td.item-name", has_text=EVIL).inner_text() == EVIL
    # Scripts: the pixel's base code, the uwt.js it loads, the event, and the shop's own
    # conversion panel; none from shop data.
    scripts = page.evaluate("() => Array.from(document.scripts, (s) => s.src || 'inline')")
    assert sorted(scripts) == [
        f"{shop.url}/static/shop/conversion-panel.js",
        "https://static.ads-twitter.com/uwt.js",
        "inline",
        "inline",
    ]
    assert page.dialogs == []

    assert "Sent: 2 in 1 request\n" in manage(shop.env, "send_conversions")
    received = {
        bare_event_id(r["event_id"], PIXEL_ID): r["conversion"] for r in shop.emulator.received
    }
    assert len(shop.emulator.received) == 2 and set(received) == {PURCHASE_EVENT, SIGN_UP_EVENT}
    identifiers = [
        {"twclid": TWCLID},
        {"hashed_email": sha256("jane.doe@example.com")},
        {"hashed_phone_number": sha256("+14155550123")},
    ]
    for key, event_id in (("sign_up", SIGN_UP_EVENT), ("purchase", PURCHASE_EVENT)):
        conversion = received[event_id]
        assert conversion["conversion_id"] == ids[key]
        assert conversion["identifiers"][:3] == identifiers, json.dumps(conversion)
        assert conversion["identifiers"][3]["ip_address"] == "127.0.0.1"
    purchase = received[PURCHASE_EVENT]
    assert (purchase["value"], purchase["price_currency"], purchase["number_items"]) == (
        "29.00",
        "USD",
        3,
    )
    assert purchase["contents"] == parameters["contents"]
    assert rows(shop.database, "SELECT status FROM xconversions_conversion") == [("sent",)] * 2
