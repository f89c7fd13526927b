"""Held conversions: a bound order or a track() call whose event cannot be routed yet (no
tag with the key, a tag without a pixel, a tag deleted on X) is stored ``held`` with its
reason and the fix, and routed as soon as the configuration is fixed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from django_xconversions import routing, sources, track, tracking
from django_xconversions.emulator import EmulatorServer
from django_xconversions.health import health
from django_xconversions.identifiers import hash_email
from django_xconversions.models import Conversion, EventTag, Pixel
from tests.conftest import configure, received_ids
from tests.shop.models import Order

pytestmark = pytest.mark.django_db


def new_tag(of: Pixel, key: str | None = "purchase", **fields: Any) -> EventTag:
    """A tag of the pixel's account, without a pixel unless ``fields`` give one."""
    values: dict[str, Any] = {
        "account": of.account,
        "pixel": None,
        "remote_id": f"r{key}",
        "website_tag_id": f"w{key}".replace("_", ""),
        "key": key,
        "name": (key or "tag").title(),
        "type": "PURCHASE",
        **fields,
    }
    return EventTag.objects.create(**values)


def paid_order(**fields: Any) -> Order:
    values = {"email": "jane@example.com", "total": Decimal("25.50"), "status": "paid", **fields}
    return Order.objects.create(**values)


@pytest.fixture
def superuser_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def changelist() -> str:
    return reverse("admin:xconversions_conversion_changelist")


# -- nothing bound is dropped ----------------------------------------------------------


def test_a_tag_without_a_pixel_holds_the_order_with_the_fix(pixel: Pixel) -> None:
    tag = new_tag(pixel)
    order = paid_order()
    row = Conversion.objects.get()
    assert Order.objects.filter(pk=order.pk).exists()
    assert (row.status, row.error_reason, row.event_key) == ("held", "no_pixel", "purchase")
    assert row.event_tag_id is None and row.pixel_id is None
    assert row.conversion_id == f"shop.order:{order.pk}"
    assert row.hashed_email == hash_email("jane@example.com")
    assert row.value == Decimal("25.50") and row.number_items == 1
    assert f"'{tag.name}'" in row.last_error and "choose its pixel" in row.last_error
    assert "jane@example.com" not in str(Conversion.objects.values().get())


def test_a_sources_key_typo_holds_the_order_and_names_the_key(
    settings: Any, pixel: Pixel, shop_tags: dict[str, EventTag]
) -> None:
    original = settings.XCONVERSIONS
    configure(settings, SOURCES=[{"model": "shop.Order", "event": "purchse", "email": "email"}])
    sources.connect()
    try:
        order = paid_order()
    finally:
        settings.XCONVERSIONS = original
        sources.connect()
    row = Conversion.objects.get()
    assert order.pk and (row.status, row.error_reason, row.event_key) == (
        "held",
        "no_tag",
        "purchse",
    )
    assert row.last_error.startswith("No event tag has the key 'purchse'")
    assert 'XCONVERSIONS["SOURCES"]' in row.last_error


def test_track_with_an_unknown_key_holds_instead_of_dropping(pixel: Pixel) -> None:
    row = track("refund", email="a@example.com", conversion_id="refund:1")
    assert row.pk and (row.status, row.error_reason, row.event_key) == ("held", "no_tag", "refund")
    again = track("refund", email="a@example.com", conversion_id="refund:1", value=3)
    assert again.pk == row.pk and Conversion.objects.count() == 1


def test_a_tag_deleted_on_x_holds_as_tag_deleted(pixel: Pixel) -> None:
    new_tag(pixel, pixel=pixel, deleted=True)
    row = track("purchase", twclid="click1")
    assert (row.status, row.error_reason) == ("held", "tag_deleted")
    assert "deleted on X" in row.last_error


def test_a_refused_visitor_is_skipped_even_when_held(pixel: Pixel, rf: Any) -> None:
    request = rf.get("/", HTTP_SEC_GPC="1")
    row = track("refund", request=request, email="a@example.com")
    assert (row.status, row.error_reason, row.hashed_email) == ("skipped", "consent", "")


# -- routed when the configuration is fixed ---------------------------------------------


