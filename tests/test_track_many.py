"""track_many(): every item checked before anything is written, then one INSERT; the
stored rows back in order; conversion_recorded per row after the commit (none on a
rollback); the workers woken, or SEND_IMMEDIATELY's send run, once per pixel. And the
README's track(commit=False) and track_many() examples, run as written."""

from __future__ import annotations

import datetime as dt
import math
import re
import types
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_xconversions import routing, signals, tasks, track, track_many, wakeup
from django_xconversions.emulator import EmulatorServer
from django_xconversions.identifiers import hash_email
from django_xconversions.models import Conversion, EventTag, Pixel

from .conftest import configure, mirror_tag, received_ids

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "Ann.Buyer@example.com"
PAID = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def items(count: int, *, start: int = 0, event: str = "purchase") -> list[Any]:
    return [
        {
            "event": event,
            "email": f"buyer{n}@example.com",
            "value": Decimal("12.50"),
            "currency": "EUR",
            "contents": [{"content_id": f"sku-{n}", "content_price": "12.50", "num_items": 1}],
            "conversion_id": f"{event}:{n}",
            "conversion_time": PAID,
        }
        for n in range(start, start + count)
    ]


@pytest.fixture
def recorded() -> Iterator[list[tuple[str, bool]]]:
    """(conversion_id, created) of each conversion_recorded sent."""
    seen: list[tuple[str, bool]] = []

    def receiver(sender: Any, conversion: Conversion, created: bool, **kwargs: Any) -> None:
        seen.append((conversion.conversion_id, created))

    signals.conversion_recorded.connect(receiver, dispatch_uid="test-track-many")
    try:
        yield seen
    finally:
        signals.conversion_recorded.disconnect(dispatch_uid="test-track-many")


# -- one statement ---------------------------------------------------------------------------


def _batches(count: int) -> int:
    """INSERT statements Django needs for ``count`` conversions on this database: one on
    PostgreSQL; SQLite's parameter limit splits them."""
    fields = [f for f in Conversion._meta.concrete_fields if not f.primary_key]
    rows = [Conversion()] * count
    return math.ceil(count / max(connection.ops.bulk_batch_size(fields, rows), 1))


@pytest.mark.parametrize("count", [3, 120])
def test_many_rows_cost_one_insert_and_one_read(shop_tags: dict[str, EventTag], count: int) -> None:
    routing.resolve("purchase")  # the tag cache is warm, as it is in a running site
    with CaptureQueriesContext(connection) as queries:
        rows = track_many(items(count))
    statements = [q["sql"].split(None, 1)[0].upper() for q in queries.captured_queries]
    assert statements.count("INSERT") == _batches(count)
    assert statements.count("SELECT") == 1  # the stored rows, read back once
    assert len(statements) == _batches(count) + 1
    if connection.vendor == "postgresql":
        assert statements == ["INSERT", "SELECT"]
    assert Conversion.objects.count() == count
    assert [row.conversion_id for row in rows] == [f"purchase:{n}" for n in range(count)]
    assert all(row.pk and row.status == "pending" for row in rows)


def test_rows_are_stored_as_track_stores_them(shop_tags: dict[str, EventTag]) -> None:
    [item] = items(1)
    [many] = track_many([item])
    one = track(**{**item, "conversion_id": "by-track"})
    differ = {"id", "conversion_id", "created_at", "updated_at", "next_attempt_at", "wire_text"}
    assert {k: v for k, v in vars(many).items() if k not in differ and not k.startswith("_")} == {
        k: v for k, v in vars(one).items() if k not in differ and not k.startswith("_")
    }
    # The event's text too, but for the conversion_id it carries.
    assert many.wire_text and one.wire_text
    assert many.wire_text.replace(many.conversion_id, "") == one.wire_text.replace("by-track", "")
    assert many.hashed_email == hash_email("buyer0@example.com")


