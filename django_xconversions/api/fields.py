"""Input fields that reject what the database would choke on (no 500 for any JSON)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# PostgreSQL's integer column (number_items).
MAX_INT = 2**31 - 1


def printable(text: str) -> str:
    """``text`` safe to echo in a JSON response (lone surrogates escaped), bounded."""
    return text[:64].encode("utf-8", "backslashreplace").decode("utf-8")


def check_text(value: str, name: str) -> None:
    # PostgreSQL refuses NUL in text, and lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        raise serializers.ValidationError(f"{name} must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError(f"{name} must be valid Unicode text.") from None


class TextField(serializers.CharField):
    """A CharField that also refuses unencodable text; blank and null mean "not given"."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        check_text(value, self.field_name or "value")
        return value


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}], "nullable": True})
class ContentValueField(serializers.Field):  # type: ignore[type-arg]
    """A value inside ``contents``: a string or a number, never a nested structure."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, str | int | float | type(None)):
            raise serializers.ValidationError("Must be a string or a number.")
        if isinstance(data, str):
            check_text(data, "value")
        if isinstance(data, int) and abs(data) > MAX_INT:
            raise serializers.ValidationError(f"Must be at most {MAX_INT} in absolute value.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def in_range(when: dt.datetime, name: str) -> dt.datetime:
    """``when`` made aware, if it still exists in UTC (the database stores UTC)."""
    try:
        if timezone.is_naive(when):
            when = timezone.make_aware(when)
        when.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise serializers.ValidationError(f"{name} is out of the supported range.") from None
    return when


class ContentField(serializers.DictField):
    """One entry of ``contents``: text keys (track() checks which), scalar values."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=ContentValueField(), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            for key in data:
                check_text(str(key), "contents keys")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)
class DateOrDateTimeField(serializers.Field):  # type: ignore[type-arg]
    """An ISO 8601 date or date-time query parameter -> (aware datetime, was a date)."""

    def to_internal_value(self, data: Any) -> tuple[dt.datetime, bool]:
        name = self.field_name or "value"
        message = (
            f"{name} must be an ISO 8601 date (2025-01-31) or date-time (2025-01-31T12:00:00Z)."
        )
        text = str(data).strip()
        try:
            # Date first: parse_datetime also reads a bare date (as midnight).
            day = parse_date(text)
            when = parse_datetime(text) if day is None else None
        except ValueError:  # well formed but impossible, e.g. 2025-02-30
            raise serializers.ValidationError(message) from None
        if day is not None:
            return in_range(dt.datetime.combine(day, dt.time.min), name), True
        if when is not None:
            return in_range(when, name), False
        raise serializers.ValidationError(message)

    def to_representation(self, value: Any) -> Any:
        return value
