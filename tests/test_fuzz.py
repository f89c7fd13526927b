"""Property tests (hypothesis, fixed seed, bounded examples): no input makes the identifiers,
the capture path or validation misbehave, and local validation agrees with the emulator."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.core.exceptions import ValidationError
from django.test import Client
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from django_xconversions import identifiers, payload
from django_xconversions.context import SESSION_KEY
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import Conversion, EventTag

from .conftest import ACCOUNT_ID, AUTH, PIXEL_ID

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SHA256_HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64)


@seed(1)
@FUZZ
@given(value=st.one_of(st.text(max_size=80), SHA256_HEX, st.emails().map(lambda e: f" {e} ")))
def test_any_email_gives_a_hash_or_a_clear_error(value: str) -> None:
    try:
        hashed = identifiers.hash_email(value)
    except ValidationError as exc:
        assert list(exc.message_dict) == ["email"]
        return
    assert len(hashed) == 64 and hashed == hashed.lower()
    assert identifiers.hash_email(hashed) == hashed  # never hashed twice


@seed(2)
@FUZZ
@given(
    value=st.one_of(
        st.text(max_size=40),
        st.text(alphabet="0123456789 +-().", max_size=25),
        st.from_regex(r"\+1[2-9]\d{2}[2-9]\d{6}", fullmatch=True),
        SHA256_HEX,
    ),
    region=st.sampled_from([None, "US", "GB", "FR"]),
)
def test_any_phone_gives_a_hash_or_a_clear_error(value: str, region: str | None) -> None:
    try:
        hashed = identifiers.hash_phone(value, region)
    except ValidationError as exc:
        assert list(exc.message_dict) == ["phone"]
        return
    assert len(hashed) == 64
    assert identifiers.hash_phone(hashed) == hashed


# -- local validation against the emulator ---------------------------------------------

identifier_items = st.one_of(
    st.fixed_dictionaries({"twclid": st.sampled_from(["23opevjt88psuo13lu8d", "", " "])}),
    st.fixed_dictionaries(
        {"hashed_email": st.one_of(SHA256_HEX, st.sampled_from(["abc", "", "z" * 64]))}
    ),
    st.fixed_dictionaries(
        {"hashed_phone_number": st.one_of(SHA256_HEX, st.sampled_from(["12345", ""]))}
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "ip_address": st.sampled_from(["192.0.2.1", "2001:db8::1", "999.1.1.1", "x", ""]),
            "user_agent": st.sampled_from(["Mozilla/5.0", "", " "]),
        },
    ),
)
events = st.fixed_dictionaries(
    {
        "conversion_time": st.sampled_from(
            [
                "2022-02-18T01:14:00.603Z",
                "2022-02-18T01:14:00Z",
                "2022-02-18 01:14:00.603",
                "1645146840",
                "2022-13-45T25:00:00.000Z",
                "",
            ]
        ),
        "identifiers": st.lists(identifier_items, max_size=3),
        "conversion_id": st.text(max_size=10),
    },
    optional={
        "number_items": st.one_of(st.integers(-2, 5), st.sampled_from(["2", 1.5])),
        "price_currency": st.sampled_from(["USD", "EUR", "JPY", "usd", "XYZ", ""]),
        "value": st.one_of(
            st.sampled_from(["20.00", "1e3", "abc", "", "NaN", "-5.5"]),
            st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
            st.integers(-10, 10_000),
        ),
        "description": st.text(max_size=20),
        "contents": st.lists(
            st.fixed_dictionaries(
                {"content_id": st.text(max_size=5)},
                optional={
                    "content_price": st.one_of(st.floats(-1, 1e6), st.sampled_from(["9.99", None])),
                    "num_items": st.one_of(st.integers(-1, 4), st.just("3")),
                },
            ),
            max_size=2,
        ),
    },
)


@pytest.fixture
def tag_event_id(emulator: EmulatorServer) -> str:
    return str(emulator.add_tag(ACCOUNT_ID, name="Purchase")["website_tag_id"])


@seed(3)
@FUZZ
@given(event=events)
def test_local_validation_and_the_emulator_agree(
    emulator: EmulatorServer, tag_event_id: str, event: Any
) -> None:
    event = {**event, "event_id": tag_event_id}
    local = [v.message for v in payload.validate(event)]
    answer = requests.post(
        f"{emulator.url}/12/measurement/conversions/{PIXEL_ID}",
        json={"conversions": [event]},
        auth=AUTH,
        timeout=5,
    )
    if not local:
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 400, (local, answer.text)
    remote = [error["message"] for error in answer.json()["errors"]]
    assert remote and set(remote) <= set(local), (remote, local)


# -- the capture path under arbitrary requests ------------------------------------------

# WSGI servers hand Django header and query-string values decoded as ISO-8859-1.
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


@pytest.mark.django_db
@seed(4)
@FUZZ
@given(
    query=st.one_of(
        header_text,
        st.builds(lambda v: f"twclid={v}", header_text),
        st.builds(lambda v: f"twclid={v}", st.text(alphabet="abc-_%2F&=", max_size=300)),
        st.builds(lambda v: f"a=1&twclid={v}&twclid=x", header_text),
    ),
    gpc=st.sampled_from(["", "1", "0", " 1 "]),
    forwarded=header_text,
    agent=header_text,
    remote=st.one_of(st.sampled_from(["203.0.113.9", "::1", ""]), header_text),
)
def test_the_middleware_never_fails_and_never_stores_an_invalid_twclid(
    shop_tags: dict[str, EventTag], query: str, gpc: str, forwarded: str, agent: str, remote: str
) -> None:
    client = Client()
    headers = {
        "QUERY_STRING": query,
        "HTTP_SEC_GPC": gpc,
        "HTTP_X_FORWARDED_FOR": forwarded,
        "HTTP_USER_AGENT": agent,
        "REMOTE_ADDR": remote,
    }
    assert client.get("/shop/", **headers).status_code == 200
    stored = client.session.get(SESSION_KEY)
    if stored is not None:
        identifiers.normalize_twclid(stored["twclid"])  # raises if it was not valid
    answer = client.post("/shop/sign-up/", {"email": "fuzz@example.com"}, **headers)
    assert answer.status_code == 200
    row = Conversion.objects.get(conversion_id=f"shop.member:{int(answer.content)}")
    assert row.status in ("pending", "skipped")
