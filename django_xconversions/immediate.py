"""SEND_IMMEDIATELY: a new conversion triggers a send once its transaction commits."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from django_xconversions.conf import setting_path, xsettings
from django_xconversions.models import Conversion

logger = logging.getLogger("django_xconversions.delivery")
MODES = (False, True, "tasks", "celery", "inline")

# Pixels already scheduled in the current transaction: one send per pixel, not per row.
_scheduled = threading.local()


def _pending_pixels() -> set[int]:
    if not hasattr(_scheduled, "pixels"):
        _scheduled.pixels = set()
    pixels: set[int] = _scheduled.pixels
    return pixels


def dispatch_send(pixel_pk: int) -> None:
    """Hand the send to the configured runner: Django tasks, Celery, or this process."""
    from django_xconversions import tasks
    from django_xconversions.models import Pixel

    _pending_pixels().discard(pixel_pk)
    mode = xsettings.SEND_IMMEDIATELY
    pixel_id = Pixel.objects.values_list("pixel_id", flat=True).get(pk=pixel_pk)
    if mode in (True, "tasks") and tasks.DJANGO_TASKS_AVAILABLE:
        tasks.enqueue_send(pixel_id, "tasks")
    elif mode in (True, "celery") and tasks.CELERY_AVAILABLE:
        tasks.enqueue_send(pixel_id, "celery")
    elif mode in (True, "inline"):
        tasks.run_send(pixel_id=pixel_id)
    else:
        logger.error(
            "%s is %r but that runner is not installed; conversions stay pending.",
            setting_path("SEND_IMMEDIATELY"),
            mode,
        )


def on_conversion_saved(sender: Any, instance: Conversion, created: bool, **kwargs: Any) -> None:
    if created:
        conversion_stored(instance)


def conversion_stored(instance: Conversion) -> None:
    """Schedule a send of the conversion's pixel after commit (track() calls this: its
    INSERT ... ON CONFLICT sends no post_save). Held rows have no pixel: nothing yet."""
    if instance.status == Conversion.Status.PENDING and instance.pixel_id is not None:
        schedule_send(instance.pixel_id)


def schedule_send(pixel_pk: int) -> None:
    """With SEND_IMMEDIATELY, send the pixel's due conversions once the current
    transaction commits (once per pixel and transaction); routing held rows calls it too."""
    if not xsettings.SEND_IMMEDIATELY or pixel_pk in _pending_pixels():
        return
    _pending_pixels().add(pixel_pk)
    # robust: a failing send never breaks the request that created the conversion; the
    # row stays pending and the next send_conversions run picks it up.
    transaction.on_commit(lambda: dispatch_send(pixel_pk), robust=True)


def connect() -> None:
    post_save.connect(on_conversion_saved, sender=Conversion, dispatch_uid="xconversions-immediate")
