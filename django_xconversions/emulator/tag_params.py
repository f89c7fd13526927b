"""Validation of web_event_tags query parameters, as X checks them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_xconversions.emulator.rules import Error, error, invalid
from django_xconversions.emulator.world import CLICK_WINDOWS, TAG_TYPES, VIEW_THROUGH_WINDOWS

REQUIRED_ON_CREATE = ("click_window", "name", "retargeting_enabled", "type", "view_through_window")


class ParamError(Exception):
    def __init__(self, errors: list[Error]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def _int_in(name: str, raw: str, allowed: tuple[int, ...]) -> int:
    # The "Expected ..., got ... for <param>" wording follows X's conversion_time message.
    try:
        value = int(raw)
    except ValueError:
        raise ParamError([invalid(f'Expected Integer, got "{raw}" for {name}', name)]) from None
    if value not in allowed:
        shown = ", ".join(str(v) for v in allowed)
        raise ParamError([invalid(f'Expected one of [{shown}], got "{raw}" for {name}', name)])
    return value


def parse_boolean(name: str, raw: str) -> bool:
    if raw not in ("true", "false"):
        raise ParamError([invalid(f'Expected Boolean, got "{raw}" for {name}', name)])
    return raw == "true"


def _type(raw: str) -> str:
    if raw not in TAG_TYPES:
        shown = ", ".join(TAG_TYPES)
        raise ParamError(
            [invalid(f'Expected enum value in [{shown}], got "{raw}" for type', "type")]
        )
    return raw


def parse_tag_params(query: Mapping[str, str], *, create: bool) -> dict[str, Any]:
    """Typed tag fields from the query string; raises ParamError with X-style errors."""
    if create:
        missing = [name for name in REQUIRED_ON_CREATE if name not in query]
        if missing:
            raise ParamError([error("MISSING_PARAMETER", f'"{n}" is missing', n) for n in missing])
    fields: dict[str, Any] = {}
    if "name" in query:
        if not query["name"].strip():
            raise ParamError([invalid('Expected non-empty String, got "" for name', "name")])
        fields["name"] = query["name"]
    if "type" in query:
        fields["type"] = _type(query["type"])
    if "click_window" in query:
        fields["click_window"] = _int_in("click_window", query["click_window"], CLICK_WINDOWS)
    if "view_through_window" in query:
        fields["view_through_window"] = _int_in(
            "view_through_window", query["view_through_window"], VIEW_THROUGH_WINDOWS
        )
    if "retargeting_enabled" in query:
        fields["retargeting_enabled"] = parse_boolean(
            "retargeting_enabled", query["retargeting_enabled"]
        )
    return fields


def check_windows(click_window: int, view_through_window: int) -> None:
    if view_through_window > click_window:
        raise ParamError(
            [
                invalid(
                    "view_through_window must be less than or equal to click_window",
                    "view_through_window",
                )
            ]
        )


def parse_count(raw: str | None) -> int:
    if raw is None:
        return 200
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise ParamError(
            [invalid(f'Expected Integer between 1 and 1000, got "{raw}" for count', "count")]
        )
    return value
