"""Running the emulator in a child process (demos, benchmarks, `make run`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

STARTUP_LINE = "X Ads API emulator listening on "


@contextlib.contextmanager
def emulator_process(world: dict[str, Any] | None = None, *args: str) -> Iterator[str]:
    """Start ``python -m django_xconversions.emulator`` on a free port; yield its URL.

    ``world`` is seeded through ``--config``; the process is stopped on exit.
    """
    config = None
    command = [sys.executable, "-m", "django_xconversions.emulator", "--port", "0", *args]
    if world is not None:
        handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        with handle:
            json.dump(world, handle)
        config = handle.name
        command += ["--config", config]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert process.stdout is not None  # noqa: S101 (stdout=PIPE above)
        line = process.stdout.readline()
        if not line.startswith(STARTUP_LINE):
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line[len(STARTUP_LINE) :].strip()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        if config:
            os.unlink(config)
