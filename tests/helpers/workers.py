"""``send_conversions`` worker processes on the test's PostgreSQL database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.db import connection

from django_xconversions.emulator import EmulatorServer

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
