"""How the admin shows values: status badges, times with seconds, clipped text with the
full value on hover, copyable ids, attempt counts and day counts in proper plurals.

Everything goes through format_html, so values from X or from a shop are text, never
markup."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_xconversions.models import Conversion

Reason = Conversion.ErrorReason

# The engine stores in ``attempts`` only the requests that failed and will be retried (it
# drives the back-off). The request that decided a row (X took it, X refused it, or the
# last try before giving up) is not stored, so it is added here.
DECIDED_BY_A_REQUEST = frozenset({Reason.REJECTED, Reason.NOT_FOUND, Reason.MAX_ATTEMPTS})

# Long enough to read a reason at a glance; the full text is in the title and the detail.
SUMMARY_CHARS = 90

# Styles and the copy button's script, served by django.contrib.staticfiles.
MEDIA_CSS = {"all": ["xconversions/admin.css"]}
MEDIA_JS = ["xconversions/admin.js"]


def attempts_made(status: str, error_reason: str, stored_attempts: int) -> int:
    """Requests to X that carried the row and got an answer (or timed out), whatever its
    status: every retried failure, plus the request that sent it, or that X refused, or
    after which the engine gave up. Rows failed before sending (invalid values) and rows
    never sent (held, skipped for consent) count only the tries made, often none."""
    decided = status == Conversion.Status.SENT or (
        status == Conversion.Status.FAILED and error_reason in DECIDED_BY_A_REQUEST
    )
    return stored_attempts + 1 if decided else stored_attempts


def status_badge(status: str, label: str) -> SafeString:
    """The status as a coloured badge: the word says it, the colour helps the eye."""
    return format_html(
        '<span class="xconv-status xconv-status-{}" data-status="{}">{}</span>',
        status,
        status,
        label,
    )


def timestamp(value: dt.datetime | None) -> SafeString | str:
    """A time to the second in the current time zone, ISO style (2026-11-30 00:16:05),
    with the zone on hover; "-" when there is none."""
    if value is None:
        return "-"
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return format_html(
        '<time class="xconv-time" datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        local.strftime("%Y-%m-%d %H:%M:%S"),
    )


def clipped(text: str, *, css: str = "", limit: int | None = None) -> SafeString | str:
    """``text`` on one line, cut with an ellipsis where its column ends (CSS), the whole
    on hover (title). ``limit`` also shortens what is sent to the browser."""
    if not text:
        return "-"
    shown = text if limit is None or len(text) <= limit else text[: limit - 1] + "\u2026"
    return format_html('<span class="xconv-clip {}" title="{}">{}</span>', css, text, shown)


def copyable(value: str, *, label: str, clip: bool = True) -> SafeString | str:
    """``value`` (clipped to its column: the whole on hover) and a button that copies it."""
    if not value:
        return "-"
    return format_html(
        '<span class="xconv-copyable">'
        '<code class="{}" title="{}">{}</code>'
        '<button type="button" class="xconv-copy" data-copy="{}" title="{}" '
        'aria-label="{}">{}</button></span>',
        "xconv-clip xconv-clip-id" if clip else "xconv-id",
        value,
        value,
        value,
        _("Copy"),
        label,
        _("Copy"),
    )


def error_summary(reason_label: str, message: str) -> SafeString | str:
    """Why a row is not sent, in one line: the reason, then X's (or our) message."""
    text = ": ".join(part for part in (reason_label, message) if part)
    return clipped(text, css="xconv-clip-error", limit=SUMMARY_CHARS)


def days(count: int) -> str:
    """1 day, 7 days, 0 days."""
    return ngettext("%(count)d day", "%(count)d days", count) % {"count": count}


def plain_time(value: dt.datetime) -> str:
    """A time to the second as text, for messages: 2026-11-30 00:16:05 UTC."""
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return local.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
