"""manage.py run_shop (``make run``): the example shop on 127.0.0.1:8000 (``--port``; ``make
run PORT=...``) against the local X emulator (``--emulator-port``; ``EMULATOR_PORT=...``),
ready to click through.

Migrates, starts the emulator with its demo world, connects the demo account, pixel and
tags, creates an admin user, then runs the web server and a ``send_conversions --loop``
worker until Ctrl-C, which stops all of them. Should the worker exit, it is restarted
and the console says so. ``--no-serve`` stops after the set-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib.util import find_spec
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_xconversions.conf import xsettings
from django_xconversions.emulator import demo_world
from django_xconversions.emulator.process import emulator_process
from django_xconversions.models import EventTag
from shop.demo_setup import KEYS, connect_demo_account, sync_demo_tags, use_api

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"
READY_TIMEOUT = 30.0
# How often the sender is looked at; the pause before restarting it, doubled (up to the
# maximum) while it keeps exiting within STEADY_SECONDS of being started.
WATCH_SECONDS = 0.5
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STEADY_SECONDS = 60.0


class Command(BaseCommand):
    help = (
        "Run the example shop against the local X emulator (migrate, demo account, tags, "
        "admin user, web server and sender) until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1", help="Web server address.")
        parser.add_argument("--port", type=int, default=8000, help="Web server port.")
        parser.add_argument(
            "--emulator-port",
            type=int,
            help="Emulator port (default: the port of X_API_BASE_URL, 8765; 0 picks one).",
        )
        parser.add_argument(
            "--no-emulator",
            action="store_true",
            help="Use the emulator already running at X_API_BASE_URL (seeded with the demo "
            "world) instead of starting one.",
        )
        parser.add_argument("--no-serve", action="store_true", help="Set up, then exit.")
        parser.add_argument(
            "--noreload",
            action="store_true",
            help="Do not restart the web server when a source file changes.",
        )
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--admin-password", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        # Ctrl-C and SIGTERM unwind the same way, so the children are always stopped (set
        # explicitly: a shell running us in the background may have SIGINT ignored).
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        call_command("migrate", verbosity=0)
        with ExitStack() as stack:
            if options["no_emulator"]:
                url = str(xsettings.API_BASE_URL)
            else:
                port = options["emulator_port"]
                if port is None:
                    port = urlsplit(str(xsettings.API_BASE_URL)).port or 8765
                url = stack.enter_context(emulator_process(demo_world(), "--port", str(port)))
            self.stdout.write(f"X Ads API emulator: {url}")
            use_api(url)
            pixel_id = self._set_up()
            login = self._admin(options["admin_username"], options["admin_password"])
            self.stdout.write(f"Admin login: {login}")
            if options["no_serve"]:
                self.stdout.write("Set-up done (--no-serve): not starting the web server.")
                return
            addr, port = options["addr"], options["port"]
            _ensure_free(addr, port)
            try:
                # The sender, as in production: a worker draining pending conversions,
                # restarted should it ever exit.
                sender = Supervised(("send_conversions", "--loop"), "sender", self.stdout.write)
                stack.callback(sender.stop)
                reload = ["--noreload"] if options["noreload"] else []
                server = stack.enter_context(child("runserver", f"{addr}:{port}", *reload))
                _wait_until_listening(addr, port, server)
                self._summary(f"http://{addr}:{port}", url, login, pixel_id)
                while not _exited(server, WATCH_SECONDS):
                    sender.watch()
            except KeyboardInterrupt:
                self.stdout.write("\nStopping the web server, the sender and the emulator...")
            else:
                raise CommandError(f"runserver exited with status {server.returncode}.")
        self.stdout.write("Stopped.")

    def _set_up(self) -> str:
        """The demo account, pixel and tags; the pixel's id."""
        account = connect_demo_account()
        result = sync_demo_tags(account)
        pixel = account.pixels.get()
        self.stdout.write(
            f"Demo account {account.account_id}, pixel {pixel.pixel_id}; tags synced from "
            f"the emulator: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged"
        )
        tags = EventTag.objects.filter(key__in=KEYS).order_by("key")
        for tag in tags:
            self.stdout.write(
                f"  event tag {tag.key!r}: {tag.name} (event id {tag.website_tag_id})"
            )
        missing = set(KEYS) - {tag.key for tag in tags}
        if missing:
            raise CommandError(f"No event tag with the key(s) {', '.join(sorted(missing))}.")
        return pixel.pixel_id

    def _admin(self, username: str, password: str) -> str:
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            User.objects.create_superuser(username, f"{username}@example.com", password)
            return f"{username} / {password}"
        # An existing user keeps the password someone may have changed.
        return f"{username} (existing user, password unchanged)"

    def _summary(self, site: str, api: str, login: str, pixel_id: str) -> None:
        lines = [
            "",
            f"Shop:          {site}/",
            f"  from an ad:  {site}/?twclid=demo123click",
            f"Admin:         {site}/admin/   login: {login}",
            f"  conversions: {site}/admin/xconversions/conversion/",
        ]
        if find_spec("django_xconversions.api.urls") is not None:  # as urls.py mounts it
            lines.append(f"REST API:      {site}/x/conversions/  (staff; schema: {site}/x/schema/)")
        lines += [
            f"X emulator:    {api}",
            f"  what X received: {api}/_emulator/pixels/{pixel_id}",
            "Conversions are sent by a send_conversions --loop worker. Ctrl-C stops everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _spawn(*command: str) -> subprocess.Popen[bytes]:
    """``manage.py <command>`` in its own process group."""
    return subprocess.Popen(  # noqa: S603 (our own manage.py)
        [sys.executable, str(MANAGE_PY), *command], start_new_session=True
    )


@contextmanager
def child(*command: str) -> Iterator[subprocess.Popen[bytes]]:
    """``manage.py <command>``, stopped (with its own children, such as runserver's
    autoreloader) on exit."""
    process = _spawn(*command)
    try:
        yield process
    finally:
        _stop(process)


def _exited(process: subprocess.Popen[bytes], within: float) -> bool:
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        return False
    return True


class Supervised:
    """A child restarted whenever it exits, after a pause that doubles (up to
    ``RESTART_MAX_SECONDS``) while it keeps exiting soon after each start."""

    def __init__(self, command: tuple[str, ...], name: str, say: Callable[[str], Any]) -> None:
        self.command, self.name, self.say = command, name, say
        self.delay = RESTART_FIRST_SECONDS
        self.restart_at: float | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        self.process = _spawn(*self.command)
        self.started = time.monotonic()
        self.restart_at = None

    def watch(self) -> None:
        """Restart the child if it exited (and its pause is over); call it regularly."""
        if self.process is None:
            if self.restart_at is not None and time.monotonic() >= self.restart_at:
                self._start()
                assert self.process is not None  # noqa: S101 (set by _start)
                self.say(f"Restarted the {self.name} (pid {self.process.pid}).")
            return
        status = self.process.poll()
        if status is None:
            if time.monotonic() - self.started > STEADY_SECONDS:
                self.delay = RESTART_FIRST_SECONDS
            return
        self.say(
            f"The {self.name} (manage.py {' '.join(self.command)}) exited with status "
            f"{status}; restarting it in {self.delay:.0f} s."
        )
        self.process = None
        self.restart_at = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, RESTART_MAX_SECONDS)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM, not SIGINT: a child may have inherited an ignored SIGINT. The worker
    # finishes its batch in flight; runserver and its autoreloader just exit.
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def _ensure_free(addr: str, port: int) -> None:
    with socket.socket() as probe:
        # As runserver binds: a port left in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((addr, port))
        except OSError:
            raise CommandError(
                f"{addr}:{port} is in use: stop what runs there or pass --port."
            ) from None


def _wait_until_listening(addr: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"runserver exited with status {process.returncode}.")
        try:
            socket.create_connection((addr, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise CommandError(f"runserver did not listen on {addr}:{port} within {READY_TIMEOUT:.0f} s.")
