"""Background-task entry points around ``delivery.send_pending``.

- ``send_conversions_task``: a Django tasks task (``django.tasks`` on Django >= 6, or the
  ``django-tasks`` backport on Django 5.2 when installed); a plain function otherwise
  (``DJANGO_TASKS_AVAILABLE`` says which).
- ``celery_send_conversions``: a Celery shared task when Celery is installed
  (``CELERY_AVAILABLE``).

Both call ``run_send`` below, which is the same function the management command and the
admin action use. ``dispatch_send`` is the runner choice of SEND_IMMEDIATELY: the app
connects it to capture's on-commit hook (immediate.py) at start-up.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from django_xconversions import delivery
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.models import AdAccount, Pixel

logger = logging.getLogger("django_xconversions.delivery")
# The values SEND_IMMEDIATELY takes: True picks Django tasks, else Celery, else inline.
MODES = (False, True, "tasks", "celery", "inline")


def run_send(
    account_id: str | None = None, pixel_id: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Send due conversions; arguments and result are JSON-friendly for task queues."""
    account = AdAccount.objects.get(account_id=account_id) if account_id else None
    pixel = Pixel.objects.get(pixel_id=pixel_id) if pixel_id else None
    return delivery.send_pending(account=account, pixel=pixel, limit=limit).as_dict()


def _django_task_decorator() -> Any:
    for module in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(module).task
        except ImportError:
            continue
    return None


def send_conversions_task(
    account_id: str | None = None, pixel_id: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    return run_send(account_id, pixel_id, limit)


def celery_send_conversions(
    account_id: str | None = None, pixel_id: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    return run_send(account_id, pixel_id, limit)


# Rebinding the module-level names keeps them importable by task workers, which look a
# task up by its function's dotted path.
_django_task = _django_task_decorator()
DJANGO_TASKS_AVAILABLE = _django_task is not None
if _django_task is not None:
    send_conversions_task = _django_task(send_conversions_task)

try:
    from celery import shared_task
except ImportError:
    CELERY_AVAILABLE = False
else:
    CELERY_AVAILABLE = True
    celery_send_conversions = shared_task(
        name="django_xconversions.send_conversions", ignore_result=True
    )(celery_send_conversions)


def enqueue_send(pixel_id: str, runner: str) -> None:
    """Queue a send of one pixel's due conversions on "tasks" or "celery"."""
    task: Any = send_conversions_task if runner == "tasks" else celery_send_conversions
    if runner == "tasks":
        task.enqueue(pixel_id=pixel_id)
    else:
        task.delay(pixel_id=pixel_id)


def dispatch_send(pixel_pk: int) -> None:
    """Hand a pixel's send to the runner SEND_IMMEDIATELY names: Django tasks, Celery, or
    this process."""
    mode = xsettings.SEND_IMMEDIATELY
    pixel_id = Pixel.objects.values_list("pixel_id", flat=True).get(pk=pixel_pk)
    if mode in (True, "tasks") and DJANGO_TASKS_AVAILABLE:
        enqueue_send(pixel_id, "tasks")
    elif mode in (True, "celery") and CELERY_AVAILABLE:
        enqueue_send(pixel_id, "celery")
    elif mode in (True, "inline"):
        run_send(pixel_id=pixel_id)
    else:
        logger.error(
            "%s is %r but that runner is not installed; conversions stay pending.",
            setting_path("SEND_IMMEDIATELY"),
            mode,
        )
