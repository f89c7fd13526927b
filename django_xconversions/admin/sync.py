"""Tag sync from the admin: the same tags.sync_account_tags the sync_tags command runs."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.utils.translation import gettext as _

from django_xconversions.errors import XConversionsError
from django_xconversions.models import AdAccount
from django_xconversions.tags import sync_account_tags


def report_sync(request: HttpRequest, account: AdAccount) -> bool:
    """Sync one account's tags and say how it went as an admin message."""
    try:
        result = sync_account_tags(account)
    except XConversionsError as exc:
        messages.error(
            request,
            _("%(account)s: tag sync failed: %(error)s") % {"account": account, "error": exc},
        )
        return False
    messages.success(
        request,
        _(
            "%(account)s: %(created)d tag(s) created, %(updated)d updated, "
            "%(deleted)d flagged deleted."
        )
        % {
            "account": account,
            "created": result.created,
            "updated": result.updated,
            "deleted": result.flagged_deleted,
        },
    )
    return True
