"""Shared set-up of the benchmarks: a fresh database per run (SQLite or PostgreSQL), the
emulator in a child process, a demo account, pixel and tag, rich pending conversions
seeded in bulk, and the JSON every bench writes (all runs, medians, targets)."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Rows per INSERT ... VALUES batch on SQLite (COPY streams them on PostgreSQL).
SEED_CHUNK = 10_000
DUE_MODES = ("shared", "distinct")
# "legacy": rich rows without their event's text, as rows recorded before that column.
ROW_KINDS = ("rich", "minimal", "legacy")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.71 Mobile Safari/537.36",
)
PRODUCTS = (
    ("sku-1042", "Merino wool socks", "Apparel", Decimal("14.90")),
    ("sku-2210", "Trail running shoes", "Footwear", Decimal("129.00")),
    ("sku-3307", "Insulated bottle 750 ml", "Outdoor", Decimal("34.50")),
    ("sku-4415", "Rain shell jacket", "Apparel", Decimal("189.99")),
    ("sku-5120", "Headlamp 400 lm", "Outdoor", Decimal("42.00")),
)
CURRENCIES = ("USD", "EUR", "GBP")


# -- a fresh database per run ------------------------------------------------------------


def setup_django(db: str) -> None:
    """Configure Django for ``db`` ("sqlite" or "postgres") on a fresh, migrated database.

    SQLite: a new file in a temporary directory (or BENCH_SQLITE_PATH, emptied first).
    PostgreSQL: a throwaway server on 127.0.0.1; with DATABASE_URL set, a new database
    created on that server and dropped at exit. A bench never writes to a database it did
    not create, so no run sees what an earlier one left.
    """
    sys.path.insert(0, str(ROOT))
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    if db == "postgres":
        os.environ["DATABASE_URL"] = fresh_postgres_database()
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["BENCH_SQLITE_PATH"] = fresh_sqlite_path()
    connect_django(migrate=True)


def connect_django(*, migrate: bool) -> None:
    """Set Django up on the database the environment names (DATABASE_URL, else
    BENCH_SQLITE_PATH): for child processes of a bench, whose parent made it fresh."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django
    from django.core.management import call_command

    django.setup()
    if migrate:
        call_command("migrate", verbosity=0)


def fresh_sqlite_path() -> str:
    """An empty SQLite path: BENCH_SQLITE_PATH emptied, or a file in a new temp dir."""
    given = os.environ.get("BENCH_SQLITE_PATH")
    if given:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{given}{suffix}").unlink(missing_ok=True)
        return given
    directory = tempfile.mkdtemp(prefix="xconv-bench-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return str(Path(directory) / "bench.sqlite3")


def postgres_server() -> str:
    """The URL of a PostgreSQL server to create bench databases on: DATABASE_URL's, or
    a throwaway one started now (stopped at exit)."""
    given = os.environ.get("BENCH_PG_SERVER_URL") or os.environ.get("DATABASE_URL")
    if given and given.startswith("postgres"):
        os.environ["BENCH_PG_SERVER_URL"] = given
        return given
    sys.path.insert(0, str(ROOT))
    from tests.pg_plugin import start_server

    url = start_server()
    if url is None:
        raise SystemExit("PostgreSQL binaries not found (apt-get install postgresql)")
    os.environ["BENCH_PG_SERVER_URL"] = url
    return url


def fresh_postgres_database(label: str = "run") -> str:
    """A new, empty database on :func:`postgres_server`, dropped at exit (or sooner by
    :func:`drop_postgres_database`); its URL."""
    import psycopg

    server = postgres_server()
    name = f"xconv_bench_{label}_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as conn:
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.errors.InsufficientPrivilege:
            raise SystemExit(
                "benches run on a database of their own: DATABASE_URL's user may not "
                "CREATE DATABASE; grant CREATEDB, or unset DATABASE_URL to use a "
                "throwaway server"
            ) from None
    atexit.register(drop_postgres_database, server, name)
    parts = urlsplit(server)
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_postgres_database(server: str, name: str) -> None:
    """Drop the bench database ``name`` (a path of a URL is taken as its name)."""
    import psycopg

    name = urlsplit(name).path.lstrip("/") or name
    with contextlib.suppress(Exception):  # Django may not be set up yet
        from django.db import connections

        connections.close_all()
    with contextlib.suppress(psycopg.Error), psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_outbox() -> None:
    """Remove every conversion and delivery attempt (between the runs of one bench):
    TRUNCATE on PostgreSQL, so no dead rows slow the next run."""
    from django.db import connection, transaction

    from django_xconversions.models import Conversion, DeliveryAttempt

    tables = [Conversion._meta.db_table, DeliveryAttempt._meta.db_table]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)}")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 (model table names)


# -- the emulator and the demo account ---------------------------------------------------


