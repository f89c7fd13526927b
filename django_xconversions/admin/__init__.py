"""Admin for django-xconversions; importing this package registers every model.

Split by model (accounts, pixels, tags, conversions, attempts); connect.py holds the
Connect with X (OAuth) views that AdAccountAdmin.get_urls() adds.
"""

from __future__ import annotations

from django_xconversions.admin.accounts import AdAccountAdmin
from django_xconversions.admin.attempts import DeliveryAttemptAdmin
from django_xconversions.admin.conversions import ConversionAdmin
from django_xconversions.admin.health_panel import MatchReadinessAdmin
from django_xconversions.admin.pixels import PixelAdmin
from django_xconversions.admin.tags import EventTagAdmin
from django_xconversions.admin.workers import WorkerHeartbeatAdmin

__all__ = [
    "AdAccountAdmin",
    "ConversionAdmin",
    "DeliveryAttemptAdmin",
    "EventTagAdmin",
    "MatchReadinessAdmin",
    "PixelAdmin",
    "WorkerHeartbeatAdmin",
]
