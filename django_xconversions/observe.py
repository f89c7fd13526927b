"""What capture and delivery report where the work happens: Prometheus counters, the
public signals and the delivery log.

Capture and the engine call one function here per event of interest, once per batch or
request (never per conversion). Counters, signals and log lines about written rows wait
for the transaction to commit, so rolled-back work is never reported; a failing receiver
or counter is logged and never breaks the caller (``on_commit(robust=True)`` and
``send_robust``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from django.db import router, transaction
from django.db.models import Q

from django_xconversions import metrics, signals
from django_xconversions.models import AdAccount, Conversion, Pixel
from django_xconversions.wording import plural

logger = logging.getLogger("django_xconversions.delivery")


def _after_commit(model: type[Any], work: Callable[[], None]) -> None:
    transaction.on_commit(work, using=router.db_for_write(model), robust=True)


# -- capture ---------------------------------------------------------------------------


def recorded(conversions: Sequence[Conversion]) -> None:
    """``conversions`` were handed to the store (inserted, or repeats left as they were)."""
    if not conversions:
        return
    listening = signals.conversion_recorded.has_listeners(Conversion)
    if not (listening or metrics.AVAILABLE):
        return
    by_status = Counter(str(conversion.status) for conversion in conversions)
    built = list(conversions) if listening else []
    using = router.db_for_write(Conversion)

    def report() -> None:
        metrics.count_recorded(by_status)
        if built:
            _send_recorded(built, using)

    transaction.on_commit(report, using=using, robust=True)


def _identity(tag_id: int | None, key: str, conversion_id: str) -> tuple[Any, ...]:
    return (tag_id, conversion_id) if tag_id is not None else (None, key, conversion_id)


# Rows read back per query: SQLite refuses an expression tree deeper than 1,000 (one OR
# per row), and a bounded OR keeps each PostgreSQL lookup on the unique index.
READ_BACK_CHUNK = 200


def _send_recorded(built: list[Conversion], using: str) -> None:
    """Send conversion_recorded for each stored row, read back in bounded queries;
    ``created`` tells an insert (the stored row carries the creation time this save gave
    it) from a repeat."""
    stored: dict[tuple[Any, ...], Conversion] = {}
    for start in range(0, len(built), READ_BACK_CHUNK):
        match = Q(pk__in=[])
        for conversion in built[start : start + READ_BACK_CHUNK]:
            if conversion.event_tag_id is not None:
                match |= Q(
                    event_tag_id=conversion.event_tag_id, conversion_id=conversion.conversion_id
                )
            else:
                match |= Q(
                    event_tag__isnull=True,
                    event_key=conversion.event_key,
                    conversion_id=conversion.conversion_id,
                )
        for found in Conversion.objects.using(using).filter(match):
            stored[_identity(found.event_tag_id, found.event_key, found.conversion_id)] = found
    announced: set[tuple[Any, ...]] = set()
    for conversion in built:
        identity = _identity(
            conversion.event_tag_id, conversion.event_key, conversion.conversion_id
        )
        row = stored.get(identity)
        if row is None or identity in announced:
            continue  # purged meanwhile, or named twice in one call
        announced.add(identity)
        created = row.created_at == conversion.created_at
        signals.conversion_recorded.send_robust(Conversion, conversion=row, created=created)


# -- delivery --------------------------------------------------------------------------


def request(
    account: AdAccount,
    pixel: Pixel,
    *,
    events: int,
    http_status: int | None,
    outcome: str,
    seconds: float,
    debug_id: str = "",
) -> None:
    """One conversions request went to X (answered or not)."""
    status = str(http_status) if http_status is not None else outcome
    metrics.count_request(
        status, seconds, account_id=account.account_id, rate_limited=http_status == 429
    )
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "POST %s for pixel %s: %s in %.3f s.",
            plural(events, "event"),
            pixel.pixel_id,
            status,
            seconds,
            extra={
                "account_id": account.account_id,
                "pixel_id": pixel.pixel_id,
                "events": events,
                "http_status": http_status,
                "outcome": outcome,
                "seconds": round(seconds, 6),
                "debug_id": debug_id,
            },
        )


def _written_pks(pks: list[int], written: int, mine: Q) -> list[int]:
    """The rows of ``pks`` this batch wrote: all of them, unless another worker took some
    over (a lost claim); then those carrying this batch's outcome (``mine``)."""
    if written == len(pks):
        return list(pks)
    return list(Conversion.objects.filter(mine, pk__in=pks).values_list("pk", flat=True))


def sent(pixel: Pixel, pks: list[int], *, debug_id: str, written: int, at: dt.datetime) -> None:
    """``written`` rows of ``pks`` were marked sent at ``at`` (X's ``debug_id``), in the
    current transaction."""
    if not written:
        return
    listening = signals.conversions_sent.has_listeners(Pixel)
    ours = _written_pks(pks, written, Q(sent_at=at, debug_id=debug_id)) if listening else []

    def report() -> None:
        metrics.count_sent(written)
        logger.info(
            "Sent %s for pixel %s (debug_id %s).",
            plural(written, "conversion"),
            pixel.pixel_id,
            debug_id or "-",
            extra={
                "account_id": pixel.account.account_id,
                "pixel_id": pixel.pixel_id,
                "events": written,
                "debug_id": debug_id,
            },
        )
        if listening:
            signals.conversions_sent.send_robust(
                Pixel, pixel=pixel, pks=ours, debug_id=debug_id, count=len(ours)
            )

    _after_commit(Conversion, report)


def failed(
    pixel: Pixel, pks: list[int], *, reason: str, message: str, written: int, at: dt.datetime
) -> None:
    """``written`` rows of ``pks`` were marked failed for ``reason`` at ``at``, in the
    current transaction."""
    if not written:
        return
    listening = signals.conversions_failed.has_listeners(Pixel)
    ours = _written_pks(pks, written, Q(failed_at=at, error_reason=reason)) if listening else []

    def report() -> None:
        metrics.count_failed(reason, written)
        logger.warning(
            "Failed %s for pixel %s (%s): %s",
            plural(written, "conversion"),
            pixel.pixel_id,
            reason,
            message,
            extra={
                "account_id": pixel.account.account_id,
                "pixel_id": pixel.pixel_id,
                "events": written,
                "reason": reason,
            },
        )
        if listening:
            signals.conversions_failed.send_robust(
                Pixel, pixel=pixel, pks=ours, reason=reason, message=message, count=len(ours)
            )

    _after_commit(Conversion, report)


def paused(account: AdAccount, reason: str) -> None:
    """``account`` was just paused for ``reason``."""

    def report() -> None:
        logger.warning(
            "Paused account %s: %s",
            account.account_id,
            reason,
            extra={"account_id": account.account_id, "reason": reason},
        )
        if signals.account_paused.has_listeners(AdAccount):
            fresh = AdAccount.objects.filter(pk=account.pk).first() or account
            signals.account_paused.send_robust(AdAccount, account=fresh, reason=reason)

    _after_commit(AdAccount, report)
