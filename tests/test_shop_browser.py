"""The example shop as a visitor sees it, in Chromium at a laptop's width (1366 px) and a
phone's (375 px): no console error, nothing wider than the window, a menu that follows
the session, and after sign-up and payment a panel showing the conversion recorded for
X, which turns "Sent" by itself while a ``send_conversions --loop`` worker runs, with a
link to what the emulator (X) received. (The README's pictures come from make screenshots.)

The shop runs as users run it: ``example_project/manage.py runserver`` and a sender, on
a temporary SQLite database, against an emulator seeded with the demo world; the sender
looks for due conversions every fraction of a second, not every 5 s."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from django_xconversions.emulator import EmulatorServer, demo_world, seed
from tests.browser import screenshot
from tests.helpers.example_project import (
    MANAGE_PY,
    ROOT,
    example_env,
    free_port,
    manage,
    quick_sender,
    stop,
    wait_listening,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LAPTOP, PHONE = {"width": 1366, "height": 900}, {"width": 375, "height": 812}
TWCLID = "26l1b2rn9ndm8q7x2mcqw4lvbt"
# The sender polls every QUICK_POLL_SECONDS (quick_sender): a conversion is sent well
# within this, even on a loaded machine.
SENT_WITHIN_SECONDS = 45
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


class Shop:
    def __init__(self, url: str, emulator: EmulatorServer) -> None:
        self.url, self.emulator = url, emulator


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    emulator = EmulatorServer(host="127.0.0.1", port=0)
    seed(emulator, demo_world())
    emulator.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        database = tmp_path_factory.mktemp("shop") / "shop.sqlite3"
        env = example_env(database, X_API_BASE_URL=emulator.url)
        manage(env, "run_shop", "--no-serve", "--no-emulator")  # account, pixel, tags
        port = free_port()
        sender_env = quick_sender(env, database.parent)
        for command, command_env in (
            (["runserver", f"127.0.0.1:{port}", "--noreload"], env),
            (["send_conversions", "--loop"], sender_env),
        ):
            processes.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, str(MANAGE_PY), *command],
                    env=command_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        wait_listening(port, processes[0])
        yield Shop(f"http://127.0.0.1:{port}", emulator)
    finally:
        for process in processes:
            stop(process)
        emulator.stop()


@pytest.fixture
def visitor(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page at the test's viewport; console errors and uncaught exceptions collected in
    ``page.errors``. X's uwt.js is answered locally (no network in tests)."""
    context = chromium.new_context(viewport=request.param)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("console", lambda message: message.type == "error" and page.errors.append(message))
    page.on("pageerror", lambda error: page.errors.append(error))
    page.route(
        "https://static.ads-twitter.com/**",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=""),
    )
    try:
        yield page
    finally:
        context.close()


def fits(page: Any, where: str) -> None:
    assert page.evaluate(OVERFLOW) <= 0, f"{where} is wider than the window"


def menu(page: Any) -> Any:
    return page.get_by_role("navigation", name="Main")


def wait_for_sent(page: Any, deadline: float) -> None:
    """Until the panel (refreshed by the page itself) says Sent; fails at ``deadline``."""
    remaining_ms = max(1.0, deadline - time.monotonic()) * 1000
    page.locator("#conversion .badge[data-status='sent']").wait_for(timeout=remaining_ms)


