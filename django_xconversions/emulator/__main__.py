"""Command line: ``python -m django_xconversions.emulator --port 8765 [--demo] [--config FILE]``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from django_xconversions.emulator.demo import DEMO_WORLD, seed
from django_xconversions.emulator.server import EmulatorServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's options; ``manage.py xads_emulator`` takes the same."""
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument("--port", type=int, default=8765, help="Port (0 picks a free one).")
    parser.add_argument("--demo", action="store_true", help="Seed the fixed demo world.")
    parser.add_argument(
        "--config", help="JSON file describing apps, users, accounts, budget, faults."
    )
    parser.add_argument("--budget-events", type=int, help="Events per account per window.")
    parser.add_argument("--budget-window", type=float, help="Window length in seconds.")
    parser.add_argument("--record-ids-only", action="store_true", help="Keep only conversion ids.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m django_xconversions.emulator",
        description="A local emulator of the X Ads API (conversions, web event tags, accounts).",
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
        print(json.dumps(DEMO_WORLD), flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
