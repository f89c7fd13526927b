"""The whole suite as ``make test`` and tox run it, in two phases:

1. every test not marked ``serial``, on two pytest-xdist workers (each with a PostgreSQL of
   its own, see tests/pg_plugin.py);
2. the tests marked ``serial`` (tests/conftest.py lists them), alone: multi-process load
   and fault tests whose deadlines a heavy test on the other core could stretch.

Both phases always run and report; the exit status is non-zero if either failed. The last
line adds up both phases' counts. Arguments go to both pytest runs
(``python -m tests.run_suite tests/test_delivery.py -x``); ``-m EXPR`` is combined with
each phase's own. XCONVERSIONS_TEST_WORKERS sets the number of workers (2: the machines the
suite runs on have two cores, and a worker's tests start processes, servers and Chromium
of their own, so more workers than cores mostly add contention).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

NO_TESTS_COLLECTED = 5
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def split_marker_expression(args: list[str]) -> tuple[str | None, list[str]]:
    """The caller's ``-m EXPR`` (if any) and the other arguments."""
    expression, rest, index = None, [], 0
    while index < len(args):
        arg = args[index]
        if arg == "-m" and index + 1 < len(args):
            expression, index = args[index + 1], index + 2
            continue
        if arg.startswith("-m") and len(arg) > 2:
            expression = arg[2:]
        else:
            rest.append(arg)
        index += 1
    return expression, rest


def run_phase(options: list[str]) -> tuple[int, dict[str, int], float]:
    """pytest with ``options``, its output shown as it comes; its exit status, the counts
    of its closing line and its wall time."""
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603 (this interpreter's pytest)
        [sys.executable, "-m", "pytest", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    last = ""
    try:
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.strip():
                last = line
    finally:
        code = process.wait()  # Ctrl-C reaches pytest too: it reports, then exits
    counts: dict[str, int] = {}
    for number, kind in COUNTS.findall(last):
        kind = "error" if kind.startswith("error") else kind
        counts[kind] = counts.get(kind, 0) + int(number)
    return code, counts, time.monotonic() - started


def main(args: list[str]) -> int:
    own, rest = split_marker_expression(args)
    workers = os.environ.get("XCONVERSIONS_TEST_WORKERS", "2")
    colour = ["--color=yes"] if sys.stdout.isatty() and "--color" not in " ".join(rest) else []

    def marker(phase: str) -> list[str]:
        return ["-m", f"({own}) and {phase}" if own else phase]

    phases = {
        "parallel": ["-n", workers, *marker("not serial")],
        "serial": marker("serial"),
    }
    try:
        results = {name: run_phase([*colour, *options, *rest]) for name, options in phases.items()}
    except KeyboardInterrupt:
        return 130

    total: dict[str, int] = {}
    for _code, counts, _seconds in results.values():
        for kind, number in counts.items():
            total[kind] = total.get(kind, 0) + number
    print()
    for name, (code, _counts, seconds) in results.items():
        print(f"{name} phase: exit status {code}, {seconds:.0f} s")
    failed = total.get("failed", 0) + total.get("error", 0)
    line = f"suite: {total.get('passed', 0)} passed, {failed} failed"
    print(line + (f", {total['skipped']} skipped" if total.get("skipped") else ""))

    codes = [code for code, _counts, _seconds in results.values()]
    if all(code == NO_TESTS_COLLECTED for code in codes):
        return NO_TESTS_COLLECTED
    # A phase whose marker selected nothing (a subset of files given) has not failed.
    return next((code for code in codes if code not in (0, NO_TESTS_COLLECTED)), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
