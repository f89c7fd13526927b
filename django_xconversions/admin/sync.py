"""Tag sync from the admin: the same tags.sync_account_tags the sync_tags command runs."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_xconversions.errors import XConversionsError
from django_xconversions.models import AdAccount
from django_xconversions.tags import SyncResult, sync_account_tags

# Skipped entries listed in one message; manage.py sync_tags lists them all.
SKIPPED_SHOWN = 10


def report_sync(request: HttpRequest, account: AdAccount) -> bool:
    """Sync one account's tags and say how it went as admin messages."""
    try:
        result = sync_account_tags(account)
    except XConversionsError as exc:
        messages.error(
            request,
            _("%(account)s: tag sync failed: %(error)s") % {"account": account, "error": exc},
        )
        return False
    created = ngettext(
        "%(account)s: %(created)d tag created",
        "%(account)s: %(created)d tags created",
        result.created,
    ) % {"account": account, "created": result.created}
    summary = _("%(created)s, %(updated)d updated, %(deleted)d flagged deleted on X.") % {
        "created": created,
        "updated": result.updated,
        "deleted": result.flagged_deleted,
    }
    if result.pixel_set:
        summary += " " + ngettext(
            "Pixel set on %(count)d tag (the account's only pixel).",
            "Pixel set on %(count)d tags (the account's only pixel).",
            result.pixel_set,
        ) % {"count": result.pixel_set}
    messages.success(request, summary)
    _report_skipped(request, account, result)
    if result.without_pixel:
        messages.warning(
            request,
            ngettext(
                "%(account)s: %(count)d event tag has no pixel: choose one for it (filter "
                "the list by Pixel chosen: No). Its conversions are held until then.",
                "%(account)s: %(count)d event tags have no pixel: choose one on each (filter "
                "the list by Pixel chosen: No). Their conversions are held until then.",
                result.without_pixel,
            )
            % {"account": account, "count": result.without_pixel},
        )
    return True


def _report_skipped(request: HttpRequest, account: AdAccount, result: SyncResult) -> None:
    if not result.skipped:
        return
    shown = "; ".join(str(skipped) for skipped in result.skipped[:SKIPPED_SHOWN])
    more = len(result.skipped) - SKIPPED_SHOWN
    if more > 0:
        shown += " " + _("... and %(more)d more (manage.py sync_tags lists all).") % {"more": more}
    messages.warning(
        request,
        ngettext(
            "%(account)s: %(count)d tag from X skipped, not stored: %(entries)s",
            "%(account)s: %(count)d tags from X skipped, not stored: %(entries)s",
            len(result.skipped),
        )
        % {"account": account, "count": len(result.skipped), "entries": shown},
    )
