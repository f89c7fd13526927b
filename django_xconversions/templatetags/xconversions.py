"""Browser pixel tags that deduplicate with the server-side conversions.

``{% xconversions_pixel %}`` renders X's base pixel code; ``{% xconversions_event c %}``
fires the pixel event for a stored Conversion with the same conversion_id, so X counts
the browser and server events once (same event and conversion_id within 48 hours).

Every value goes through JSON with <, >, & and the JavaScript line separators escaped,
so no product name or id can end the script element or inject code. Nothing renders for
a request that refused tracking (Sec-GPC, CONSENT_CHECK), nor for a conversion without a
tag and pixel (held).
"""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from django_xconversions import context as request_context
from django_xconversions.conf import xsettings
from django_xconversions.models import Conversion, Pixel
from django_xconversions.payload import CONTENT_KEYS, build_contents, optional_fields

register = template.Library()

PIXEL_SCRIPT = "https://static.ads-twitter.com/uwt.js"
# X's API names -> the pixel's, for the optional fields both carry (not description).
PIXEL_NAMES = {"value": "value", "price_currency": "currency", "number_items": "number_items"}
_JS_ESCAPES = {
    ord("<"): "\\u003C",
    ord(">"): "\\u003E",
    ord("&"): "\\u0026",
    ord("\u2028"): "\\u2028",
    ord("\u2029"): "\\u2029",
}


def js_value(value: Any) -> str:
    """``value`` as a JavaScript literal that is safe inside a <script> element."""
    return json.dumps(value, ensure_ascii=False, default=str).translate(_JS_ESCAPES)


def _allowed(context: template.Context) -> bool:
    request = context.get("request")
    return request is None or request_context.for_request(request).consent


def _nonce_attribute(nonce: str | None) -> SafeString:
    return format_html(' nonce="{}"', nonce) if nonce else mark_safe("")


def _script(body: str, nonce: str | None) -> SafeString:
    # body is built from js_value() literals only.
    return mark_safe(f"<script{_nonce_attribute(nonce)}>{body}</script>")  # noqa: S308


def default_pixel_id() -> str:
    configured = xsettings.PIXEL_ID
    if configured:
        return configured
    pixels = list(Pixel.objects.values_list("pixel_id", flat=True)[:2])
    return pixels[0] if len(pixels) == 1 else ""


@register.simple_tag(takes_context=True)
def xconversions_pixel(
    context: template.Context, pixel_id: str | None = None, nonce: str | None = None
) -> SafeString:
    """X's base pixel code for ``pixel_id`` (default: PIXEL_ID, else the only Pixel)."""
    pixel = pixel_id or default_pixel_id()
    if not pixel or not _allowed(context):
        return mark_safe("")
    body = (
        "!function(e,t,n,s,u,a){e.twq||(s=e.twq=function(){s.exe?s.exe.apply(s,arguments)"
        ":s.queue.push(arguments);},s.version='1.1',s.queue=[],u=t.createElement(n),"
        f"u.async=!0,u.src={js_value(PIXEL_SCRIPT)},a=t.getElementsByTagName(n)[0],"
        "a.parentNode.insertBefore(u,a))}(window,document,'script');"
        f"twq('config',{js_value(pixel)});"
    )
    return _script(body, nonce)


def event_parameters(conversion: Conversion) -> dict[str, Any]:
    """What the pixel event carries: the stored row's conversion_id, value and contents.

    The pixel hashes email and phone itself from raw values, which are never stored;
    the server-side event carries the hashes instead.
    """
    parameters: dict[str, Any] = {"conversion_id": conversion.conversion_id}
    fields = optional_fields(conversion, value=float)  # the pixel takes a number
    parameters.update((PIXEL_NAMES[name], v) for name, v in fields.items() if name in PIXEL_NAMES)
    contents = build_contents(
        {key: item[key] for key in CONTENT_KEYS if key in item}
        for item in conversion.contents or []
        if isinstance(item, dict)
    )
    if contents:
        parameters["contents"] = contents
    return parameters


@register.simple_tag(takes_context=True)
def xconversions_event(
    context: template.Context, conversion: Conversion | None, nonce: str | None = None
) -> SafeString:
    """``twq('event', 'tw-<pixel>-<event>', {...})`` for a stored conversion."""
    if conversion is None or not _allowed(context):
        return mark_safe("")
    if conversion.status == Conversion.Status.SKIPPED:
        return mark_safe("")
    # A held conversion has no tag or pixel yet: no browser event to pair it with.
    pixel, tag = conversion.pixel, conversion.event_tag
    if pixel is None or tag is None:
        return mark_safe("")
    event_id = f"tw-{pixel.pixel_id}-{tag.website_tag_id}"
    body = f"twq('event',{js_value(event_id)},{js_value(event_parameters(conversion))});"
    return _script(body, nonce)
