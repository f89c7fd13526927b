"""manage.py demo: the whole pipeline on SQLite against the local emulator, in one go.

Starts the emulator, connects a demo account, pixel and tags, queues a few thousand
conversions (a few bad on purpose), sends them with send_conversions, then shows what the
emulator received. Nothing leaves this machine.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import time
from collections import Counter
from typing import Any

import requests
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from django_xconversions import track
from django_xconversions.emulator import DEMO_WORLD
from django_xconversions.emulator.process import emulator_process
from django_xconversions.models import Conversion
from shop.demo_setup import connect_demo_account, sync_demo_tags, use_api

# Two events X will reject (the emulator is told so): the sender isolates them.
REJECTED_BY_X = ["demo-order-17", "demo-order-1234"]
PRODUCTS = [("sku-1", "Blanket", "12.50"), ("sku-2", "Collar", "8.00"), ("sku-3", "Bowl", "4.25")]


class Command(BaseCommand):
    help = "Queue and send demo conversions to the local X emulator (SQLite, no network)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=2500)
        parser.add_argument("--sign-ups", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        call_command("migrate", verbosity=0)
        world = copy.deepcopy(DEMO_WORLD)
        world["reject_conversion_ids"] = REJECTED_BY_X
        with emulator_process(world) as url:
            self.stdout.write(f"Emulator running at {url}")
            use_api(url)
            # A fresh start each run: the demo's own rows only.
            spec = DEMO_WORLD["accounts"][0]
            Conversion.objects.filter(pixel__account__account_id=spec["account_id"]).delete()
            account = connect_demo_account()
            result = sync_demo_tags(account)
            self.stdout.write(
                f"Synced tags from the emulator: {result.created} created, {result.updated} updated"
            )
            queued = self._queue(options["orders"], options["sign_ups"])
            self.stdout.write(f"Queued {queued} conversions; sending...")
            call_command("send_conversions", stdout=self.stdout)
            self._show_received(url)
        self.stdout.write(f"Demo finished in {time.monotonic() - started:.1f} s.")

    def _queue(self, orders: int, sign_ups: int) -> int:
        rng = random.Random(2026)  # noqa: S311 (demo data)
        now = timezone.now()
        with transaction.atomic():
            for n in range(orders):
                sku, name, price = rng.choice(PRODUCTS)
                quantity = rng.randint(1, 3)
                track(
                    "purchase",
                    email=f"customer{n}@example.com",
                    twclid=f"demo{n:06d}click",
                    ip_address=f"192.0.2.{n % 250 + 1}",
                    user_agent="Mozilla/5.0 (demo)",
                    value=str(float(price) * quantity),
                    currency="USD",
                    number_items=quantity,
                    contents=[
                        {
                            "content_id": sku,
                            "content_name": name,
                            "content_price": price,
                            "num_items": quantity,
                        }
                    ],
                    conversion_id=f"demo-order-{n}",
                    conversion_time=now - dt.timedelta(minutes=rng.randint(1, 600)),
                )
            for n in range(sign_ups):
                track("sign_up", email=f"lead{n}@example.com", conversion_id=f"demo-signup-{n}")
            # Rows that lost their identifiers (e.g. an import gone wrong): local validation
            # fails them with X's message; they never reach X.
            broken = Conversion.objects.filter(
                conversion_id__in=["demo-signup-3", "demo-signup-4", "demo-signup-5"]
            )
            broken.update(hashed_email="", twclid="")
        return orders + sign_ups

    def _show_received(self, url: str) -> None:
        records = requests.get(f"{url}/_emulator/received", timeout=30).json()["data"]
        by_event = Counter(r["event_id"] for r in records)
        self.stdout.write(f"The emulator received {len(records)} conversions: {dict(by_event)}")
        if records:
            self.stdout.write("First one, as X would see it:")
            self.stdout.write(json.dumps(records[0]["conversion"], indent=2))
        failed = Conversion.objects.filter(status="failed").order_by("conversion_id")
        for row in failed:
            self.stdout.write(
                f"  failed {row.conversion_id}: [{row.error_reason}] {row.last_error}"
            )
