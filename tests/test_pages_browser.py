"""Every page people see, in Chromium at 1366 px, with two weeks of history: the shop
from landing to a paid order with its conversion sent, then the admin's conversions
(with the health panel), match readiness, a conversion, delivery attempts, event tags
and one deleted on X, ad accounts, an account and Connect with X.
No page may log a console error, throw, or be wider than the window; nor may a box
inside it hide content sideways (a scrolling table, text cut off, a cell spilling over).

The same tour, on the same data, makes the README's screenshots (``make screenshots``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser import overflow, screenshot, watch_console
from tests.helpers.showcase import WIDTH, running_shop, tour

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Content wider than its box, by element (tag, id and classes) and problem: a box that
# scrolls sideways (the changelist's table hiding columns behind a scroll bar), text cut
# off, or a table cell spilling into the next column. Text shortened on purpose (an
# ellipsis, the full value in its title) is fine.
TOO_WIDE = """() => {
  const found = new Map();
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className.trim()
       ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  for (const el of document.querySelectorAll("body *")) {
    const hidden = el.scrollWidth - el.clientWidth;
    if (hidden <= 1 || el.clientWidth <= 1) continue;  // 1 px: text for screen readers only
    if (el.closest(".visually-hidden")) continue;  // the admin's headings for screen readers
    const style = getComputedStyle(el);
    let problem;
    if (["auto", "scroll"].includes(style.overflowX)) {
      if (el.tagName === "PRE") continue;  // a block of code may scroll
      problem = "scrolls sideways, hiding";
    }
    else if (style.textOverflow === "ellipsis" || !el.innerText.trim()) continue;
    else if (["hidden", "clip"].includes(style.overflowX)) problem = "cuts off text of";
    else if (["TD", "TH"].includes(el.tagName)) problem = "spills into the next column by";
    else continue;
    const key = name(el) + " " + problem;
    found.set(key, Math.max(found.get(key) || 0, hidden));
  }
  return Array.from(found);
}"""


def width_problems(page: Any) -> list[str]:
    problems = []
    wider = overflow(page)
    if wider > 0:
        problems.append(f"the page is {wider} px wider than the {WIDTH} px window")
    for problem, pixels in page.evaluate(TOO_WIDE):
        problems.append(f"{problem} {pixels} px")
    return problems


def test_every_page_people_see_fits_and_has_no_errors(page: Any, tmp_path: Path) -> None:
    errors = watch_console(page)
    page.set_default_timeout(30_000)
    failures: list[str] = []
    seen = []
    with running_shop(tmp_path) as shop:
        for stop in tour(page, shop.url):
            seen.append(stop.name)
            problems = errors[:] + width_problems(page)
            errors.clear()
            if problems:
                screenshot(page, f"pages-{stop.name}")  # in test-artifacts/
                failures += [f"{stop.name} ({page.url}): {problem}" for problem in problems]
    assert seen == [
        "shop-home",
        "shop-sign-up",
        "shop-welcome",
        "shop-products",
        "shop-cart",
        "shop-order",
        "shop-confirmation",
        "admin-conversions",
        "health-panel",
        "match-readiness",
        "admin-conversion",
        "admin-attempts",
        "admin-tags",
        "admin-tag",
        "admin-accounts",
        "admin-account",
        "admin-connect",
    ]
    assert not failures, "\n".join(failures)
