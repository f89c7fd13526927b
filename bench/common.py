"""Shared set-up of the benchmarks: Django on SQLite or PostgreSQL, the emulator in a child
process, a demo account, pixel and tag, and pending conversions seeded in bulk."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SEED_CHUNK = 5000
EMAIL_HASH = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"


def setup_django(db: str) -> None:
    """Configure Django for ``db`` ("sqlite" or "postgres") on a fresh, migrated database."""
    sys.path.insert(0, str(ROOT))
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    if db == "postgres":
        if not os.environ.get("DATABASE_URL"):
            from tests.pg_plugin import start_server

            url = start_server()
            if url is None:
                raise SystemExit("PostgreSQL binaries not found (apt-get install postgresql)")
            os.environ["DATABASE_URL"] = url
    else:
        os.environ.pop("DATABASE_URL", None)
        path = Path(os.environ.setdefault("BENCH_SQLITE_PATH", str(RESULTS / "bench.sqlite3")))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


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


def seed(tag: Any, count: int, prefix: str) -> None:
    """``count`` due conversions with a twclid, a hashed email, an IP and a value."""
    from decimal import Decimal

    from django.utils import timezone

    from django_xconversions.models import Conversion

    now = timezone.now()
    due = now - dt.timedelta(seconds=1)
    for start in range(0, count, SEED_CHUNK):
        Conversion.objects.bulk_create(
            [
                Conversion(
                    event_tag=tag,
                    pixel_id=tag.pixel_id,
                    conversion_time=now,
                    conversion_id=f"{prefix}-{n}",
                    twclid=f"click{n}",
                    hashed_email=EMAIL_HASH,
                    ip_address="192.0.2.1",
                    user_agent="Mozilla/5.0 (bench)",
                    value=Decimal("19.99"),
                    currency="USD",
                    number_items=1,
                    next_attempt_at=due,
                )
                for n in range(start, min(start + SEED_CHUNK, count))
            ]
        )


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def environment() -> dict[str, Any]:
    import django

    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write(name: str, result: dict[str, Any]) -> None:
    result = {"bench": name, **result, "environment": environment()}
    text = json.dumps(result, indent=2)
    (RESULTS / f"{name}.json").write_text(text + "\n")
    print(text)
