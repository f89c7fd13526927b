"""One table of every target the benches checked, from the JSON in bench/results/.

    python bench/report.py          # exit status 1 when a target is not met

Reads each bench/results/*.json (what the last run of each bench wrote) and prints, per
target: the bench, the metric, the measured value, the target and whether it was met.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    targets = result.get("targets")
    if isinstance(targets, list):
        return [
            (t["metric"], _shown(t["value"]), t["target"], "yes" if t["met"] else "NO")
            for t in targets
        ]
    met = result.get("meets_targets")
    if met is None and isinstance(result.get("met"), dict):  # {name: met} per checked figure
        return [(str(name), "", "", "yes" if ok else "NO") for name, ok in result["met"].items()]
    # Benches that only say whether they met their targets (chaos: a list of conditions).
    return [("all targets", "", "", "yes" if met else "NO")] if met is not None else []


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def main() -> int:
    table: list[tuple[str, str, str, str, str]] = []
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        table += [(path.stem, *row) for row in rows(result)]
    if not table:
        print("no results yet: run the benches (make bench)")
        return 1
    headers = ("bench", "metric", "value", "target", "met")
    widths = [max(len(str(r[i])) for r in (headers, *table)) for i in range(len(headers))]
    for row in (headers, *table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0 if all(row[-1] == "yes" for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