def configure(url: str, **values: Any) -> None:
    from django.conf import settings

    from django_xconversions.emulator import DEMO_WORLD

    app = DEMO_WORLD["apps"][0]
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "API_BASE_URL": url,
        "CONSUMER_KEY": app["consumer_key"],
        "CONSUMER_SECRET": app["consumer_secret"],
        **values,
    }


def demo_world(**extra: Any) -> dict[str, Any]:
    from django_xconversions.emulator import DEMO_WORLD

    return {**DEMO_WORLD, "record": "ids", **extra}


@contextlib.contextmanager
def emulator(**extra: Any) -> Iterator[str]:
    from django_xconversions.emulator.process import emulator_process

    with emulator_process(demo_world(**extra)) as url:
        yield url


def oauth_session() -> Any:
    """A requests session signing with OAuth 1.0a as the demo user (requests-oauthlib),
    as any integration calling X's conversions endpoint does."""
    from requests_oauthlib import OAuth1Session

    from django_xconversions.emulator import DEMO_WORLD

    app, user = DEMO_WORLD["apps"][0], DEMO_WORLD["users"][0]
    return OAuth1Session(
        app["consumer_key"],
        client_secret=app["consumer_secret"],
        resource_owner_key=user["access_token"],
        resource_owner_secret=user["access_token_secret"],
    )


def conversions_url(url: str, pixel_id: str) -> str:
    from django_xconversions.conf import xsettings

    return f"{url}/{xsettings.API_VERSION}/measurement/conversions/{pixel_id}"


def create_demo_tag() -> Any:
    """The local twin of the demo world's account, pixel and PURCHASE tag."""
    from django_xconversions.emulator import DEMO_WORLD
    from django_xconversions.models import AdAccount, EventTag, Pixel

    spec, user = DEMO_WORLD["accounts"][0], DEMO_WORLD["users"][0]
    account = AdAccount(account_id=spec["account_id"], name=spec["name"])
    account.set_tokens(user["access_token"], user["access_token_secret"])
    account.save()
    pixel = Pixel.objects.create(pixel_id=spec["pixels"][0]["pixel_id"], account=account)
    remote = spec["tags"][0]
    return EventTag.objects.create(
        account=account,
        pixel=pixel,
        remote_id=remote["id"],
        website_tag_id=remote["website_tag_id"],
        key="purchase",
        name=remote["name"],
        type=remote["type"],
    )


# -- seeding -------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _contents(n: int) -> tuple[list[dict[str, Any]], Decimal, int]:
    """Two or three items, stored as track() stores them (prices as text)."""
    items, total, count = [], Decimal(0), 0
    for offset in range(2 + n % 2):
        sku, name, group, price = PRODUCTS[(n + offset * 2) % len(PRODUCTS)]
        quantity = 1 + (n + offset) % 3
        items.append(
            {
                "content_id": sku,
                "content_name": name,
                "content_type": "product",
                "content_group_id": group,
                "content_price": str(price),
                "num_items": quantity,
            }
        )
        total += price * quantity
        count += quantity
    return items, total, count


def conversion_fields(
    n: int, prefix: str, conversion_time: dt.datetime, rows: str = "rich"
) -> dict[str, Any]:
    """The identifying and descriptive fields of the ``n``-th seeded conversion.

    Rich rows carry what a real checkout records: twclid, hashed email and phone, the
    shopper's IP (one in ten IPv6) and browser, 2-3 items, a description, value, currency
    and item count. Minimal rows carry a twclid, a hashed email, an IP and a value.
    """
    email = _sha256(f"customer{n}@example.com")
    if rows == "minimal":
        return {
            "conversion_time": conversion_time,
            "conversion_id": f"{prefix}-{n}",
            "twclid": f"click{n}",
            "hashed_email": email,
            "hashed_phone": "",
            "ip_address": "192.0.2.1",
            "user_agent": "",
            "value": Decimal("19.99"),
            "currency": "USD",
            "number_items": 1,
            "description": "",
            "contents": [],
        }
    items, total, count = _contents(n)
    if n % 10 == 9:
        ip = f"2001:db8:{n >> 16:x}::{n & 0xFFFF:x}"
    else:
        ip = f"{23 + n % 180}.{(n >> 16) & 255}.{(n >> 8) & 255}.{1 + n % 254}"
    return {
        "conversion_time": conversion_time,
        "conversion_id": f"{prefix}-{n}",
        "twclid": email[7:33],
        "hashed_email": email,
        "hashed_phone": _sha256(f"+1555{n % 10_000_000:07d}"),
        "ip_address": ip,
        "user_agent": USER_AGENTS[n % len(USER_AGENTS)],
        "value": total,
        "currency": CURRENCIES[n % len(CURRENCIES)],
        "number_items": count,
        "description": f"Order {prefix}-{n}: {len(items)} products, web checkout",
        "contents": items,
    }