def test_repeats_return_the_row_stored_first(shop_tags: dict[str, EventTag]) -> None:
    first = track("purchase", email=EMAIL, conversion_id="order:1", value=5)
    rows = track_many(
        [
            {"event": "purchase", "email": EMAIL, "conversion_id": "order:1", "value": 9},
            {"event": "sign_up", "email": EMAIL, "conversion_id": "customer:1"},
            {"event": "sign_up", "email": EMAIL, "conversion_id": "customer:1"},
            {"event": "refund", "email": EMAIL, "conversion_id": "order:1"},  # no such tag
        ]
    )
    assert rows[0].pk == first.pk and rows[0].value == Decimal("5")
    assert rows[1].pk == rows[2].pk and rows[1].event_tag == shop_tags["sign_up"]
    assert (rows[3].status, rows[3].error_reason, rows[3].event_tag) == ("held", "no_tag", None)
    assert Conversion.objects.count() == 3


def test_an_empty_iterable_stores_nothing(shop_tags: dict[str, EventTag]) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert track_many(iter([])) == []
    assert queries.captured_queries == []


# -- checked first ---------------------------------------------------------------------------


def test_bad_items_are_named_by_index_and_field_and_nothing_is_stored(
    shop_tags: dict[str, EventTag],
) -> None:
    good = items(5)
    good[1]["email"] = "not-an-email"
    good[3].update(value="-1", number_items=0)
    body: list[Any] = [
        *good,
        "not a mapping",
        {"email": EMAIL},  # no event
        {"event": "purchase", "emial": EMAIL},
        {"event": "purchase"},  # no identifier
    ]
    with pytest.raises(ValidationError) as info:
        track_many(body)
    errors = info.value.message_dict
    assert set(errors) == {
        "items[1].email",
        "items[3].value",
        "items[3].number_items",
        "items[5]",
        "items[6]",
        "items[7].emial",
        "items[8].identifiers",
    }
    assert "not a valid address" in errors["items[1].email"][0]
    assert "at least 0" in errors["items[3].value"][0]
    assert "from 1 to" in errors["items[3].number_items"][0]
    assert "with an event" in errors["items[6]"][0]
    assert "not an argument of track()" in errors["items[7].emial"][0]
    assert "At least one user identifier" in errors["items[8].identifiers"][0]
    assert "not-an-email" not in str(info.value) and EMAIL not in str(info.value)
    assert not Conversion.objects.exists()


def test_hostile_keys_are_not_repeated(shop_tags: dict[str, EventTag]) -> None:
    hostile: Any = {"event": "purchase", "twclid": "a", "<script>\x00": 1}
    with pytest.raises(ValidationError) as info:
        track_many([hostile])
    assert list(info.value.message_dict) == ["items[0].(unnamed)"]


# -- after the commit ------------------------------------------------------------------------


