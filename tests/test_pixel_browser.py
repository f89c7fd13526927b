"""In Chromium: the thank-you page queues the pixel event with the stored conversion_id,
and a hostile product name stays text."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from django_xconversions.models import Conversion, EventTag
from tests.shop.models import Order

pytestmark = pytest.mark.django_db(transaction=True)
HOSTILE = "</script><script>alert(1)</script>"


def test_thank_you_page_fires_the_event_and_runs_no_injected_script(
    page: Any, live_server: Any, shop_tags: dict[str, EventTag]
) -> None:
    order = Order.objects.create(
        email="a@example.com", total=Decimal("30"), status="paid", product_name=HOSTILE
    )
    stored = Conversion.objects.get(conversion_id=f"shop.order:{order.pk}")
    # X's script cannot load offline; the queue the base code keeps shows every call.
    page.route("https://static.ads-twitter.com/**", lambda route: route.abort())
    page.goto(f"{live_server.url}/shop/orders/{order.pk}/thanks/")
    calls = page.evaluate("() => window.twq.queue.map((args) => Array.from(args))")
    tag = shop_tags["purchase"]
    assert calls[0] == ["config", tag.pixel.pixel_id]
    name, event_id, parameters = calls[1]
    assert (name, event_id) == ("event", f"tw-{tag.pixel.pixel_id}-{tag.website_tag_id}")
    assert parameters["conversion_id"] == stored.conversion_id
    assert parameters["contents"][0]["content_name"] == HOSTILE
    assert page.dialogs == []
    assert page.locator("script:not([src])").count() == 2  # ours, and no injected one
