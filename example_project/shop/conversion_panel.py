"""The panel shown after sign-up and payment: the conversion the shop recorded for X,
its status as the sender moves it on, and (with the local emulator) a link to what X
received. The page polls the panel's own URL until the status is final."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q
from django.utils import timezone

from django_xconversions.conf import xsettings
from django_xconversions.models import Conversion
from shop.models import Customer, Order

Status = Conversion.Status
# Statuses the sender never changes again: the page stops polling.
FINAL = frozenset({Status.SENT, Status.FAILED, Status.SKIPPED})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def conversion_for(instance: Customer | Order, event: str) -> Conversion | None:
    """The conversion a SOURCES entry recorded for ``instance`` (looked up by source)."""
    return (
        Conversion.objects.select_related("pixel", "event_tag")
        .filter(
            Q(event_key=event) | Q(event_tag__key=event),
            source_type=ContentType.objects.get_for_model(instance),
            source_id=str(instance.pk),
        )
        .first()
    )


def emulator_url() -> str | None:
    """The local X emulator the project talks to, if it does (a loopback API host)."""
    url = str(xsettings.API_BASE_URL).rstrip("/")
    return url if urlsplit(url).hostname in LOOPBACK else None


@dataclass(frozen=True)
class Panel:
    event: str
    refresh_url: str
    conversion: Conversion | None

    @property
    def final(self) -> bool:
        return self.conversion is None or self.conversion.status in FINAL

    @property
    def explanation(self) -> str:
        row = self.conversion
        if row is None:
            return "No conversion was recorded for this event."
        if row.status == Status.SENT:
            if row.sent_at is None:
                return "X accepted it."
            return f"X accepted it at {timezone.localtime(row.sent_at):%H:%M:%S}."
        if row.status == Status.SENDING:
            return "Being sent to X right now."
        if row.status == Status.PENDING:
            if row.attempts:
                return f"X could not take it yet ({row.last_error}); it will be retried."
            return "Stored. The sender (send_conversions --loop) delivers it to X shortly."
        reason = row.get_error_reason_display() if row.error_reason else ""
        if row.status == Status.HELD:
            return f"Held: {reason}. It is sent once that is fixed in the admin."
        if row.status == Status.SKIPPED:
            return f"Not sent: {reason}."
        return f"X refused it: {row.last_error or reason}"

    @property
    def received_url(self) -> str | None:
        """The emulator's page of what X received for this conversion (emulator only)."""
        emulator, row = emulator_url(), self.conversion
        if emulator is None or row is None or row.pixel is None:
            return None
        pixel = quote(row.pixel.pixel_id, safe="")
        return f"{emulator}/_emulator/pixels/{pixel}?conversion_id={quote(row.conversion_id)}"
