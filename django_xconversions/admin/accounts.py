"""AdAccount admin: write-only tokens, Connect with X, Check access, Resume sending."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from django_xconversions import actions
from django_xconversions.admin import display, perms
from django_xconversions.admin.connect import connect_urls
from django_xconversions.admin.forms import AdAccountForm
from django_xconversions.admin.object_page import ObjectPageContext
from django_xconversions.admin.secrets import (
    SecretsKeptFromErrorReports,
    unreadable_display,
    warn_unreadable,
)
from django_xconversions.admin.sync import report_sync
from django_xconversions.models import AdAccount
from django_xconversions.stored_secrets import unreadable, unreadable_of_account


def report_access(request: HttpRequest, account: AdAccount) -> None:
    result = actions.check_access(account)
    if result.ok:
        messages.success(
            request,
            _("%(account)s: access checked, permissions %(permissions)s.")
            % {"account": account, "permissions": ", ".join(result.permissions)},
        )
    else:
        messages.warning(
            request,
            _("%(account)s: cannot send conversions. %(why)s")
            % {"account": account, "why": result.message},
        )


@admin.register(AdAccount)
class AdAccountAdmin(
    perms.DedicatedPermissions,
    ObjectPageContext,
    SecretsKeptFromErrorReports,
    admin.ModelAdmin[AdAccount],
):
    form = AdAccountForm
    list_display = [
        "__str__",
        "status_badge",
        "has_tokens_display",
        "access_display",
        "permissions_display",
        "access_checked_at_display",
        "paused_reason_display",
    ]
    list_filter = ["status", "access_check_ok"]
    search_fields = ["account_id", "name", "x_screen_name"]
    readonly_fields = [
        "has_tokens_display",
        "secrets_display",
        "x_user_id",
        "x_screen_name",
        "status",
        "paused_reason",
        "paused_at",
        "rate_limited_until",
        "permissions_display",
        "access_check_ok",
        "access_checked_at",
        "access_check_message",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["account_id", "name"]}),
        (
            gettext_lazy("Credentials"),
            {
                "fields": [
                    "has_tokens_display",
                    "secrets_display",
                    "access_token",
                    "access_token_secret",
                ]
            },
        ),
        (
            gettext_lazy("Access on X"),
            {
                "fields": [
                    "x_user_id",
                    "x_screen_name",
                    "permissions_display",
                    "access_check_ok",
                    "access_checked_at",
                    "access_check_message",
                ]
            },
        ),
        (
            gettext_lazy("Sending"),
            {"fields": ["status", "paused_reason", "paused_at", "rate_limited_until"]},
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["check_access_action", "resume_action", "sync_tags_action"]

    class Media:
        css = display.MEDIA_CSS

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_badge(self, obj: AdAccount) -> SafeString:
        return display.status_badge(obj.status, obj.get_status_display())

    @admin.display(description=gettext_lazy("Access checked at"), ordering="access_checked_at")
    def access_checked_at_display(self, obj: AdAccount) -> SafeString | str:
        return display.timestamp(obj.access_checked_at)

    @admin.display(description=gettext_lazy("Paused because"))
    def paused_reason_display(self, obj: AdAccount) -> SafeString | str:
        return display.clipped(obj.paused_reason, css="xconv-clip-reason")

    @admin.display(description=gettext_lazy("Tokens"), boolean=True)
    def has_tokens_display(self, obj: AdAccount) -> bool:
        return obj.has_tokens

    @admin.display(description=gettext_lazy("Access"), boolean=True, ordering="access_check_ok")
    def access_display(self, obj: AdAccount) -> bool | None:
        """Whether X's last answer lets the token's user send (unknown until checked)."""
        return obj.access_check_ok

    @admin.display(description=gettext_lazy("Secrets readable"))
    def secrets_display(self, obj: AdAccount) -> str:
        return unreadable_display(lambda: unreadable_of_account(obj)) if obj.pk else "-"

    @admin.display(description=gettext_lazy("Permissions on X"))
    def permissions_display(self, obj: AdAccount) -> str:
        return ", ".join(obj.permissions or []) or "-"

    # -- actions -----------------------------------------------------------------------

    @admin.action(description=gettext_lazy("Check access on X"), permissions=["check_access"])
    def check_access_action(self, request: HttpRequest, queryset: QuerySet[AdAccount]) -> None:
        for account in queryset:
            report_access(request, account)

    @admin.action(description=gettext_lazy("Resume sending"), permissions=["change"])
    def resume_action(self, request: HttpRequest, queryset: QuerySet[AdAccount]) -> None:
        paused = list(queryset.filter(status=AdAccount.Status.PAUSED))
        for account in paused:
            account.resume()
        messages.success(
            request,
            ngettext("%(n)d account resumed.", "%(n)d accounts resumed.", len(paused))
            % {"n": len(paused)},
        )

    @admin.action(description=gettext_lazy("Sync event tags from X"), permissions=["manage_tags"])
    def sync_tags_action(self, request: HttpRequest, queryset: QuerySet[AdAccount]) -> None:
        for account in queryset:
            report_sync(request, account)

    # -- buttons on the change form and list -------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/check-access/",
                self.admin_site.admin_view(require_POST(self.check_access_view)),
                name="xconversions_adaccount_check_access",
            ),
            path(
                "<path:object_id>/resume/",
                self.admin_site.admin_view(require_POST(self.resume_view)),
                name="xconversions_adaccount_resume",
            ),
        ]
        return [*connect_urls(self), *own, *super().get_urls()]

    def _account_or_403(self, request: HttpRequest, object_id: str, allowed: bool) -> AdAccount:
        if not allowed:
            raise PermissionDenied
        return get_object_or_404(AdAccount, pk=object_id)

    def _back(self, account: AdAccount) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:xconversions_adaccount_change", args=[account.pk])
        )

    def check_access_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = self._account_or_403(
            request, object_id, self.has_check_access_permission(request)
        )
        report_access(request, account)
        return self._back(account)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = self._account_or_403(request, object_id, self.has_change_permission(request))
        account.resume()
        messages.success(request, _("%(account)s resumed.") % {"account": account})
        return self._back(account)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"xconv_connect_url": self._connect_url(), **(extra_context or {})}
        if request.method == "GET":
            warn_unreadable(request, unreadable)
        return super().changelist_view(request, context)

    def _connect_url(self) -> str | None:
        # The Connect with X views live in connect.py; until they exist, no button.
        try:
            return reverse(f"{self.admin_site.name}:xconversions_adaccount_connect")
        except NoReverseMatch:
            return None

    def object_page_context(self, request: HttpRequest, obj: AdAccount) -> dict[str, Any]:
        if request.method == "GET":
            warn_unreadable(request, lambda: unreadable_of_account(obj))
        context = {}
        name = self.admin_site.name
        if self.has_check_access_permission(request):
            context["xconv_check_access_url"] = reverse(
                f"{name}:xconversions_adaccount_check_access", args=[obj.pk]
            )
        if not obj.is_active and self.has_change_permission(request, obj):
            context["xconv_resume_url"] = reverse(
                f"{name}:xconversions_adaccount_resume", args=[obj.pk]
            )
        return context
