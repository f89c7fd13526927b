"""Command line: ``python -m django_xconversions.emulator --port 8765 [--demo] [--config FILE]``.

``--help`` describes the ``--config`` JSON format (CONFIG_FORMAT below) with an example.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from django_xconversions.emulator.demo import DEMO_WORLD, demo_summary, seed
from django_xconversions.emulator.server import EmulatorServer

CONFIG_FORMAT = """\
The --config file (JSON): every key is optional.
  "apps"      [{"consumer_key", "consumer_secret", "callback_urls": [...],
              "loopback_callbacks": true (demo mode, local development only: also
              approve any callback on 127.0.0.1, localhost or [::1], any port)}]
  "users"     [{"user_id", "access_token", "access_token_secret", "screen_name"}]
  "accounts"  [{"account_id", "name", "users": {user_id: ["ACCOUNT_ADMIN" | "AD_MANAGER"
              | ...]}, "pixels": [{"pixel_id", "pixel_token"}], "tags": [{"name", "type",
              "id", "website_tag_id", "pixel_id", "click_window", ...}]}]
  "pixels", "tags"  the same items at top level, each naming its "account_id"
  "budget"    {"events": 60000, "window_seconds": 900}: events per account per window
  "record"    "ids": keep only conversion_ids of what is received (long runs)
  "reject_conversion_ids"  [...]: a batch holding one of these is refused with a 400
  "faults"    what the conversions endpoint meets:
    "script"        faults for the next requests, one each, in order:
                    "ok", "500", "503", "429", "401", "403", "403_client_app",
                    "timeout", "reset"
                      "401"             401 UNAUTHORIZED_ACCESS (wrong credentials)
                      "403"             403 ACCOUNT_LOCKED_OUT (account without access)
                      "403_client_app"  403 UNAUTHORIZED_CLIENT_APPLICATION (app
                                        without Ads API access, X's message)
                      "timeout"         answer slow_seconds late, processed on arrival
                      "reset"           connection reset, nothing processed
    rates           once the script is used up, a random fault per request with these
                    probabilities (sum <= 1): "error_500", "error_503", "rate_limit"
                    (429), "error_401", "error_403", "error_403_client_app",
                    "timeout", "reset"; "seed" makes the draws repeatable
    "only_pixels"   [pixel ids]: faults hit only these pixels' requests; the others
                    are answered normally and consume neither script nor draws
    "delay_seconds" every conversions answer (refusals too) comes this many seconds
                    late, processed on arrival (e.g. 0.3); stopping cuts the wait
    "not_found_wording"  404 for an event id not in the account:
                    "parenthesized" (default)  event_id (abc) does not belong to
                                               provided account
                    "plain"                    event_id abc does not belong to
                                               provided account
    "slow_seconds" (2), "retry_after_seconds" (1, sent with 503),
    "rate_limit_reset_seconds" (2, a 429's reset), "slow_before_processing" (false),
    "all_endpoints" (false: faults hit the conversions endpoint only)

Example:
{"apps": [{"consumer_key": "ck", "consumer_secret": "cs"}],
 "users": [{"user_id": "1", "access_token": "1-tok", "access_token_secret": "ts"}],
 "accounts": [{"account_id": "18ce54d4x5t", "users": {"1": ["ACCOUNT_ADMIN"]},
               "pixels": [{"pixel_id": "o8z6j", "pixel_token": "ptk"}],
               "tags": [{"name": "Purchase", "type": "PURCHASE",
                         "website_tag_id": "ny3od"}]}],
 "budget": {"events": 60000, "window_seconds": 900},
 "faults": {"script": ["429", "401"], "only_pixels": ["o8z6j"],
            "error_403_client_app": 0.01, "seed": 7,
            "delay_seconds": 0.3, "not_found_wording": "plain"}}

Inspection (outside X's API): GET /_emulator/pixels/P (a page: what pixel P's
requests carried; ?conversion_id=C for one conversion), GET /_emulator/received?since=N,
GET /_emulator/stats, GET /_emulator/requests?pixel_id=P&after=T (the conversions request
log: pixel_id, monotonic arrival time, status, conversion_ids; T a time.monotonic()
value), POST /_emulator/reset.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's options; ``manage.py xads_emulator`` takes the same."""
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument("--port", type=int, default=8765, help="Port (0 picks a free one).")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="Seed the fixed demo world (local development: any loopback callback is "
        "approved) and print its credentials, ids and the settings to paste.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="With --demo: print the demo world as one line of JSON (for scripts) instead.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=(
            "JSON file: the world (apps, users, accounts with pixels and tags), budget, "
            'record mode and "faults" (script, rates, only_pixels, delay_seconds, '
            "not_found_wording, ...); format and example below."
        ),
    )
    parser.add_argument("--budget-events", type=int, help="Events per account per window.")
    parser.add_argument("--budget-window", type=float, help="Window length in seconds.")
    parser.add_argument("--record-ids-only", action="store_true", help="Keep only conversion ids.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m django_xconversions.emulator",
        description="A local emulator of the X Ads API (conversions, web event tags, accounts).",
        epilog=CONFIG_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> EmulatorServer:
    emulator = EmulatorServer(host=args.host, port=args.port)
    if args.demo:
        seed(emulator, DEMO_WORLD)
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            seed(emulator, json.load(handle))
    if args.budget_events or args.budget_window:
        emulator.set_budget(
            args.budget_events or emulator.world.budget_events,
            args.budget_window or emulator.world.budget_window,
        )
    if args.record_ids_only:
        emulator.record_ids_only()
    return emulator


def main(argv: Sequence[str] | None = None) -> int:
    return serve(parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Run until SIGTERM or SIGINT."""
    emulator = build(args).start()
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # The first line is machine-readable: scripts read the URL from it.
    print(f"X Ads API emulator listening on {emulator.url}", flush=True)
    if args.demo:
        summary = json.dumps(DEMO_WORLD) if args.json else demo_summary(emulator.url)
        print(summary, flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
