"""Checking what the account's token may do on X (authenticated_user_access)."""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _

from django_xconversions.connections import client_for
from django_xconversions.errors import UnreadableSecret, XConversionsError
from django_xconversions.models import SENDING_PERMISSIONS, AdAccount
from django_xconversions.stored_secrets import unreadable_of_account, unreadable_summary


def check_access(account: AdAccount) -> bool:
    """Ask X for the token user's permissions on the account and store the outcome.

    True when the user may send (AD_MANAGER or ACCOUNT_ADMIN). X's error message is kept,
    never the tokens: errors print X's message only. Tokens no configured key opens are
    a refusal too, recorded with the fix; nothing is asked of X then.
    """
    try:
        with client_for(account) as client:
            data = client.authenticated_user_access(account.account_id)
    except XConversionsError as exc:
        account.permissions = []
        account.access_check_ok = False
        account.access_check_message = _why(account, exc)
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
    account.access_checked_at = timezone.now()
    account.save(
        update_fields=[
            "permissions",
            "x_user_id",
            "access_check_ok",
            "access_check_message",
            "access_checked_at",
        ]
    )
    return bool(account.access_check_ok)


def _why(account: AdAccount, exc: XConversionsError) -> str:
    if isinstance(exc, UnreadableSecret):
        own = [s for s in unreadable_of_account(account) if s.owner == account]
        if own:  # name which tokens, rather than "a stored secret"
            return unreadable_summary(own)
    return str(exc)
