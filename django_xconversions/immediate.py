"""What happens once a transaction that stored pending conversions commits: a NOTIFY that
wakes idle ``--loop`` workers (NOTIFY_ON_COMMIT, PostgreSQL) and, with SEND_IMMEDIATELY,
a send of the conversions' pixel. One hook per transaction and pixel, not per row.

Capture knows no task runner: the send is handed to the sender that the app connects at
start-up (``tasks.dispatch_send``, which picks Django tasks, Celery or this process).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from django_xconversions import wakeup
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.models import Conversion

logger = logging.getLogger("django_xconversions.delivery")

# Sends a pixel's due conversions, given the pixel's primary key.
Sender = Callable[[int], None]


def _not_connected(pixel_pk: int) -> None:
    logger.error(
        "%s is set but no sender is connected (is django_xconversions in INSTALLED_APPS?); "
        "conversions stay pending.",
        setting_path("SEND_IMMEDIATELY"),
    )


# The app connects tasks.dispatch_send at start-up (connect() below).
_send: Sender = _not_connected


class AfterCommit:
    """The on-commit hook of one pixel: wake the workers, then send if asked to."""

    def __init__(self, pixel_pk: int, using: str) -> None:
        self.pixel_pk = pixel_pk
        self.using = using

    def __call__(self) -> None:
        try:
            wakeup.notify(self.pixel_pk, self.using)
        except Exception:
            # The workers' poll finds the rows anyway; the send below must still happen.
            logger.warning("Could not notify the sending workers.", exc_info=True)
        if xsettings.SEND_IMMEDIATELY:
            _send(self.pixel_pk)


def on_conversion_saved(sender: Any, instance: Conversion, created: bool, **kwargs: Any) -> None:
    if created:
        conversion_stored(instance)


def conversion_stored(instance: Conversion) -> None:
    """Schedule the pixel's on-commit hook (track() calls this: its INSERT ... ON
    CONFLICT sends no post_save). Held rows have no pixel: nothing yet."""
    if instance.status == Conversion.Status.PENDING and instance.pixel_id is not None:
        schedule_send(instance.pixel_id)


def _scheduled(connection: Any, pixel_pk: int) -> bool:
    """Whether the current transaction already holds this pixel's hook. Read from the
    connection's own list of hooks, so a hook discarded with a rolled-back savepoint or
    transaction is scheduled again by the next conversion."""
    return any(
        isinstance(hook, AfterCommit) and hook.pixel_pk == pixel_pk
        for _savepoints, hook, *_rest in connection.run_on_commit
    )


def schedule_send(pixel_pk: int) -> None:
    """Once the current transaction commits (at once outside one), notify the workers
    (NOTIFY_ON_COMMIT) and, with SEND_IMMEDIATELY, send the pixel's due conversions;
    routing held rows calls it too."""
    using = wakeup.database_alias()
    if not (xsettings.SEND_IMMEDIATELY or wakeup.supported(using)):
        return
    connection = transaction.get_connection(using)
    if connection.in_atomic_block and _scheduled(connection, pixel_pk):
        return
    # robust: a failing hook never breaks the request that created the conversion; the
    # row stays pending and the next send_conversions run picks it up.
    transaction.on_commit(AfterCommit(pixel_pk, using), using=using, robust=True)


def connect(send: Sender) -> None:
    """Schedule the hook for each stored conversion, with ``send`` for SEND_IMMEDIATELY."""
    from django.db.models.signals import post_save

    global _send
    _send = send
    post_save.connect(on_conversion_saved, sender=Conversion, dispatch_uid="xconversions-immediate")
