"""The example shop (example_project/) run as users run it: its manage.py in processes of
its own, on a throwaway SQLite database."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
MANAGE_PY = ROOT / "example_project" / "manage.py"
# A product name made of markup: the escaping tests add it (the catalogue shoppers see is
# neutral) and check it comes out as text everywhere.
EVIL = "</script><script>alert(1)</script>"
TIMEOUT = 120
QUICK_POLL_SECONDS = 0.2


def example_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment of an example process: its own settings, a throwaway database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "XCONVERSIONS_TEST_OVERRIDES"}
        and not k.startswith("X_")
    }
    env["DATABASE_URL"] = f"sqlite:///{database}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def with_settings(env: dict[str, str], workdir: Path, name: str, *lines: str) -> dict[str, str]:
    """``env`` on the example's own settings plus ``lines`` (Python run after them), as a
    settings module ``name`` written into ``workdir``."""
    (workdir / f"{name}.py").write_text(
        "from example_project.settings import *  # noqa: F403\n"
        + "".join(f"{line}\n" for line in lines)
    )
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([str(workdir), str(MANAGE_PY.parent)]),
        "DJANGO_SETTINGS_MODULE": name,
    }


def quick_sender(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """``env`` for a ``send_conversions --loop`` worker that looks for due rows every
    QUICK_POLL_SECONDS. On SQLite nothing wakes a worker when a conversion is stored: it
    polls every LOOP_IDLE_SECONDS (5 s), which a test waiting for "Sent" would mostly
    spend waiting; what the worker does when it looks is the same."""
    return with_settings(
        env, workdir, "quick_sender", f'XCONVERSIONS["LOOP_IDLE_SECONDS"] = {QUICK_POLL_SECONDS}'
    )


def manage(env: dict[str, str], *args: str, timeout: float = TIMEOUT) -> str:
    """Run ``example_project/manage.py`` to completion; its output, or a failure showing it."""
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(MANAGE_PY), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_listening(port: int, process: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Until something listens on ``port``; fails at once if ``process`` exits first."""

    def up() -> bool:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        return listening(port)

    wait_until(up, timeout, f"nothing listened on 127.0.0.1:{port}")


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Stop a process started with start_new_session=True, children included."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass


def rows(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as connection:
        return list(connection.execute(sql, params))
