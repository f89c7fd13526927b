"""Settings for the benchmarks: a SQLite file, or PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403

DEBUG = False
if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE_PATH", "bench/results/bench.sqlite3"),
            # As README's "SQLite" section says: IMMEDIATE transactions and a lock timeout
            # keep several senders from failing with "database is locked".
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;"
                ),
            },
        }
    }
XCONVERSIONS = {
    **XCONVERSIONS,  # noqa: F405
    **json.loads(os.environ.get("XCONVERSIONS_BENCH", "{}")),
}
