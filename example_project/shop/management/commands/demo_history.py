"""manage.py demo_history: two weeks of shop history, so the admin has something to show.

Against the X API the settings name (the local emulator in the example): connects the demo
account, pixel and tags as ``run_shop`` does, records purchases and sign-ups over the
last ``--days`` days with the identifiers a shop has (email always, phone often, a twclid
for visitors from an ad, IP address and user agent), sends them with send_conversions,
then dates each row on the day it happened (a command cannot wait two weeks). Left
behind on purpose: two rows that lost their identifiers (refused before sending),
newsletter sign-ups held for want of a tag, a sign-up twclid share that fell this week,
and a second ad account paused by X's 401; orders X refuses too when the emulator is
told to (``reject_conversion_ids``, as tests/helpers/showcase.py does).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from django_xconversions import track_many
from django_xconversions.models import AdAccount, Conversion
from django_xconversions.tracking import TrackItem
from shop.demo_setup import connect_demo_account, sync_demo_tags
from shop.models import Product

# Rows an import left without identifiers: validation fails them before they reach X.
LOST_IDENTIFIERS = ("order-6-2", "signup-0-1")
# Today's rows that need a look, this many minutes ago: the top of the admin's list
# (order-0-2 is one ``make screenshots`` has the emulator refuse).
RECENT = {"order-0-2": 12, "signup-0-1": 25, "newsletter-0": 33}
# Over the last this many days, a quarter as many sign-ups came with a twclid as before
# (a consent banner gone wrong, say): Match readiness warns about it.
SIGN_UP_TWCLID_FELL = 7
BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
)


class Command(BaseCommand):
    help = "Record and send two weeks of demo purchases and sign-ups, dated day by day."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=14)
        parser.add_argument("--seed", type=int, default=2026, help="Random seed.")

    def handle(self, *args: Any, **options: Any) -> None:
        account = connect_demo_account()
        sync_demo_tags(account)
        rng = random.Random(options["seed"])  # noqa: S311 (demo data)
        now = timezone.now()
        items = history(rng, now, options["days"])
        with transaction.atomic():
            stored = track_many(items)
            Conversion.objects.filter(conversion_id__in=LOST_IDENTIFIERS).update(
                hashed_email="", hashed_phone="", twclid="", ip_address=None, user_agent=""
            )
        self.stdout.write(f"Recorded {len(stored)} conversions over {options['days']} days.")
        call_command("send_conversions", stdout=self.stdout)
        backdate([row.pk for row in stored])
        AdAccount.objects.update_or_create(
            account_id="9pl4cx2k1",
            defaults={
                "name": "Brand account",
                "status": AdAccount.Status.PAUSED,
                "paused_reason": "Invalid or expired token (HTTP 401)",
                "paused_at": now - dt.timedelta(hours=5),
            },
        )
        self.stdout.write("Dated the conversions on their days; paused 'Brand account'.")


def history(rng: random.Random, now: dt.datetime, days: int) -> list[TrackItem]:
    """Purchases and sign-ups of each of the last ``days`` days (today so far included)."""
    products = list(Product.objects.filter(price__gt=0).exclude(name__contains="<"))
    items: list[TrackItem] = []
    for days_ago in range(days - 1, -1, -1):
        day = now - dt.timedelta(days=days_ago)
        weekend = day.weekday() >= 5
        for n in range(rng.randint(30, 45) + (20 if weekend else 0)):
            items.append(purchase(rng, products, day, now, f"{days_ago}-{n}"))
        for n in range(rng.randint(8, 16)):
            items.append(sign_up(rng, day, now, f"{days_ago}-{n}"))
        if days_ago in (0, 5):  # a newsletter form with no event tag yet: held
            items.append(
                {
                    "event": "newsletter",
                    "email": f"reader{days_ago}@example.com",
                    "conversion_id": f"newsletter-{days_ago}",
                    "conversion_time": moment(rng, day, now),
                }
            )
    for item in items:
        minutes = RECENT.get(str(item["conversion_id"]))
        if minutes is not None:
            item["conversion_time"] = now - dt.timedelta(minutes=minutes)
    return items


def visitor(rng: random.Random, from_ads: float) -> dict[str, Any]:
    """The identifiers of one visitor: an ad click for a share ``from_ads`` of them."""
    identifiers: dict[str, Any] = {
        "ip_address": f"198.51.100.{rng.randint(1, 254)}",
        "user_agent": rng.choice(BROWSERS),
    }
    if rng.random() < from_ads:
        identifiers["twclid"] = f"{rng.getrandbits(100):x}"[:26]
    if rng.random() < 0.6:
        identifiers["phone"] = f"+1415555{rng.randint(0, 9999):04d}"
    return identifiers


def purchase(
    rng: random.Random, products: list[Product], day: dt.datetime, now: dt.datetime, number: str
) -> TrackItem:
    chosen = rng.sample(products, k=min(len(products), rng.randint(1, 2)))
    lines = [(product, rng.randint(1, 3)) for product in chosen]
    return {
        "event": "purchase",
        "email": f"customer.{number}@example.com",
        **visitor(rng, from_ads=0.35),  # type: ignore[typeddict-item]
        "value": sum((p.price * quantity for p, quantity in lines), Decimal("0.00")),
        "currency": "USD",
        "number_items": sum(quantity for _, quantity in lines),
        "contents": [
            {
                "content_id": product.sku,
                "content_name": product.name,
                "content_price": str(product.price),
                "num_items": quantity,
            }
            for product, quantity in lines
        ],
        "conversion_id": f"order-{number}",
        "conversion_time": moment(rng, day, now),
    }


def sign_up(rng: random.Random, day: dt.datetime, now: dt.datetime, number: str) -> TrackItem:
    fell = now - day < dt.timedelta(days=SIGN_UP_TWCLID_FELL)
    return {
        "event": "sign_up",
        "email": f"lead.{number}@example.com",
        **visitor(rng, from_ads=0.1 if fell else 0.4),  # type: ignore[typeddict-item]
        "conversion_id": f"signup-{number}",
        "conversion_time": moment(rng, day, now),
    }


def moment(rng: random.Random, day: dt.datetime, now: dt.datetime) -> dt.datetime:
    """A time of shop hours on ``day``; today's still to come are within the last hours."""
    start = day.replace(hour=8, minute=0, second=0, microsecond=0)
    at = start + dt.timedelta(seconds=rng.randint(0, 14 * 3600))
    return at if at < now else now - dt.timedelta(seconds=rng.randint(60, 4 * 3600))


def backdate(pks: list[int]) -> None:
    """Each row created at its conversion time, and sent or failed a few seconds later."""
    rows = Conversion.objects.filter(pk__in=pks)
    later = F("conversion_time") + dt.timedelta(seconds=4)
    rows.update(created_at=F("conversion_time"), next_attempt_at=F("conversion_time"))
    rows.filter(status=Conversion.Status.SENT).update(sent_at=later)
    rows.filter(status=Conversion.Status.FAILED).update(failed_at=later)
