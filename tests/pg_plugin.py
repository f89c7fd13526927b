"""Starts a throwaway PostgreSQL server on 127.0.0.1 for the test run.

Loaded with ``-p tests.pg_plugin`` so it runs before pytest-django reads the settings:
it sets DATABASE_URL, and tests/settings.py then points Django at the server. Without
PostgreSQL binaries (or with XCONVERSIONS_TEST_DB=sqlite) the suite runs on SQLite and
the tests marked ``postgres`` are skipped with the reason.

Under pytest-xdist (``-n``) each worker starts a server of its own and the controller, which
runs no test, starts none: tests that restart PostgreSQL (``restart_server``) cut only
their own worker's connections. Every server listens on 127.0.0.1 only and is stopped when
its process's session ends.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import pytest

STATE: dict[str, Any] = {}


def _pg_bin() -> str | None:
    explicit = os.environ.get("PGBIN")
    if explicit:
        return explicit
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_postgres(command: list[str]) -> None:
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603


def _start_on_a_free_port(pg_bin: str, data: str, root: str) -> int:
    """``pg_ctl start`` on a port free a moment ago; another process (a second test worker
    starting its own server) may take that port first, so a failed start tries another."""
    for attempt in range(3):
        port = _free_port()
        options = (
            f"-k {root} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c max_connections=200"
        )
        try:
            _run_as_postgres(
                [f"{pg_bin}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start"]
            )
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            continue
        return port
    raise AssertionError("unreachable")


def start_server() -> str | None:
    pg_bin = _pg_bin()
    if pg_bin is None:
        STATE["skip_reason"] = "PostgreSQL binaries not found (apt-get install postgresql)"
        return None
    root = tempfile.mkdtemp(prefix="xconv-pg-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = os.path.join(root, "data")
    _run_as_postgres([f"{pg_bin}/initdb", "-D", data, "-A", "trust", "-U", "postgres"])
    port = _start_on_a_free_port(pg_bin, data, root)
    STATE.update(pg_bin=pg_bin, data=data, root=root)
    atexit.register(stop_server)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return f"postgres://postgres@127.0.0.1:{port}/postgres"


def restart_server() -> None:
    """``pg_ctl restart -m fast``: every open connection is cut, as in a failover or an
    upgrade; waits until the server accepts connections again."""
    _run_as_postgres(
        [
            f"{STATE['pg_bin']}/pg_ctl",
            "-D",
            STATE["data"],
            "-l",
            f"{STATE['root']}/log",
            "-m",
            "fast",
            "-w",
            "restart",
        ]
    )


def stop_server() -> None:
    if "data" in STATE:
        _run_as_postgres(
            [f"{STATE['pg_bin']}/pg_ctl", "-D", STATE.pop("data"), "-m", "fast", "stop"]
        )
        shutil.rmtree(STATE["root"], ignore_errors=True)


def _is_xdist_controller(early_config: Any) -> bool:
    """This process hands the tests to pytest-xdist workers (``-n 2``, ``-n auto``) and
    runs none itself. A worker has PYTEST_XDIST_WORKER set; ``-n 0`` runs in-process."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    options = early_config.known_args_namespace
    workers = getattr(options, "numprocesses", None)
    if workers in ("auto", "logical") and getattr(options, "usepdb", False):
        return False  # xdist runs in-process with --pdb
    return bool(workers or getattr(options, "tx", None))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: Any, parser: Any, args: Any) -> None:
    if os.environ.get("XCONVERSIONS_TEST_DB") == "sqlite" or os.environ.get("DATABASE_URL"):
        return
    if _is_xdist_controller(early_config):
        return
    url = start_server()
    if url:
        os.environ["DATABASE_URL"] = url


def pytest_unconfigure(config: Any) -> None:
    # Here rather than only at exit: an xdist worker's process may end without running
    # its atexit handlers.
    stop_server()


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return
    reason = STATE.get("skip_reason", "the suite runs on SQLite (XCONVERSIONS_TEST_DB=sqlite)")
    skip = pytest.mark.skip(reason=f"needs PostgreSQL: {reason}")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
