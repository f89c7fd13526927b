"""manage.py send_conversions: push pending conversions to X."""

from __future__ import annotations

import json
import logging
import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_xconversions import alerts, delivery, health
from django_xconversions.conf import CHECKS, CHECKS_ENCRYPTION, CHECKS_X_CREDENTIALS
from django_xconversions.delivery import SendSummary
from django_xconversions.heartbeat import Heartbeat
from django_xconversions.management.guidance import (
    WaitingAccount,
    find,
    plural,
    require_tables,
    setup_hints,
    waiting_accounts,
)
from django_xconversions.models import AdAccount, Pixel
from django_xconversions.worker import Worker
from django_xconversions.worker import logger as worker_logger

# An account was paused by this run, or a paused account holds pending conversions
# (nothing is sent for it until a person resumes it).
EXIT_ACCOUNT_PAUSED = 3
# --check: something needs a person (as a monitoring plugin's CRITICAL).
EXIT_UNHEALTHY = 2


class ProgressBar:
    """A one-line progress bar, drawn only when stdout is a terminal."""

    WIDTH = 30

    def __init__(self, stream: Any, total: int) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count
        filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total}", ending="")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("")


class Command(BaseCommand):
    requires_system_checks = [CHECKS, CHECKS_ENCRYPTION, CHECKS_X_CREDENTIALS]
    help = "Send pending conversions to X in batches, within each account's rate limit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", help="Only this X account id.")
        parser.add_argument("--pixel", help="Only this pixel id.")
        parser.add_argument("--limit", type=int, help="Send at most this many conversions.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate and print the payloads that would be sent; send nothing.",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Keep draining; sleep when idle; stop cleanly on SIGTERM/SIGINT.",
        )
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Send nothing; print one line on the senders' health for a monitor and exit "
            f"{EXIT_UNHEALTHY} when rows are stuck past their lease, no worker has been seen "
            "while conversions are due, or a paused account holds pending conversions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_tables()
        if options["check"]:
            for other in ("loop", "dry_run"):
                if options[other]:
                    flag = "--" + other.replace("_", "-")
                    raise CommandError(f"--check and {flag} cannot be combined.")
            self._check()
            return
        if options["dry_run"] and options["loop"]:
            raise CommandError(
                "--dry-run and --loop cannot be combined: a dry run sends nothing, so it "
                "would repeat the same payloads forever. Use --dry-run alone."
            )
        account = find(AdAccount, "account_id", options["account"], "--account")
        pixel = find(Pixel, "pixel_id", options["pixel"], "--pixel")
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be a positive number.")
        if options["dry_run"]:
            self._print_dry_run(
                delivery.dry_run(account=account, pixel=pixel, limit=options["limit"]),
                waiting_accounts(account, pixel),
            )
            return
        self.signalled = False
        if options["loop"]:
            totals = self._loop(account, pixel, options["limit"])
        else:
            totals = self._once(account, pixel, options["limit"])
        waiting = waiting_accounts(account, pixel)
        self._print_summary(totals, waiting, as_json=options["json"])
        # A loop stopped by SIGTERM/SIGINT stopped cleanly (a service manager must not see
        # a failure); its summary still names the paused accounts, as --check does.
        paused = sorted({*totals.paused, *(w.account_id for w in waiting if w.state == "paused")})
        if paused and not self.signalled:
            raise CommandError(
                f"{plural(len(paused), 'account')} paused: {', '.join(paused)}.",
                returncode=EXIT_ACCOUNT_PAUSED,
            )

    def _once(
        self,
        account: AdAccount | None,
        pixel: Pixel | None,
        limit: int | None,
    ) -> SendSummary:
        bar = None
        if self.stdout.isatty():
            bar = ProgressBar(
                self.stdout, min(delivery.pending_count(account, pixel), limit or 10**12)
            )
        summary = delivery.send_pending(
            account=account,
            pixel=pixel,
            limit=limit,
            on_progress=bar.advance if bar else None,
        )
        if bar:
            bar.finish()
        return summary

    def _loop(
        self, account: AdAccount | None, pixel: Pixel | None, limit: int | None
    ) -> SendSummary:
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            # Finish the batch in flight, then leave: rows are never left half-written.
            self.stderr.write(f"Received signal {signum}; stopping after the current batch.")
            self.signalled = True
            stop.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        handler = self._log_to_stderr()
        try:
            return Worker(
                stop=stop, account=account, pixel=pixel, limit=limit, heartbeat=Heartbeat()
            ).run()
        finally:
            for sig, previous_handler in previous.items():
                signal.signal(sig, previous_handler)
            if handler is not None:
                worker_logger.removeHandler(handler)

    def _log_to_stderr(self) -> logging.Handler | None:
        """Outages and errors of the loop go to stderr unless the project routes them."""
        if worker_logger.hasHandlers():
            return None
        handler = logging.StreamHandler(self.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        worker_logger.addHandler(handler)
        if worker_logger.level == logging.NOTSET:
            worker_logger.setLevel(logging.INFO)
        return handler

    def _check(self) -> None:
        report = alerts.check()
        self.stdout.write(report.line())
        if not report.healthy:
            codes = ", ".join(problem.code for problem in report.problems)
            raise CommandError(f"Unhealthy: {codes}.", returncode=EXIT_UNHEALTHY)

    def _print_dry_run(self, summary: SendSummary, waiting: list[WaitingAccount]) -> None:
        for entry in summary.payloads:
            self.stdout.write(json.dumps(entry, sort_keys=True))
        invalid = summary.failed.get("invalid", 0)
        self.stdout.write(
            f"Dry run: {plural(len(summary.payloads), 'conversion')} would be sent"
            f" ({invalid} invalid, would fail). Nothing was sent."
        )
        self._print_guidance(waiting, SendSummary())

    def _print_summary(
        self, summary: SendSummary, waiting: list[WaitingAccount], *, as_json: bool
    ) -> None:
        held = health.held_summary()
        if as_json:
            held_json = [{"reason": h.reason, "count": h.count, "keys": h.keys} for h in held]
            self.stdout.write(
                json.dumps(
                    {
                        **summary.as_dict(),
                        "held": held_json,
                        "waiting": {w.account_id: w.as_dict() for w in waiting},
                        "setup": setup_hints(),
                    },
                    sort_keys=True,
                )
            )
            return
        write = self.stdout.write
        write(f"Sent: {summary.sent} in {plural(summary.requests, 'request')}")
        failed = ", ".join(f"{reason}: {n}" for reason, n in sorted(summary.failed.items()))
        write(f"Failed: {sum(summary.failed.values())}" + (f" ({failed})" if failed else ""))
        write(f"Retrying later: {summary.retrying}")
        listed = {w.account_id for w in waiting}
        for account_id, until in sorted(summary.rate_limited.items()):
            if account_id not in listed:
                write(f"Waiting on X's rate limit: account {account_id} until {until.isoformat()}")
        for account_id, until in sorted(summary.budget_exhausted.items()):
            write(f"Budget used up: account {account_id} until {until.isoformat()}")
        write(f"Pending left: {summary.pending_left}")
        for account_id, reason in sorted(summary.paused.items()):
            self.stderr.write(f"Account {account_id} paused: {reason}")
            if account_id not in listed:  # nothing left pending: named here all the same
                write(f"Account {account_id} was paused by this run: {reason}")
        if held:
            write(f"Held (not routable yet): {sum(h.count for h in held)}")
        for group in held:
            keys = ", ".join(group.keys)
            write(f"  {group.label}: {group.count} (keys: {keys}). {group.fix}")
        self._print_guidance(waiting, summary)

    def _print_guidance(self, waiting: list[WaitingAccount], summary: SendSummary) -> None:
        """The accounts holding conversions nothing sends now, and what is not set up."""
        for account in waiting:
            self.stdout.write(account.line(paused_now=account.account_id in summary.paused))
        for hint in setup_hints():
            self.stdout.write(hint)
