"""DeliveryAttempt.outcome held exception class names before it had choices."""

from __future__ import annotations

from typing import Any

from django.db import migrations

# Old value (the client's exception class name) -> DeliveryAttempt.Outcome.
RENAMED = {
    "BadRequest": "bad_request",
    "Unauthorized": "unauthorized",
    "Forbidden": "forbidden",
    "NotFound": "not_found",
    "RateLimited": "rate_limited",
    "ServerError": "server_error",
    "ClientError": "client_error",
    "TransportError": "transport_error",
    "RequestTimeout": "timeout",
    "ImproperlyConfiguredAccount": "not_configured",
}


def forwards(apps: Any, schema_editor: Any) -> None:
    attempts = apps.get_model("xconversions", "DeliveryAttempt").objects
    for old, new in RENAMED.items():
        attempts.filter(outcome=old).update(outcome=new)


def backwards(apps: Any, schema_editor: Any) -> None:
    attempts = apps.get_model("xconversions", "DeliveryAttempt").objects
    for old, new in RENAMED.items():
        attempts.filter(outcome=new).update(outcome=old)


class Migration(migrations.Migration):
    dependencies = [("xconversions", "0002_held_reasons_outcomes_workers")]

    operations = [migrations.RunPython(forwards, backwards)]
