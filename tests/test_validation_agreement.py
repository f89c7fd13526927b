"""Local validation (payload.py) and the emulator agree on every rule, event by event:
the client refuses locally exactly what X (the emulator) refuses, with the same message."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from django_xconversions import payload
from django_xconversions.emulator import EmulatorServer
from tests.x_messages import DOCUMENTED_400, DOCUMENTED_ACCEPTED, INFERRED_400

from .conftest import ACCOUNT_ID, AUTH, PIXEL_ID


def post(emu: EmulatorServer, conversions: Any) -> requests.Response:
    url = f"{emu.url}/12/measurement/conversions/{PIXEL_ID}"
    return requests.post(url, json={"conversions": conversions}, auth=AUTH, timeout=5)


@pytest.fixture
def event_id(emulator: EmulatorServer) -> str:
    return str(emulator.add_tag(ACCOUNT_ID, name="Purchase")["website_tag_id"])


def good(event_id: str) -> dict[str, Any]:
    return {
        "conversion_time": "2022-02-18T01:14:00.603Z",
        "event_id": event_id,
        "identifiers": [{"twclid": "23opevjt88psuo13lu8d020qkn"}],
        "conversion_id": "c1",
    }


def test_a_valid_event_passes_both(emulator: EmulatorServer, event_id: str) -> None:
    assert payload.validate(good(event_id)) == []
    assert post(emulator, [good(event_id)]).status_code == 200


@pytest.mark.parametrize("overrides", DOCUMENTED_ACCEPTED)
def test_both_accept_what_the_reference_shows_accepted(
    emulator: EmulatorServer, event_id: str, overrides: dict[str, Any]
) -> None:
    event = {**good(event_id), **overrides}
    assert payload.validate(event) == []
    assert post(emulator, [event]).status_code == 200


@pytest.mark.parametrize(("overrides", "message", "parameter"), DOCUMENTED_400 + INFERRED_400)
def test_emulator_and_local_validation_give_the_same_x_message(
    emulator: EmulatorServer, event_id: str, overrides: dict[str, Any], message: str, parameter: str
) -> None:
    event = {**good(event_id), **overrides}
    response = post(emulator, [event])
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": "INVALID_PARAMETER", "message": message, "parameter": parameter}
    ]
    assert [(v.message, v.parameter) for v in payload.validate(event)] == [(message, parameter)]
    assert emulator.received == []


def test_count_limit_message_both_sides(emulator: EmulatorServer, event_id: str) -> None:
    events = [{**good(event_id), "conversion_id": str(n)} for n in range(501)]
    response = post(emulator, events)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "Conversion count limit is 500"
    assert [v.message for v in payload.validate_batch(events)] == ["Conversion count limit is 500"]