@pytest.mark.parametrize("visitor", [LAPTOP, PHONE], indirect=True, ids=["1366px", "375px"])
def test_a_visitor_signs_up_buys_and_sees_the_conversions_sent(shop: Shop, visitor: Any) -> None:
    page = visitor
    page.goto(f"{shop.url}/?twclid={TWCLID}")
    page.get_by_role("heading", name="Everything your dog needs").wait_for()
    fits(page, "the home page")
    assert menu(page).get_by_role("link", name="Sign up").count() == 1
    assert menu(page).get_by_role("button", name="Sign out").count() == 0
    screenshot(page, f"shop-{page.viewport_size['width']}px-home")  # test-artifacts/

    page.goto(f"{shop.url}/products/")
    assert page.locator("form.product").count() == 6
    fits(page, "the products page")

    menu(page).get_by_role("link", name="Sign up").click()
    page.get_by_role("heading", name="Sign up").wait_for()
    fits(page, "the sign-up page")
    page.get_by_label("Email").fill("jane.doe@example.com")
    page.get_by_label("Phone").fill("(415) 555-0123")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Welcome, jane.doe@example.com").wait_for()
    # The menu follows the session.
    assert menu(page).get_by_role("link", name="Sign up").count() == 0
    assert menu(page).get_by_role("button", name="Sign out").count() == 1
    panel = page.locator("#conversion")
    assert panel.locator(".event").inner_text() == "Sign up"
    sign_up_id = panel.locator(".conversion-id").inner_text()
    assert sign_up_id.startswith("shop.customer:")
    fits(page, "the welcome page")
    wait_for_sent(page, time.monotonic() + SENT_WITHIN_SECONDS)
    assert "X accepted it at" in page.locator("#conversion .explanation").inner_text()

    page.get_by_role("link", name="Start shopping").click()
    blanket = page.locator("form.product", has_text="Blanket")
    blanket.get_by_label("Quantity").fill("2")
    blanket.get_by_role("button", name="Add to cart").click()
    assert page.locator("#total").inner_text() == "$25.00"
    fits(page, "the cart")
    page.get_by_role("button", name="Check out").click()
    page.get_by_role("button", name="Pay").wait_for()
    fits(page, "the order page")
    page.get_by_role("button", name="Pay").click()
    page.get_by_role("heading", name="Thank you!").wait_for()
    panel = page.locator("#conversion")
    assert panel.locator(".event").inner_text() == "Purchase"
    purchase_id = panel.locator(".conversion-id").inner_text()
    assert purchase_id.startswith("shop.order:")
    wait_for_sent(page, time.monotonic() + SENT_WITHIN_SECONDS)
    fits(page, "the confirmation page")
    screenshot(page, f"shop-{page.viewport_size['width']}px-confirmation")

    # The link to what X received opens the emulator's page for this conversion.
    link = page.get_by_role("link", name="What X received")
    href = link.get_attribute("href")
    assert href.startswith(f"{shop.emulator.url}/_emulator/pixels/o8z6j?conversion_id=")
    with page.context.expect_page() as opened:
        link.click()
    received = opened.value
    received.wait_for_load_state()
    # Its id in the conversions table and in the request log.
    assert received.get_by_role("cell", name=purchase_id, exact=True).count() == 2
    fits(received, "the emulator's page")
    received.close()
    assert {r["conversion"]["conversion_id"] for r in shop.emulator.received} >= {
        sign_up_id,
        purchase_id,
    }

    menu(page).get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Everything your dog needs").wait_for()
    assert menu(page).get_by_role("link", name="Sign up").count() == 1
    assert page.errors == []


def test_connect_with_x_from_a_project_on_any_loopback_port(shop: Shop, page: Any) -> None:
    """The shop's admin runs on a random port, not the one on the demo app's allowlist:
    demo mode approves the callback, and the account comes back connected."""
    assert f"{shop.url}/" not in str(demo_world()["apps"][0]["callback_urls"])
    page.goto(f"{shop.url}/admin/login/")
    page.fill("#id_username", "admin")  # what run_shop creates
    page.fill("#id_password", "admin")
    page.click("input[type=submit]")
    page.goto(f"{shop.url}/admin/xconversions/adaccount/connect/")
    account = page.locator("#id_account option", has_text="18ce54d4x5t").get_attribute("value")
    page.locator("#id_account").select_option(account)
    page.locator("#xconv-connect-form [type=submit]").click()
    page.wait_for_url(f"{shop.emulator.url}/oauth/authorize**")
    page.get_by_role("button", name="Authorize app").click()
    page.wait_for_url(f"{shop.url}/admin/**")
    messages = page.locator(".messagelist").inner_text()
    assert "is connected with X as @demo_shop" in messages, messages


def test_the_stylesheet_is_static_and_self_contained() -> None:
    css = (ROOT / "example_project" / "shop" / "static" / "shop" / "shop.css").read_text()
    assert "@import" not in css and "url(" not in css  # no CDN, no web fonts
