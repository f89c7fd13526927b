"""The example project with two weeks of history, and a tour of the pages people see.

Shared by ``make screenshots`` (docs/screenshots.py) and tests/test_pages_browser.py, so
the pictures in the README and the browser check show the same pages with the same data:

- :func:`running_shop` starts the emulator (the demo world, told to reject the orders
  ``demo_history`` leaves for X to refuse), migrates a throwaway SQLite database, sets up
  the demo account, tags and admin user (``run_shop --no-serve``), records the history
  (``demo_history``), then runs ``runserver`` and a ``send_conversions --loop`` worker
  (looking for due rows every fraction of a second: ``quick_sender``) on free loopback
  ports; everything it started is stopped on the way out, error or not.
- :func:`tour` goes through the shop to a paid order (waiting until the worker has sent
  its conversion), then logs into the admin; it stops at each page, named as its
  screenshot file (the pages the README shows no picture of are checked all the same).

Nothing here reaches the internet: X's pixel script (uwt.js) is answered with an empty
script inside the browser.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django_xconversions.emulator import EmulatorServer, demo_world, seed
from tests.helpers.example_project import (
    MANAGE_PY,
    example_env,
    free_port,
    manage,
    quick_sender,
    stop,
    wait_listening,
)

WIDTH, HEIGHT = 1366, 900
# Orders of demo_history's that X refuses (it names them order-<days ago>-<n>).
REJECTED_BY_X = ["order-0-2", "order-9-12"]
# Tags the shop has set up on X beside the demo world's purchase and sign-up; the last
# is deleted on X once the shop has synced it (the admin flags it, keeping its key).
MORE_TAGS = [
    {"id": "o3bk3", "website_tag_id": "ny3of", "name": "Add to cart", "type": "ADD_TO_CART"},
    {"id": "o3bk4", "website_tag_id": "ny3og", "name": "Checkout", "type": "CHECKOUT_INITIATED"},
    {"id": "o3bk5", "website_tag_id": "ny3oh", "name": "Spring sale", "type": "SITE_VISIT"},
]
DELETED_ON_X = "Spring sale"
ADMIN_LOGIN = ("admin", "admin")  # what run_shop creates
# A visitor from an ad; the shop keeps the twclid for the conversions it records.
TWCLID = "26l1b2rn9ndm8q7x2mcqw4lvbt"
SENT_WITHIN = 60.0  # seconds: the worker polls every QUICK_POLL_SECONDS


@dataclass(frozen=True)
class Shop:
    url: str
    emulator: EmulatorServer


def _spawn(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, str(MANAGE_PY), *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _delete_on_x(emulator: EmulatorServer, name: str) -> None:
    with emulator.world.lock:
        for account in emulator.world.accounts.values():
            for tag in account.tags.values():
                if tag.name == name:
                    tag.deleted = True


@contextmanager
def running_shop(workdir: Path | None = None) -> Iterator[Shop]:
    """The example shop with its history, its emulator and its sender (see above)."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        world = demo_world()
        world["reject_conversion_ids"] = REJECTED_BY_X
        world["accounts"][0]["tags"] += MORE_TAGS
        emulator = EmulatorServer(host="127.0.0.1", port=0)
        seed(emulator, world)
        emulator.start()
        stack.callback(emulator.stop)
        env = example_env(workdir / "shop.sqlite3", X_API_BASE_URL=emulator.url)
        manage(env, "run_shop", "--no-serve", "--no-emulator")
        log = workdir / "servers.log"
        port = free_port()
        # The web server starts up while the history is recorded (it serves nothing yet).
        server = _spawn(env, log, "runserver", f"127.0.0.1:{port}", "--noreload")
        stack.callback(stop, server)
        _delete_on_x(emulator, DELETED_ON_X)
        manage(env, "demo_history")  # syncs the tags again
        worker = _spawn(quick_sender(env, workdir), log, "send_conversions", "--loop")
        stack.callback(stop, worker)
        try:
            wait_listening(port, server)
            yield Shop(f"http://127.0.0.1:{port}", emulator)
        except Exception:
            # What the web server and the worker said, before their directory goes.
            print(f"{log}:\n{log.read_text(errors='replace')[-4000:]}", file=sys.stderr)
            raise


def offline(page: Any) -> None:
    """X's pixel script answered inside the browser: twq() keeps its calls in a queue."""
    page.route(
        "https://static.ads-twitter.com/**",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=""),
    )