def seed(tag: Any, count: int, prefix: str, *, due: str = "shared", rows: str = "rich") -> None:
    """``count`` due conversions of ``tag``, ids ``<prefix>-<n>``, written in bulk (COPY on
    PostgreSQL, multi-row INSERTs on SQLite; hundreds of thousands of rows per second).

    ``due="shared"``: every row has one due time, as "Send now", ``requeue()`` and bulk
    imports leave them; ``"distinct"``: each row its own, oldest first. Conversion times
    span the last day, four rows per second (checkouts in bursts); each row is created
    two seconds after its conversion.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from django_xconversions.claimed import wire_text_of
    from django_xconversions.models import Conversion

    if due not in DUE_MODES or rows not in ROW_KINDS:
        raise ValueError(f"due must be one of {DUE_MODES}, rows one of {ROW_KINDS}")
    now = timezone.now().replace(microsecond=0)
    shared_due = now - dt.timedelta(seconds=1)
    template = Conversion(
        event_tag=tag, pixel_id=tag.pixel_id, event_key=tag.key or "", next_attempt_at=now
    )
    varying = {
        *conversion_fields(0, prefix, now, rows),
        "next_attempt_at",
        "created_at",
        "updated_at",
    }
    fields = [f for f in Conversion._meta.concrete_fields if not f.primary_key]
    constants = {
        f.attname: f.get_db_prep_save(f.pre_save(template, True), connection)
        for f in fields
        if f.name not in varying
    }
    columns = [f.column for f in fields]
    names = [f.attname for f in fields]
    to_db = connection.ops.adapt_datetimefield_value
    address_field = Conversion._meta.get_field("ip_address")  # IPv6 stored compressed
    postgres = connection.vendor == "postgresql"

    def row(n: int) -> tuple[Any, ...]:
        conversion_time = now - dt.timedelta(seconds=1 + (n // 4) % 86_400)
        values = conversion_fields(n, prefix, conversion_time, rows)
        # As the capture writes a row: its event's text, checked once, with it.
        if rows != "legacy":
            values["wire_text"] = wire_text_of(SimpleNamespace(**values))
        created = conversion_time + dt.timedelta(seconds=2)
        values["conversion_time"] = to_db(conversion_time)
        values["contents"] = json.dumps(values["contents"])
        values["ip_address"] = address_field.get_db_prep_save(values["ip_address"], connection)
        values["created_at"] = values["updated_at"] = to_db(created)
        next_at = (
            shared_due if due == "shared" else shared_due - dt.timedelta(microseconds=count - n)
        )
        values["next_attempt_at"] = to_db(next_at)
        if not postgres and values["value"] is not None:
            values["value"] = str(values["value"])
        return tuple(values[name] if name in values else constants[name] for name in names)

    table = Conversion._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        if postgres:
            raw = cursor.cursor  # psycopg's own cursor: COPY
            with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for n in range(count):
                    copy.write_row(row(n))
        else:
            marks = ", ".join(["%s"] * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
            for start in range(0, count, SEED_CHUNK):
                cursor.executemany(
                    sql, [row(n) for n in range(start, min(start + SEED_CHUNK, count))]
                )
    if postgres:
        with connection.cursor() as cursor:
            # What autovacuum would have done by the time a backlog is drained.
            cursor.execute(f"ANALYZE {table}")


# -- figures and the JSON every bench writes ------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value at least ``share`` of runs reach."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(share * len(ordered)) - 1)]) if ordered else 0.0


def target(metric: str, value: float | None, op: str, bound: float) -> dict[str, Any]:
    """One checked target: ``value op bound`` (``op`` is ">=" or "<=")."""
    met = value is not None and (value >= bound if op == ">=" else value <= bound)
    return {"metric": metric, "value": value, "target": f"{op} {bound:g}", "met": met}


def environment() -> dict[str, Any]:
    import django

    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write(name: str, result: dict[str, Any], output: str | None = None) -> None:
    """Print the result and write it to ``output`` or bench/results/<name>.json; when it
    lists ``targets``, ``meets_targets`` says whether every one was met."""
    if "targets" in result and isinstance(result["targets"], list):
        result["meets_targets"] = all(t["met"] for t in result["targets"])
    result = {"bench": name, **result, "environment": environment()}
    text = json.dumps(result, indent=2, default=str)
    path = Path(output) if output else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text)


def start_bench_process(
    args: list[str], database_url: str, overrides: dict[str, Any], *, stderr: Any = None
) -> subprocess.Popen[str]:
    """``python <args>`` in the repository with the bench settings on ``database_url`` and
    ``overrides`` of XCONVERSIONS; stdout discarded, stderr as given (default discarded)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PYTHONPATH": str(ROOT),
        "XCONVERSIONS_BENCH": json.dumps(overrides),
    }
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
        text=True,
    )
