"""Python run in a child process of its own, from the repository's root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def run_python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python *args``, its output captured as text, within a minute. ``env`` is added to
    this process's environment, less DATABASE_URL: a child reaches the test's database
    only when given it."""
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, *args],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
