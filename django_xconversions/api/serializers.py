"""Serializers: conversion input (types only: track() owns the rules), outputs, filters.

Outputs never carry a raw identifier: hashes of email and phone at most, and which other
identifiers a conversion has, not their values.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from django_xconversions.api.fields import (
    MAX_INT,
    ContentField,
    DateOrDateTimeField,
    TextField,
    in_range,
    printable,
)
from django_xconversions.models import Conversion, EventTag
from django_xconversions.routing import HELD_REASONS

# Conversion.value is numeric(18, 4).
VALUE_MAX_DIGITS = 18
VALUE_DECIMAL_PLACES = 4


class ConversionInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """One conversion to record: the arguments of ``track()``."""

    event = TextField(
        max_length=64,
        required=True,
        allow_null=False,
        allow_blank=False,
        help_text='Key of an event tag, e.g. "purchase".',
    )
    email = TextField(max_length=320, help_text="Raw (hashed here) or SHA-256 hex.")
    phone = TextField(max_length=64, help_text="Raw (hashed here) or SHA-256 hex.")
    twclid = TextField(max_length=255)
    ip_address = TextField(max_length=64)
    user_agent = TextField(max_length=4096)
    value = serializers.DecimalField(
        max_digits=VALUE_MAX_DIGITS,
        decimal_places=VALUE_DECIMAL_PLACES,
        required=False,
        allow_null=True,
    )
    currency = TextField(max_length=16, help_text="ISO 4217 code; default DEFAULT_CURRENCY.")
    number_items = serializers.IntegerField(required=False, allow_null=True, max_value=MAX_INT)
    contents = serializers.ListField(
        child=ContentField(),
        required=False,
        allow_null=True,
        max_length=500,
    )
    conversion_id = TextField(
        max_length=255, allow_blank=False, help_text="Deduplication key; generated if absent."
    )
    conversion_time = serializers.DateTimeField(required=False, allow_null=True)
    description = TextField(max_length=10_000)

    # The input holds raw emails and phone numbers: no error report shows the locals of
    # validation (this frame and every one below it).
    @sensitive_variables()
    def run_validation(self, data: Any = serializers.empty) -> Any:
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                allowed = ", ".join(self.fields)
                raise serializers.ValidationError(
                    {printable(key): [f"Unknown field; allowed: {allowed}."] for key in unknown}
                )
        return super().to_internal_value(data)

    def validate_conversion_time(self, value: dt.datetime | None) -> dt.datetime | None:
        return in_range(value, "conversion_time") if value is not None else None


class ConversionResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """What POST returns per conversion: ids and status, hashes at most."""

    id = serializers.IntegerField()
    event = serializers.CharField()
    conversion_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Conversion.Status.choices)
    created = serializers.BooleanField(help_text="False when the conversion was already stored.")
    hashed_email = serializers.CharField()
    hashed_phone = serializers.CharField()


class ConversionResultListSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = ConversionResultSerializer(many=True)


# Built inline: a declared field named "errors" would shadow Serializer.errors for mypy.
ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "errors": serializers.DictField(
            child=serializers.JSONField(),
            help_text=(
                "Messages keyed by field (one object) or by item index then field (a list); "
                '"body" for the request as a whole.'
            ),
        )
    },
)


IDENTIFIER_FIELDS = ("hashed_email", "hashed_phone", "twclid", "ip_address", "user_agent")


class ConversionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    event = serializers.SerializerMethodField(
        help_text="The event key (its tag's key; for a held conversion, the key it named)."
    )
    # Null while the conversion is held (no tag can take it yet).
    event_tag = serializers.IntegerField(source="event_tag_id", allow_null=True)
    pixel = serializers.CharField(source="pixel.pixel_id", allow_null=True)
    identifiers = serializers.SerializerMethodField(
        help_text="Which identifiers the conversion carries (values are not shown)."
    )

    class Meta:
        model = Conversion
        fields = [
            "id",
            "event",
            "event_tag",
            "pixel",
            "conversion_id",
            "conversion_time",
            "status",
            "attempts",
            "next_attempt_at",
            "sent_at",
            "failed_at",
            "error_reason",
            "last_error",
            "debug_id",
            "hashed_email",
            "hashed_phone",
            "identifiers",
            "value",
            "currency",
            "number_items",
            "contents",
            "description",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_event(self, obj: Conversion) -> str | None:
        tag = obj.event_tag
        return (tag.key if tag is not None else None) or obj.event_key or None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_identifiers(self, obj: Conversion) -> list[str]:
        return [name.removeprefix("hashed_") for name in IDENTIFIER_FIELDS if getattr(obj, name)]


class EventTagSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    account = serializers.CharField(source="account.account_id")
    pixel = serializers.CharField(source="pixel.pixel_id", allow_null=True)
    # Plain text: a second "status" enum would collide with Conversion's in the schema.
    status = serializers.CharField(help_text="UNVERIFIED or TRACKING.")

    class Meta:
        model = EventTag
        fields = [
            "id",
            "key",
            "name",
            "type",
            "status",
            "account",
            "pixel",
            "remote_id",
            "website_tag_id",
            "click_window",
            "view_through_window",
            "retargeting_enabled",
            "deleted",
            "last_tracked_at",
            "synced_at",
        ]
        read_only_fields = fields


class ConversionFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Query parameters of the conversion list."""

    status = serializers.ChoiceField(
        choices=Conversion.Status.choices,
        required=False,
        error_messages={
            "invalid_choice": "status must be one of " + ", ".join(Conversion.Status.values) + "."
        },
    )
    event = TextField(max_length=64, allow_null=False)
    created_from = DateOrDateTimeField(required=False)
    created_to = DateOrDateTimeField(required=False)