def test_conversion_recorded_once_per_row_after_the_commit(
    shop_tags: dict[str, EventTag],
    recorded: list[tuple[str, bool]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    track("purchase", email=EMAIL, conversion_id="purchase:0")  # stored before
    recorded.clear()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        track_many([*items(3), items(1, start=1)[0]])  # the second item twice
        assert recorded == [], "nothing before the commit"
    assert sorted(recorded) == [("purchase:0", False), ("purchase:1", True), ("purchase:2", True)]


def test_a_rolled_back_transaction_records_nothing(
    shop_tags: dict[str, EventTag],
    recorded: list[tuple[str, bool]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        track_many(items(3))
        raise RuntimeError("the import failed")
    assert callbacks == [] and recorded == []
    assert not Conversion.objects.exists()


@pytest.fixture
def second_pixel(pixel: Pixel, shop_tags: dict[str, EventTag]) -> Pixel:
    """sign_up goes through a pixel of its own."""
    second = Pixel.objects.create(pixel_id="second", account=pixel.account)
    EventTag.objects.filter(key="sign_up").update(pixel=second)
    routing.clear_tag_cache()
    return second


@pytest.fixture
def notified(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Pixels whose workers were woken (as on PostgreSQL with NOTIFY_ON_COMMIT)."""
    woken: list[int] = []
    monkeypatch.setattr(wakeup, "supported", lambda alias: True)
    monkeypatch.setattr(wakeup, "notify", lambda pixel_pk, using=None: woken.append(pixel_pk))
    return woken


@pytest.mark.django_db(transaction=True)
def test_workers_are_woken_once_per_pixel(
    pixel: Pixel, second_pixel: Pixel, notified: list[int]
) -> None:
    # Outside a transaction the INSERT commits at once: one wake per pixel, not per row.
    track_many([*items(5), *items(3, event="sign_up")])
    assert sorted(notified) == sorted([pixel.pk, second_pixel.pk])
    notified.clear()
    with transaction.atomic():
        track_many(items(4, start=10))
        track_many(items(2, start=20))
        assert notified == [], "nothing before the commit"
    assert notified == [pixel.pk]  # one per transaction and pixel
    notified.clear()
    track_many([{"event": "refund", "twclid": "a"}])  # held: no pixel to send through
    assert notified == []


@pytest.fixture
def mirrored_pixels(emulator: EmulatorServer, pixel: Pixel) -> tuple[Pixel, Pixel]:
    """Two pixels known to the emulator: purchase goes through the first, sign_up the
    second."""
    emulator.add_pixel(pixel.account.account_id, "second")
    second = Pixel.objects.create(pixel_id="second", account=pixel.account)
    mirror_tag(emulator, pixel, "purchase", "PURCHASE")
    mirror_tag(emulator, second, "sign_up", "SIGN_UP")
    return pixel, second


@pytest.mark.django_db(transaction=True)
def test_send_immediately_sends_once_per_pixel(
    settings: Any,
    emulator: EmulatorServer,
    mirrored_pixels: tuple[Pixel, Pixel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(settings, SEND_IMMEDIATELY="inline")
    sends: list[Any] = []
    real_run_send = tasks.run_send

    def run_send(**kwargs: Any) -> Any:  # SEND_IMMEDIATELY="inline" names the pixel
        sends.append(kwargs["pixel_id"])
        return real_run_send(**kwargs)

    monkeypatch.setattr(tasks, "run_send", run_send)
    track_many([*items(5), *items(3, event="sign_up")])
    assert sorted(sends) == sorted(p.pixel_id for p in mirrored_pixels)
    assert len(received_ids(emulator)) == 8
    assert emulator.requests_per_pixel() == {p.pixel_id: 1 for p in mirrored_pixels}
    configure(settings, SEND_IMMEDIATELY=False)
    sends.clear()
    track_many(items(2, start=30))
    assert sends == [] and len(received_ids(emulator)) == 8


# -- the README's examples -------------------------------------------------------------------


def readme_example(marker: str) -> str:
    readme = (ROOT / "README.md").read_text()
    snippets = re.findall(r"^```python\n(.*?)^```$", readme, re.M | re.S)
    [snippet] = [s for s in snippets if marker in s]
    return str(snippet)


def test_the_readme_commit_false_example(shop_tags: dict[str, EventTag]) -> None:
    customer = types.SimpleNamespace(email=EMAIL)
    exec(readme_example("commit=False"), {"customer": customer})  # noqa: S102
    row = Conversion.objects.get()
    assert (row.event_tag, row.hashed_email) == (shop_tags["sign_up"], hash_email(EMAIL))


def test_the_readme_track_many_example(shop_tags: dict[str, EventTag]) -> None:
    orders = [
        types.SimpleNamespace(pk=n, email=f"b{n}@example.com", total=Decimal(n), paid_at=PAID)
        for n in (1, 2, 3)
    ]
    namespace: dict[str, Any] = {"paid_orders": orders}
    exec(readme_example("track_many("), namespace)  # noqa: S102
    assert [row.conversion_id for row in namespace["rows"]] == ["order:1", "order:2", "order:3"]
    assert Conversion.objects.filter(status="pending", currency="EUR").count() == 3


def test_every_row_of_a_large_call_is_announced(
    shop_tags: dict[str, EventTag],
    recorded: list[tuple[str, bool]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # The read-back behind the signals is split into bounded queries: one query naming
    # every row (one OR each) passed SQLite's expression depth of 1,000 and lost every
    # signal of the call. That single query fails from 998 rows on; 1,000 is enough.
    count = 1_000
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        track_many(items(count))
    assert len(recorded) == count
    assert {conversion_id for conversion_id, _ in recorded} == {
        f"purchase:{n}" for n in range(count)
    }
    assert all(created for _, created in recorded)
