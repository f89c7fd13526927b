"""A read-only page of what one pixel's conversions requests carried (emulator only, not
part of X's API): the request log, newest first, and every conversion X accepted with its
payload, optionally narrowed to one conversion_id. Developers follow a link here from
their shop to see what X received."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;"
    "color:#1f2328}.scroll{overflow-x:auto;margin-bottom:2em}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #d8dee4;"
    "vertical-align:top}pre{margin:0;white-space:pre-wrap;word-break:break-all;"
    "font-size:.85em}.refused{color:#b42318}.note{color:#59636e}"
)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}"


def _cell(value: object) -> str:
    return f"<td>{html.escape(str(value))}</td>"


def _request_rows(requests: Iterable[dict[str, Any]], conversion_id: str | None) -> str:
    rows = []
    for entry in requests:
        ids = entry.get("conversion_ids") or []
        if conversion_id is not None and conversion_id not in ids:
            continue
        status = entry["status"]
        answer = "connection reset" if status is None else str(status)
        klass = "" if status == 200 else " class='refused'"
        rows.append(
            f"<tr{klass}>{_cell(_when(entry['time']) + ' UTC')}{_cell(answer)}"
            f"{_cell(entry['events'])}{_cell(', '.join(str(i) for i in ids))}</tr>"
        )
    return "".join(reversed(rows))


def _received_rows(received: Iterable[dict[str, Any]], conversion_id: str | None) -> str:
    rows = []
    for record in received:
        conversion = record["conversion"]
        if conversion_id is not None and conversion.get("conversion_id") != conversion_id:
            continue
        payload = json.dumps(conversion, indent=2, sort_keys=True)
        rows.append(
            f"<tr>{_cell(_when(record['received_at']) + ' UTC')}"
            f"{_cell(conversion.get('conversion_id', ''))}{_cell(record['event_id'])}"
            f"{_cell(record['debug_id'])}<td><pre>{html.escape(payload)}</pre></td></tr>"
        )
    return "".join(reversed(rows))


def render(
    pixel_id: str,
    requests: list[dict[str, Any]],
    received: list[dict[str, Any]],
    conversion_id: str | None = None,
) -> bytes:
    """The page for ``pixel_id``: its logged requests and the conversions X accepted."""
    pixel = html.escape(pixel_id)
    title = f"What X received for pixel {pixel}"
    scope = ""
    if conversion_id is not None:
        everything = f"/_emulator/pixels/{quote(pixel_id, safe='')}"
        scope = (
            f"<p>Conversion <code>{html.escape(conversion_id)}</code> only "
            f"(<a href='{html.escape(everything)}'>all of this pixel</a>).</p>"
        )
    request_rows = _request_rows(requests, conversion_id)
    received_rows = _received_rows(received, conversion_id)
    nothing = "<p class='note'>Nothing yet: the sender has not sent it, or X refused it.</p>"
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1>"
        "<p class='note'>A page of the local X Ads API emulator (X has no such page).</p>"
        f"{scope}<h2>Accepted conversions, newest first</h2>"
        + (
            "<div class='scroll'><table><tr><th>Received</th><th>conversion_id</th>"
            "<th>event_id</th><th>debug_id</th><th>Payload</th></tr>"
            f"{received_rows}</table></div>"
            if received_rows
            else nothing
        )
        + "<h2>Requests, newest first</h2>"
        + (
            "<div class='scroll'><table><tr><th>Arrived</th><th>Answer</th><th>Events</th>"
            f"<th>conversion_ids</th></tr>{request_rows}</table></div>"
            if request_rows
            else "<p class='note'>No request yet.</p>"
        )
        + "</body></html>"
    )
    return body.encode()