class PausedAccountSerializer(serializers.Serializer):  # type: ignore[type-arg]
    account_id = serializers.CharField()
    name = serializers.CharField()
    reason = serializers.CharField()
    paused_at = serializers.DateTimeField(allow_null=True)


class DayOutcomeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    day = serializers.DateField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()


class WorkerStateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    worker_id = serializers.CharField()
    host = serializers.CharField()
    pid = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    last_beat_at = serializers.DateTimeField()
    current_pixel = serializers.CharField(help_text="Pixel being sent; empty when idle.")
    stopped_at = serializers.DateTimeField(allow_null=True)
    live = serializers.BooleanField(help_text="Beat recently and not stopped.")


class ProblemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.ChoiceField(choices=["stuck", "no_worker", "paused_with_pending"])
    message = serializers.CharField()


# Built inline: a declared field named "label" would shadow Field.label for mypy.
def held_reasons(**kwargs: Any) -> Any:
    """The ``held`` list of health: one entry per reason."""
    return inline_serializer(
        name="HeldReason",
        fields={
            "reason": serializers.ChoiceField(choices=[str(r) for r in HELD_REASONS]),
            "label": serializers.CharField(),
            "count": serializers.IntegerField(help_text="Conversions held for this reason."),
            "keys": serializers.ListField(
                child=serializers.CharField(), help_text="Their event keys."
            ),
            "fix": serializers.CharField(help_text="What to do so they are routed and sent."),
        },
        **kwargs,
    )


class ReadinessCountsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    conversions = serializers.IntegerField(help_text="Conversions recorded.")
    twclid = serializers.IntegerField(help_text="Of them, with a twclid.")
    email = serializers.IntegerField(help_text="With a hashed email.")
    phone = serializers.IntegerField(help_text="With a hashed phone number.")
    ip_user_agent = serializers.IntegerField(help_text="With an IP address and a user agent.")
    strong = serializers.IntegerField(help_text="With a twclid, an email or a phone.")
    refused = serializers.IntegerField(
        help_text="Skipped because the visitor refused tracking (stored without identifiers)."
    )


class ReadinessWindowSerializer(serializers.Serializer):  # type: ignore[type-arg]
    days = serializers.IntegerField()
    first_day = serializers.DateField()
    last_day = serializers.DateField()
    counts = ReadinessCountsSerializer()
    shares = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        help_text=(
            "Share of the conversions carrying twclid, email, phone and ip_user_agent, "
            "0 to 1; null without conversions."
        ),
    )


class ReadinessWarningSerializer(serializers.Serializer):  # type: ignore[type-arg]
    # Plain text: a second "code" enum would collide with Problem's in the schema.
    code = serializers.CharField(help_text='"twclid_drop" or "device_only".')
    message = serializers.CharField()
    fix = serializers.CharField(help_text="What to do.")


class TagReadinessSerializer(serializers.Serializer):  # type: ignore[type-arg]
    key = serializers.CharField(help_text="The event key the conversions were recorded with.")
    tag_id = serializers.IntegerField(
        allow_null=True, help_text="The event tag with that key; null while none has it."
    )
    tag_name = serializers.CharField()
    last_7_days = ReadinessWindowSerializer()
    previous_7_days = ReadinessWindowSerializer()
    last_30_days = ReadinessWindowSerializer()
    warnings = ReadinessWarningSerializer(many=True)


class MatchReadinessSerializer(serializers.Serializer):  # type: ignore[type-arg]
    first_day = serializers.DateField()
    last_day = serializers.DateField()
    tags = TagReadinessSerializer(
        many=True, help_text="Event keys with conversions in the 30 days, warnings first."
    )
    uncounted_days = serializers.IntegerField(
        help_text=(
            "Past days not counted yet (the first reads of a large table count a few each): "
            "their conversions are missing and warnings that need them wait."
        )
    )


class HealthSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Schema of ``django_xconversions.health.Health.as_dict()``."""

    by_status = serializers.DictField(
        child=serializers.IntegerField(), help_text="Conversions per status."
    )
    oldest_pending_seconds = serializers.FloatField(
        allow_null=True, help_text="Age of the oldest pending conversion."
    )
    last_sent_at = serializers.DateTimeField(allow_null=True)
    failed_last_hour = serializers.IntegerField(help_text="Conversions that failed in the hour.")
    failed_requests_last_hour = serializers.IntegerField(
        help_text="Requests to X that did not succeed in the last hour."
    )
    paused_accounts = PausedAccountSerializer(many=True)
    daily = DayOutcomeSerializer(many=True, help_text="Sent and failed per day, oldest first.")
    workers = WorkerStateSerializer(many=True, help_text="send_conversions --loop workers seen.")
    problems = ProblemSerializer(
        many=True, help_text="What needs a person (as send_conversions --check reports)."
    )
    held = held_reasons(
        many=True, help_text="Conversions no event tag can take yet, per reason, with the fix."
    )
    estimated = serializers.ListField(
        # Plain text: a second status enum would collide with Conversion's in the schema.
        child=serializers.CharField(),
        help_text=(
            "Statuses (keys of by_status) whose count is an estimate: on PostgreSQL, when "
            "the table is large, sent and any status past 10,000 rows (counting them would "
            "read millions of rows). Empty when every count is exact."
        ),
    )
    match_readiness = MatchReadinessSerializer(
        allow_null=True,
        help_text=(
            "Per event key over the last 7 and 30 local days, the share of conversions "
            "carrying each identifier X matches on, with warnings (twclid share halved from "
            "one week to the next; nothing beyond IP address and user agent)."
        ),
    )
