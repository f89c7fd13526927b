"""X's answer about a web event tag, checked before it is stored.

A tag X lists is trusted only as far as the EventTag columns go: an id over 32 characters
would be a DataError, a missing id a KeyError, ``click_window: "thirty"`` a ValueError, an
event id that is not base36 could never be sent. ``problems()`` names each broken field
and its rule; the sync skips such an entry and reports it, and stores the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.utils.dateparse import parse_datetime

from django_xconversions.errors import XConversionsError
from django_xconversions.models import EventTag

ID_MAX_LENGTH = 32  # EventTag.remote_id and website_tag_id
NAME_MAX_LENGTH = 255  # EventTag.name
BASE36_ID = re.compile(rf"[0-9a-z]{{1,{ID_MAX_LENGTH}}}")
# Statuses are X's to add to (UNVERIFIED and TRACKING today): any short upper-case word.
STATUS = re.compile(r"[A-Z_]{1,16}")
SHOWN_CHARACTERS = 40


class MalformedTag(XConversionsError):
    """X answered a tag write with a tag this app cannot store."""


def shown(value: Any) -> str:
    """``value`` as a message may quote it: short, printable."""
    text = repr(value)
    if len(text) > SHOWN_CHARACTERS:
        text = text[:SHOWN_CHARACTERS] + "..."
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _choices(values: tuple[int, ...]) -> str:
    return ", ".join(str(v) for v in values)


def _unstorable_text(value: Any) -> bool:
    """Text neither PostgreSQL (NUL) nor UTF-8 (lone surrogates) can hold."""
    if not isinstance(value, str):
        return False
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unstorable_anywhere(data: Any) -> bool:
    """Whether any key or text in ``data`` is unstorable (the raw JSON is kept too)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif _unstorable_text(value):
            return True
    return False


def _base36_id(data: Mapping[str, Any], name: str) -> str | None:
    if name not in data:
        return f"{name} is missing."
    value = data[name]
    if not isinstance(value, str) or not BASE36_ID.fullmatch(value):
        return (
            f"{name} must be a base36 id (lower-case letters and digits) of 1 to "
            f"{ID_MAX_LENGTH} characters, not {shown(value)}."
        )
    return None


def _window(data: Mapping[str, Any], name: str, allowed: tuple[int, ...]) -> str | None:
    value = data[name]
    if isinstance(value, bool) or value not in allowed:
        return f"{name} must be one of {_choices(allowed)} (days), not {shown(value)}."
    return None


def problems(data: Any) -> list[str]:
    """Every reason X's tag ``data`` cannot be stored, each naming the field and rule."""
    if not isinstance(data, Mapping):
        return [f"A tag must be a JSON object, not {shown(data)}."]
    found = [p for p in (_base36_id(data, "id"), _base36_id(data, "website_tag_id")) if p]
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX_LENGTH:
        found.append(f"name must be text of 1 to {NAME_MAX_LENGTH} characters, not {shown(name)}.")
    if data.get("type") not in EventTag.Type.values:
        found.append(
            f"type must be one of X's {len(EventTag.Type.values)} tag types, "
            f"not {shown(data.get('type'))}."
        )
    if "click_window" in data:
        found.append(_window(data, "click_window", EventTag.CLICK_WINDOWS) or "")
    if "view_through_window" in data:
        found.append(_window(data, "view_through_window", EventTag.VIEW_THROUGH_WINDOWS) or "")
    for flag in ("retargeting_enabled", "deleted"):
        if flag in data and not isinstance(data[flag], bool):
            found.append(f"{flag} must be true or false, not {shown(data[flag])}.")
    if "status" in data and not (
        isinstance(data["status"], str) and STATUS.fullmatch(data["status"])
    ):
        found.append(f"status must be a word such as TRACKING, not {shown(data['status'])}.")
    tracked = data.get("last_tracked_at")
    if tracked is not None and not _datetime(tracked):
        found.append(f"last_tracked_at must be an ISO 8601 date-time, not {shown(tracked)}.")
    if _unstorable_anywhere(data):
        found.append("The tag holds text with NUL or unpaired surrogate characters.")
    return [p for p in found if p]


def _datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return parse_datetime(value) is not None
    except ValueError:  # well formed but impossible, e.g. February 30
        return False


def describe(data: Any) -> str:
    """How a report names an entry: its id when it has a usable one."""
    if isinstance(data, Mapping) and isinstance(data.get("id"), str | int):
        return f"tag {shown(str(data['id']))}"
    return "a tag without an id"


def checked(data: Any) -> dict[str, Any]:
    """``data`` if it can be stored, else MalformedTag naming the problems."""
    found = problems(data)
    if found:
        raise MalformedTag(
            f"X answered with {describe(data)} this app cannot store: " + " ".join(found)
        )
    return dict(data)
