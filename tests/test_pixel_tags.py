"""Pixel template tags: X's base code, the event with the stored conversion_id, and no
way for shop data to break out of the script."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.template import Context, Template
from django.test import RequestFactory

from django_xconversions.models import Conversion, EventTag, Pixel
from django_xconversions.templatetags.xconversions import js_value
from tests.conftest import configure
from tests.shop.models import Order

pytestmark = pytest.mark.django_db
HOSTILE = "</script><script>alert(1)</script>"
EVENT_CALL = re.compile(r"twq\('event',(\"[^\"]*\"),(\{.*\})\);</script>")


def render(source: str, **context: Any) -> str:
    return Template("{% load xconversions %}" + source).render(Context(context))


def test_base_code_loads_uwt_and_configures_the_only_pixel(pixel: Pixel) -> None:
    html = render("{% xconversions_pixel %}")
    assert '"https://static.ads-twitter.com/uwt.js"' in html
    assert f"twq('config',\"{pixel.pixel_id}\");" in html


def test_base_code_uses_the_configured_pixel_and_a_csp_nonce(settings: Any) -> None:
    configure(settings, PIXEL_ID="abc12")
    html = render('{% xconversions_pixel nonce="n0nce" %}')
    assert html.startswith('<script nonce="n0nce">') and "twq('config',\"abc12\")" in html


def test_no_pixel_and_no_event_when_the_visitor_refused_tracking(
    pixel: Pixel, shop_tags: dict[str, EventTag]
) -> None:
    order = Order.objects.create(email="a@example.com", total=Decimal("9"), status="paid")
    conversion = Conversion.objects.get(conversion_id=f"shop.order:{order.pk}")
    request = RequestFactory().get("/", HTTP_SEC_GPC="1")
    source = "{% xconversions_pixel %}{% xconversions_event conversion %}"
    assert render(source, request=request, conversion=conversion) == ""
    assert render(source, request=RequestFactory().get("/"), conversion=conversion) != ""


def test_the_event_carries_the_stored_conversion_id_and_escapes_everything(
    shop_tags: dict[str, EventTag],
) -> None:
    order = Order.objects.create(
        email="a@example.com", total=Decimal("12.50"), status="paid", product_name=HOSTILE,
        quantity=2,
    )  # fmt: skip
    conversion = Conversion.objects.get(conversion_id=f"shop.order:{order.pk}")
    html = render("{% xconversions_event conversion %}", conversion=conversion)
    assert "</script><script>" not in html and html.count("</script>") == 1
    event_id, parameters = EVENT_CALL.search(html).groups()  # type: ignore[union-attr]
    tag = shop_tags["purchase"]
    assert json.loads(event_id) == f"tw-{tag.pixel.pixel_id}-{tag.website_tag_id}"
    decoded = json.loads(parameters)
    assert decoded["conversion_id"] == conversion.conversion_id
    assert decoded["value"] == 12.5 and decoded["currency"] == "USD"
    assert decoded["contents"][0]["content_name"] == HOSTILE
    assert decoded["contents"][0]["num_items"] == 2


@pytest.mark.parametrize("text", [HOSTILE, "a\u2028b", "<!--", "&amp;", "'\"\\"])
def test_js_values_round_trip_and_never_contain_markup(text: str) -> None:
    literal = js_value({"name": text})
    assert not set("<>&\u2028\u2029") & set(literal)
    assert json.loads(literal) == {"name": text}
