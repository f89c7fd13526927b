"""The emulator tests' world and requests: credentials, one account and pixel, events and
the conversions call, signed as a client would (Django-free, like the emulator)."""

from __future__ import annotations

from typing import Any

import requests
from requests_oauthlib import OAuth1

from django_xconversions.emulator import EmulatorServer

CONSUMER_KEY, CONSUMER_SECRET = "ck-test", "cs-test"
USER_ID, TOKEN, TOKEN_SECRET = "756201191646691328", "756201191646691328-tok", "tok-secret"
ACCOUNT_ID, PIXEL_ID, PIXEL_TOKEN = "18ce54d4x5t", "o8z6j", "pixel-token-1"
AUTH = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET)
HASH = "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8"
UNAUTHORIZED = {
    "code": "UNAUTHORIZED_ACCESS",
    "message": "This request is not properly authenticated",
    "parameter": None,
}


def event(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "conversion_time": "2022-02-18T01:14:00.603Z",
        "event_id": event_id,
        "identifiers": [{"twclid": "23opevjt88psuo13lu8d020qkn"}],
        "conversion_id": "c1",
        **overrides,
    }


def conversions_url(emu: EmulatorServer, pixel: str = PIXEL_ID, version: int = 12) -> str:
    return f"{emu.url}/{version}/measurement/conversions/{pixel}"


def post(
    emu: EmulatorServer, events: Any, *, pixel: str = PIXEL_ID, **kwargs: Any
) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    timeout = kwargs.pop("timeout", 5)
    url = conversions_url(emu, pixel)
    return requests.post(url, json={"conversions": events}, timeout=timeout, **kwargs)


def tags_url(emu: EmulatorServer, *rest: str) -> str:
    return "/".join([f"{emu.url}/12/accounts/{ACCOUNT_ID}/web_event_tags", *rest])


def received_ids(emu: EmulatorServer) -> list[str]:
    return [r["conversion"]["conversion_id"] for r in emu.received]