def test_choosing_the_pixel_routes_held_conversions_and_the_next_send_delivers_them(
    emulator: EmulatorServer, pixel: Pixel
) -> None:
    remote = emulator.add_tag(pixel.account.account_id, name="Purchase", type="PURCHASE")
    tag = new_tag(pixel, remote_id=remote["id"], website_tag_id=remote["website_tag_id"])
    orders = [paid_order(email=f"buyer{n}@example.com") for n in range(3)]
    assert set(Conversion.objects.values_list("status", flat=True)) == {"held"}
    call_command("send_conversions", stdout=None)
    assert received_ids(emulator) == []

    tag.pixel = pixel
    tag.save()  # the admin's "choose a pixel"
    rows = Conversion.objects.all()
    assert {(r.status, r.event_tag_id, r.pixel_id, r.error_reason) for r in rows} == {
        ("pending", tag.pk, pixel.pk, "")
    }
    call_command("send_conversions", stdout=None)
    assert sorted(received_ids(emulator)) == sorted(f"shop.order:{o.pk}" for o in orders)
    assert set(Conversion.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.parametrize("stored_before", [False, True], ids=["tag-new", "tag-without-pixel"])
def test_the_sync_of_readme_step_5_routes_held_conversions(
    emulator: EmulatorServer, pixel: Pixel, stored_before: bool
) -> None:
    from django_xconversions.tags import sync_account_tags

    remote = emulator.add_tag(pixel.account.account_id, name="Purchase", type="PURCHASE")
    if stored_before:
        new_tag(pixel, remote_id=remote["id"], website_tag_id=remote["website_tag_id"])
    order = paid_order()
    held = Conversion.objects.get()
    assert (held.status, held.error_reason) == ("held", "no_pixel" if stored_before else "no_tag")
    sync_account_tags(pixel.account)  # the account has one pixel: the sync sets it
    row = Conversion.objects.get()
    assert (row.status, row.pixel_id, row.conversion_id) == (
        "pending",
        pixel.pk,
        f"shop.order:{order.pk}",
    )
    call_command("send_conversions", stdout=None)
    assert received_ids(emulator) == [f"shop.order:{order.pk}"]


def test_giving_a_tag_the_key_routes_the_typo_held_conversions(pixel: Pixel) -> None:
    track("purchse", twclid="click1", conversion_id="o1")
    tag = new_tag(pixel, key=None, pixel=pixel)
    tag.key = "purchse"
    tag.save(update_fields=["key"])
    row = Conversion.objects.get()
    assert (row.status, row.event_tag_id, row.pixel_id) == ("pending", tag.pk, pixel.pk)


def test_a_bulk_update_is_routed_by_route_held(pixel: Pixel) -> None:
    tag = new_tag(pixel)
    track("purchase", twclid="click1", conversion_id="o1")
    EventTag.objects.filter(pk=tag.pk).update(pixel=pixel)  # no signal, as a bulk sync
    assert Conversion.objects.get().status == "held"
    result = routing.route_held()
    assert (result.routed, result.duplicates) == (1, 0)
    assert Conversion.objects.get().status == "pending"
    # The tag cache was cleared too: the next conversion is routed at once.
    assert track("purchase", twclid="click2").status == "pending"


def test_a_held_repeat_of_a_stored_conversion_is_dropped_on_routing(pixel: Pixel) -> None:
    tag = new_tag(pixel, pixel=pixel)
    first = track("purchase", twclid="click1", conversion_id="o1", value=10)
    EventTag.objects.filter(pk=tag.pk).update(pixel=None)
    tracking.clear_tag_cache()
    repeat = track("purchase", twclid="click1", conversion_id="o1", value=99)
    assert repeat.status == "held" and repeat.pk != first.pk
    EventTag.objects.filter(pk=tag.pk).update(pixel=pixel)
    result = routing.route_held(["purchase"])
    assert (result.routed, result.duplicates) == (0, 1)
    kept = Conversion.objects.get()
    assert kept.pk == first.pk and kept.value == Decimal("10")  # the first stored wins


def test_the_reason_follows_the_configuration(pixel: Pixel) -> None:
    track("purchase", twclid="click1")
    assert Conversion.objects.get().error_reason == "no_tag"
    tag = new_tag(pixel)  # the key now exists, still without a pixel
    row = Conversion.objects.get()
    assert (row.status, row.error_reason) == ("held", "no_pixel")
    assert f"'{tag.name}'" in row.last_error


def test_a_stale_tag_cache_never_holds_a_routable_conversion(pixel: Pixel) -> None:
    tag = new_tag(pixel)
    assert track("purchase", twclid="click1").status == "held"  # cached: no pixel
    # Another process chooses the pixel: this process's cache did not hear of it.
    EventTag.objects.filter(pk=tag.pk).update(pixel=pixel)
    assert track("purchase", twclid="click2").status == "pending"
    routing.route_held()  # what a sync or the worker runs: the earlier one follows
    assert set(Conversion.objects.values_list("status", flat=True)) == {"pending"}


def test_the_admin_action_routes_the_chosen_held_conversions(
    pixel: Pixel, superuser_client: Client
) -> None:
    tag = new_tag(pixel)
    rows = [track("purchase", twclid=f"click{n}") for n in range(2)]
    other = track("nothing_yet", twclid="click9")
    page = superuser_client.get(changelist()).content.decode()
    assert "route_held_action" in page and "Event tag has no pixel" in page
    EventTag.objects.filter(pk=tag.pk).update(pixel=pixel)
    answer = superuser_client.post(
        changelist(),
        {"action": "route_held_action", ACTION_CHECKBOX_NAME: [r.pk for r in [*rows, other]]},
        follow=True,
    )
    text = answer.content.decode()
    assert "2 held conversions routed" in text
    assert "1 still held" in text and "nothing_yet" in text
    assert Conversion.objects.filter(status="pending").count() == 2
    assert Conversion.objects.get(pk=other.pk).status == "held"


# -- visible in health ------------------------------------------------------------------


def test_health_counts_held_per_reason_with_the_fix(pixel: Pixel, superuser_client: Client) -> None:
    new_tag(pixel)
    track("purchase", twclid="click1")
    track("purchase", twclid="click2")
    track("purchse", twclid="click3")
    state = health()
    assert state.by_status["held"] == 3
    held = {h.reason: h for h in state.held}
    assert (held["no_pixel"].count, held["no_pixel"].keys) == (2, ["purchase"])
    assert (held["no_tag"].count, held["no_tag"].keys) == (1, ["purchse"])
    assert "pixel" in held["no_pixel"].fix and "SOURCES" in held["no_tag"].fix

    html = superuser_client.get(changelist()).content.decode()
    assert 'data-status="held">3<' in html
    assert 'data-held-reason="no_pixel">2<' in html and held["no_pixel"].fix in html

    api = APIClient()
    api.force_authenticate(User.objects.get(username="admin"))
    data = api.get(reverse("xconversions_api:health")).json()
    assert data["by_status"]["held"] == 3
    assert {h["reason"]: h["count"] for h in data["held"]} == {"no_pixel": 2, "no_tag": 1}


def test_the_pixel_tag_renders_nothing_for_a_held_conversion(pixel: Pixel) -> None:
    from django.template import Context, Template

    row = track("purchase", twclid="click1")
    html = Template("{% load xconversions %}{% xconversions_event c %}").render(Context({"c": row}))
    assert html == ""


def test_send_conversions_summary_counts_held_per_reason_with_the_fix(pixel: Pixel) -> None:
    import io
    import json

    new_tag(pixel)  # no pixel chosen
    track("purchase", twclid="click1")
    track("purchse", twclid="click2")
    track("purchse", twclid="click3")
    out = io.StringIO()
    call_command("send_conversions", stdout=out)
    text = out.getvalue()
    assert "Held (not routable yet): 3" in text
    assert "No event tag with this key: 2 (keys: purchse)." in text
    assert "Event tag has no pixel: 1 (keys: purchase). Choose the pixel" in text
    out = io.StringIO()
    call_command("send_conversions", "--json", stdout=out)
    held = json.loads(out.getvalue())["held"]
    assert {(h["reason"], h["count"]) for h in held} == {("no_tag", 2), ("no_pixel", 1)}