def log_in(page: Any, site: str) -> None:
    username, password = ADMIN_LOGIN
    page.goto(f"{site}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


# How a page's screenshot is taken, into the file it is given.
Capture = Callable[[Any, Path], None]


def whole_page(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)


def window(page: Any, path: Path) -> None:
    page.screenshot(path=str(path))


def element(selector: str) -> Capture:
    def capture(page: Any, path: Path) -> None:
        page.locator(selector).first.screenshot(path=str(path))

    return capture


def band(start: str, *, end: str = "", height: int = HEIGHT) -> Capture:
    """The page's whole width, from the top of ``start`` to the bottom of ``end``, or
    ``height`` pixels (the admin's header and menus left out)."""

    def capture(page: Any, path: Path) -> None:
        top = max(0, page.locator(start).first.bounding_box()["y"] - 16)
        if end:
            box = page.locator(end).first.bounding_box()
            bottom = box["y"] + box["height"] + 16
        else:
            bottom = top + height
        clip = {"x": 0, "y": top, "width": WIDTH, "height": int(bottom - top)}
        page.screenshot(path=str(path), full_page=True, clip=clip)

    return capture


@dataclass(frozen=True)
class Stop:
    """One page of the tour: its name and how its screenshot is taken (None: the README
    shows no picture of it, but it is checked all the same)."""

    name: str
    capture: Capture | None


def shop_pages(page: Any, site: str) -> Iterator[Stop]:
    """A visitor from an ad signs up, buys two products and pays; the tour stays on the
    confirmation until its conversion panel says "Sent" (the worker sent it to X)."""
    page.goto(f"{site}/?twclid={TWCLID}")
    yield Stop("shop-home", whole_page)
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Email").wait_for()
    yield Stop("shop-sign-up", None)
    page.get_by_label("Email").fill("jane.doe@example.com")
    page.get_by_label("Phone").fill("(415) 555-0123")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    yield Stop("shop-welcome", None)
    for index, quantity in ((0, "2"), (1, "1")):
        page.goto(f"{site}/products/")
        product = page.locator("form.product").nth(index)
        product.get_by_label("Quantity").fill(quantity)
        with page.expect_navigation():
            product.get_by_role("button", name="Add to cart").click()
    yield Stop("shop-products", None)
    page.goto(f"{site}/cart/")
    yield Stop("shop-cart", None)
    page.get_by_role("button", name="Check out").click()
    page.get_by_role("button", name="Pay").wait_for()
    yield Stop("shop-order", None)
    page.get_by_role("button", name="Pay").click()
    page.get_by_role("heading", name=re.compile("Thank you")).wait_for()
    page.locator('#conversion [data-status="sent"]').wait_for(timeout=SENT_WITHIN * 1000)
    yield Stop("shop-confirmation", whole_page)


def admin_pages(page: Any, site: str, conversion_id: str) -> Iterator[Stop]:
    log_in(page, site)
    admin = f"{site}/admin/xconversions"
    page.goto(f"{admin}/conversion/")
    page.locator("#result_list").wait_for()
    yield Stop("admin-conversions", band("#changelist", height=760))
    yield Stop("health-panel", element("#xconv-health"))

    page.locator("#nav-sidebar a", has_text="Match readiness").click()
    page.locator("#xconv-readiness").wait_for()
    yield Stop("match-readiness", window)

    page.goto(f"{admin}/conversion/?q={conversion_id}")
    exactly = re.compile(f"^{re.escape(conversion_id)}$")
    page.locator("#result_list tbody th a", has_text=exactly).click()
    page.wait_for_url(re.compile(r"/conversion/\d+/change/"))
    yield Stop("admin-conversion", band("#content", end="#xconv-attempts-group"))

    page.locator("#nav-sidebar a", has_text="Delivery attempts").click()
    page.locator("#result_list").wait_for()
    yield Stop("admin-attempts", None)

    page.locator("#nav-sidebar a", has_text="Event tags").click()
    page.locator("#result_list").wait_for()
    yield Stop("admin-tags", None)
    page.locator("#result_list").get_by_role("link", name=DELETED_ON_X).click()
    page.wait_for_url(re.compile(r"/eventtag/\d+/change/"))
    yield Stop("admin-tag", band("body"))

    page.locator("#nav-sidebar a", has_text="Ad accounts").click()
    page.locator("#result_list").wait_for()
    yield Stop("admin-accounts", None)
    page.locator("#result_list").get_by_role("link", name=re.compile("^Demo shop")).click()
    page.get_by_role("button", name="Check access").click()
    page.locator("ul.messagelist").wait_for()
    yield Stop("admin-account", None)

    page.locator("#content").get_by_role("link", name="Connect with X").click()
    page.locator("#id_account").wait_for()
    yield Stop("admin-connect", band("body"))


def tour(page: Any, site: str) -> Iterator[Stop]:
    """Each page people see, opened in ``page`` at 1366 px wide, in turn (the page is on
    it while the caller looks): the shop from landing to the paid order, then the admin."""
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    offline(page)
    yield from shop_pages(page, site)
    conversion_id = str(page.locator("#conversion .conversion-id").inner_text()).strip()
    yield from admin_pages(page, site, conversion_id)
