"""SQLite shared by a web server and a sender: the system check that asks for IMMEDIATE
transactions, and the example project's and benchmarks' database options."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import pytest

from django_xconversions import checks
from tests.helpers.example_project import example_env, manage

IMMEDIATE = {"transaction_mode": "IMMEDIATE", "timeout": 20}
# The pragmas README's "SQLite" section gives, which the example project and the benches
# use as they stand.
README_PRAGMAS = re.search(
    r'"(PRAGMA journal_mode=WAL;[^"]*)"', (Path(__file__).parents[1] / "README.md").read_text()
).group(1)


def sqlite_warnings(monkeypatch: Any, **databases: dict[str, Any]) -> list[Any]:
    monkeypatch.setattr(checks, "settings", types.SimpleNamespace(DATABASES=databases))
    return checks.check_sqlite_transaction_mode()


def sqlite(name: str = "/srv/shop.sqlite3", **options: Any) -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": name, "OPTIONS": options}


def test_sqlite_without_immediate_transactions_is_a_warning_naming_the_options(
    monkeypatch: Any,
) -> None:
    [warning] = sqlite_warnings(monkeypatch, default=sqlite(), other=sqlite(**IMMEDIATE))
    assert warning.id == "xconversions.W020"
    assert warning.msg.startswith(
        "DATABASES['default']['OPTIONS'] uses SQLite's DEFERRED transactions"
    )
    assert '"database is locked"' in warning.msg
    assert warning.hint.startswith(
        "Set DATABASES['default']['OPTIONS'] = {\"transaction_mode\": \"IMMEDIATE\", "
        '"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}'
    )


@pytest.mark.parametrize("mode", ["DEFERRED", "EXCLUSIVE"])
def test_other_transaction_modes_are_named(monkeypatch: Any, mode: str) -> None:
    [warning] = sqlite_warnings(monkeypatch, logs=sqlite(transaction_mode=mode.lower()))
    assert f"DATABASES['logs']['OPTIONS'] uses SQLite's {mode} transactions" in warning.msg


@pytest.mark.parametrize(
    "database",
    [
        sqlite(**IMMEDIATE),
        sqlite(transaction_mode="immediate"),
        sqlite(":memory:"),
        sqlite("file:memorydb_default?mode=memory&cache=shared"),
        {"ENGINE": "django.db.backends.postgresql", "NAME": "shop"},
    ],
    ids=["immediate", "lower-case", "memory", "memory-uri", "postgresql"],
)
def test_no_warning_where_it_cannot_lock(monkeypatch: Any, database: dict[str, Any]) -> None:
    assert sqlite_warnings(monkeypatch, default=database) == []


def test_example_project_uses_immediate_transactions_and_wal(tmp_path: Any) -> None:
    env = example_env(tmp_path / "shop.sqlite3")
    code = (
        "from django.conf import settings; from django.db import connection; "
        "print(settings.DATABASES['default']['OPTIONS']); "
        "print([connection.cursor().execute(f'PRAGMA {name}').fetchone()[0] "
        "for name in ('journal_mode', 'synchronous', 'temp_store')])"
    )
    output = manage(env, "shell", "-c", code)
    options, pragmas = output.strip().splitlines()[-2:]
    assert eval(options) == {  # noqa: S307 (our own repr of a dict of literals)
        **IMMEDIATE,
        "init_command": README_PRAGMAS,
    }
    # WAL; synchronous NORMAL (1); temporary files in memory (2): what README advises.
    assert eval(pragmas) == ["wal", 1, 2]  # noqa: S307
    assert "W020" not in manage(env, "check")


def test_bench_settings_use_immediate_transactions_and_wal(monkeypatch: Any) -> None:
    import importlib
    import sys

    monkeypatch.delenv("DATABASE_URL", raising=False)
    sys.modules.pop("bench.settings", None)
    bench = importlib.import_module("bench.settings")
    sys.modules.pop("bench.settings", None)
    options = bench.DATABASES["default"]["OPTIONS"]
    assert {k: options[k] for k in IMMEDIATE} == IMMEDIATE
    assert options["init_command"] == README_PRAGMAS
