"""Workers in tests: ``send_conversions`` processes on the test's PostgreSQL database,
and threads that start at once, each on its own database connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from django.db import connection

from django_xconversions.emulator import EmulatorServer
from django_xconversions.worker import close_connections

ROOT = Path(__file__).resolve().parent.parent.parent


def database_url() -> str:
    """The test database as a DATABASE_URL (tests/settings.py reads it)."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_worker(emulator: EmulatorServer, *args: str, **overrides: Any) -> subprocess.Popen[str]:
    """``manage.py send_conversions *args`` in a process of its own, sending to
    ``emulator``; ``overrides`` are XCONVERSIONS settings."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "XCONVERSIONS_TEST_OVERRIDES": json.dumps({"API_BASE_URL": emulator.url, **overrides}),
    }
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "django", "send_conversions", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_workers(count: int, work: Any) -> list[BaseException]:
    """``work`` on ``count`` threads at once, each with its own database connection (its
    own session: the workers share nothing but the database); their errors."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(10)
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_connections()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a worker did not finish"
    return errors
