"""Regenerate the README's screenshots (``make screenshots``): docs/screenshots/*.png.

Starts the example shop with two weeks of history on a throwaway SQLite database, the
local X emulator and a sender (tests/helpers/showcase.py, shared with the browser test of
these pages), makes a purchase in the shop with Debian's Chromium, and captures each page
of the tour at 1366 px wide. Everything started is stopped on the way out; nothing
leaves this machine.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.helpers.showcase import running_shop, tour  # noqa: E402

OUTPUT = ROOT / "docs" / "screenshots"


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        print(f"{CHROMIUM} is not installed (apt-get install chromium).", file=sys.stderr)
        return 1
    # SIGTERM unwinds like Ctrl-C, so the servers this started are stopped either way.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        # Taken into a scratch directory first: a failed run leaves the pictures as they were.
        taken = []
        with running_shop(Path(scratch)) as shop, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(30_000)
                for stop in tour(page, shop.url):
                    if stop.capture is not None:
                        taken.append(Path(scratch) / f"{stop.name}.png")
                        stop.capture(page, taken[-1])
            finally:
                browser.close()
        OUTPUT.mkdir(parents=True, exist_ok=True)
        for path in taken:
            shutil.move(path, OUTPUT / path.name)
            print(f"wrote {(OUTPUT / path.name).relative_to(ROOT)}")
    print(f"{len(taken)} screenshots in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
