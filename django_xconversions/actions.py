"""Operator actions: what a person asks of the outbox and the accounts by hand.

One function per operation, called alike by the admin, the REST API and the management
commands. Each takes rows (never a request) and returns what it did, for the caller to
print in its own way (admin messages, JSON, a command's summary).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from django_xconversions import clock, delivery
from django_xconversions.connections import client_for
from django_xconversions.delivery import SendSummary
from django_xconversions.errors import UnreadableSecret, XConversionsError
from django_xconversions.models import SENDING_PERMISSIONS, AdAccount, Conversion, Pixel
from django_xconversions.stored_secrets import unreadable_of_account, unreadable_summary

__all__ = [
    "AccessCheck",
    "Requeued",
    "check_access",
    "mark_skipped",
    "requeue",
    "send_now",
]

# Statuses a person may retry: the engine has given up on them, or a person did.
RETRYABLE = (Conversion.Status.FAILED, Conversion.Status.SKIPPED)
# Statuses a person may skip: rows in flight (sending) or already at X (sent) are not.
SKIPPABLE = (Conversion.Status.PENDING, Conversion.Status.FAILED, Conversion.Status.HELD)


@dataclass(frozen=True)
class Requeued:
    """What ``requeue`` did."""

    queued: int
    # Retryable rows without a pixel (say, invalid values of a key no tag took): there is
    # nowhere to send them, so they were left as they are.
    unroutable: int


@dataclass(frozen=True)
class AccessCheck:
    """What X says the token's user may do on one account (stored on the account too)."""

    account_id: str
    ok: bool
    permissions: tuple[str, ...]
    # Why the account cannot send (X's message, or the permission it lacks); "" when ok.
    message: str


def send_now(conversions: QuerySet[Conversion]) -> SendSummary:
    """Make the chosen pending rows due and run send_pending for each of their pixels.

    send_pending also sends other due rows of those pixels: they were next in line anyway.
    """
    conversions.filter(status=Conversion.Status.PENDING).update(next_attempt_at=clock.now())
    total = SendSummary()
    pixels = Pixel.objects.filter(pk__in=conversions.values("pixel_id")).select_related("account")
    for pixel in pixels:
        total.merge(delivery.send_pending(pixel=pixel))
    total.pending_left = delivery.pending_count()
    return total


def requeue(conversions: QuerySet[Conversion]) -> Requeued:
    """Make the failed or skipped conversions among these due again, with a fresh attempt
    count. Other statuses are left alone: pending rows are due anyway, sending ones belong
    to a worker, sent ones are at X, held ones wait for a tag."""
    retryable = conversions.filter(status__in=RETRYABLE)
    queued = retryable.filter(pixel__isnull=False).update(
        status=Conversion.Status.PENDING,
        attempts=0,
        next_attempt_at=clock.now(),
        error_reason="",
        last_error="",
        failed_at=None,
        claim_token=None,
        lease_expires_at=None,
    )
    return Requeued(queued=queued, unroutable=retryable.filter(pixel__isnull=True).count())


def mark_skipped(conversions: QuerySet[Conversion]) -> int:
    """Mark the pending, failed or held conversions among these skipped by hand; how many.

    One conditional UPDATE: a row a worker claims meanwhile is sending and left alone.
    """
    return conversions.filter(status__in=SKIPPABLE).update(
        status=Conversion.Status.SKIPPED,
        error_reason=Conversion.ErrorReason.MANUAL,
        updated_at=clock.now(),
    )


def check_access(account: AdAccount) -> AccessCheck:
    """Ask X for the token user's permissions on the account and store the outcome.

    The user may send with AD_MANAGER or ACCOUNT_ADMIN. X's error message is kept, never
    the tokens: errors print X's message only. Tokens no configured key opens are a
    refusal too, recorded with the fix; nothing is asked of X then.
    """
    try:
        with client_for(account) as client:
            data = client.authenticated_user_access(account.account_id)
    except XConversionsError as exc:
        account.permissions = []
        account.access_check_ok = False
        account.access_check_message = _refusal(account, exc)
    else:
        permissions = [str(p) for p in data.get("permissions") or []]
        account.permissions = permissions
        account.x_user_id = str(data.get("user_id") or account.x_user_id)
        account.access_check_ok = bool(SENDING_PERMISSIONS & set(permissions))
        if account.access_check_ok:
            account.access_check_message = ""
        else:
            account.access_check_message = _(
                "The token's user has %(found)s; sending needs AD_MANAGER or ACCOUNT_ADMIN."
            ) % {"found": ", ".join(permissions) or _("no permissions")}
    account.access_checked_at = clock.now()
    account.save(
        update_fields=[
            "permissions",
            "x_user_id",
            "access_check_ok",
            "access_check_message",
            "access_checked_at",
        ]
    )
    return AccessCheck(
        account_id=account.account_id,
        ok=bool(account.access_check_ok),
        permissions=tuple(account.permissions),
        message=account.access_check_message,
    )


def _refusal(account: AdAccount, exc: XConversionsError) -> str:
    if isinstance(exc, UnreadableSecret):
        own = [s for s in unreadable_of_account(account) if s.owner == account]
        if own:  # name which tokens, rather than "a stored secret"
            return unreadable_summary(own)
    return str(exc)
