"""EventTag admin: add, change and delete go to X first; X's refusal shows in the form.

Every write needs ``xconversions.manage_tags`` besides Django's model permission: without
it the tag pages are read-only and the sync action and button are gone.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from django_xconversions import tags
from django_xconversions.admin import display, perms
from django_xconversions.admin.forms import EventTagForm
from django_xconversions.admin.sync import report_sync
from django_xconversions.errors import XAdsError, XConversionsError
from django_xconversions.models import AdAccount, EventTag

REMOTE_READONLY = [
    "remote_id",
    "website_tag_id",
    "status",
    "state_on_x",
    "last_tracked_at_display",
    "synced_at_display",
]
# Read-only windows in words ("1 day"): the model's choices read "1 days".
WINDOW_DISPLAYS = {
    "click_window": "click_window_display",
    "view_through_window": "view_through_window_display",
}


class PixelChosenFilter(admin.SimpleListFilter):
    """Tags without a pixel hold their conversions: one click lists them."""

    title = gettext_lazy("pixel chosen")
    parameter_name = "has_pixel"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("no", gettext_lazy("No: conversions held")), ("yes", gettext_lazy("Yes"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[EventTag]) -> QuerySet[EventTag]:
        if self.value() in ("no", "yes"):
            return queryset.filter(pixel__isnull=self.value() == "no")
        return queryset


def _shown(field: Any) -> Any:
    return WINDOW_DISPLAYS.get(field, field) if isinstance(field, str) else field


class StateOnXFilter(admin.SimpleListFilter):
    title = gettext_lazy("state on X")
    parameter_name = "state_on_x"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("live", gettext_lazy("Live")), ("deleted", gettext_lazy("Deleted on X"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[EventTag]) -> QuerySet[EventTag]:
        if self.value() in ("live", "deleted"):
            return queryset.filter(deleted=self.value() == "deleted")
        return queryset


@admin.register(EventTag)
class EventTagAdmin(perms.DedicatedPermissions, admin.ModelAdmin[EventTag]):
    form = EventTagForm
    # Ids on X, the account and the raw JSON are on each tag's page.
    list_display = [
        "name",
        "key",
        "type",
        "pixel_or_warning",
        "windows",
        "on_x",
    ]
    list_filter = ["account", PixelChosenFilter, "type", "status", StateOnXFilter, "pixel"]
    search_fields = ["name", "key", "remote_id", "website_tag_id"]
    list_select_related = ["account", "pixel"]
    actions = ["sync_from_x"]
    fieldsets = [
        (
            None,
            {"fields": list(EventTagForm.Meta.fields)},
        ),
        (
            gettext_lazy("On X"),
            {"fields": [*REMOTE_READONLY, "raw_json"]},
        ),
    ]

    class Media:
        css = display.MEDIA_CSS

    @admin.display(description=gettext_lazy("Pixel"), ordering="pixel__pixel_id")
    def pixel_or_warning(self, obj: EventTag) -> str | SafeString:
        if obj.pixel is not None:
            return str(obj.pixel)
        if obj.deleted:
            return "-"
        return format_html(
            '<strong class="xconv-no-pixel" style="color: #ba2121;" title="{}">{}</strong>',
            _("Its conversions are held until a pixel is chosen."),
            _("None: choose one"),
        )

    @admin.display(description=gettext_lazy("State on X"), ordering="deleted")
    def state_on_x(self, obj: EventTag) -> SafeString:
        if obj.deleted:
            return format_html('<span class="xconv-state-deleted">{}</span>', _("Deleted on X"))
        return format_html('<span class="xconv-state-live">{}</span>', _("Live"))

    @admin.display(description=gettext_lazy("On X"), ordering="deleted")
    def on_x(self, obj: EventTag) -> SafeString:
        """Deleted on X, or the status X gives a live tag (Unverified, Tracking)."""
        if obj.deleted:
            return self.state_on_x(obj)
        return format_html("{}", obj.get_status_display())

    @admin.display(description=gettext_lazy("Windows"))
    def windows(self, obj: EventTag) -> SafeString:
        click, view = display.days(obj.click_window), display.days(obj.view_through_window)
        return format_html(
            '<span title="{}">{} / {}</span>',
            _("Click window: %(click)s; view-through window: %(view)s")
            % {"click": click, "view": view},
            click,
            view,
        )

    @admin.display(description=gettext_lazy("Click window"), ordering="click_window")
    def click_window_display(self, obj: EventTag) -> str:
        return display.days(obj.click_window)

    @admin.display(description=gettext_lazy("View-through window"), ordering="view_through_window")
    def view_through_window_display(self, obj: EventTag) -> str:
        return display.days(obj.view_through_window)

    @admin.display(description=gettext_lazy("Synced at"), ordering="synced_at")
    def synced_at_display(self, obj: EventTag) -> SafeString | str:
        return display.timestamp(obj.synced_at)

    @admin.display(description=gettext_lazy("Last tracked at"), ordering="last_tracked_at")
    def last_tracked_at_display(self, obj: EventTag) -> SafeString | str:
        return display.timestamp(obj.last_tracked_at)

    @admin.display(description=gettext_lazy("Raw JSON from X"))
    def raw_json(self, obj: EventTag) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.raw, indent=2, sort_keys=True))

    def get_readonly_fields(self, request: HttpRequest, obj: EventTag | None = None) -> Any:
        readonly = [*REMOTE_READONLY, "raw_json", *WINDOW_DISPLAYS.values()]
        if obj is not None:
            readonly.append("account")  # a tag belongs to one account on X
            if obj.deleted:
                readonly.extend(tags.EDITABLE_FIELDS)  # X 404s on deleted tags
        return readonly

    def get_fieldsets(self, request: HttpRequest, obj: EventTag | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or (not obj.deleted and self.has_change_permission(request, obj)):
            return fieldsets
        # Read-only: the windows in words rather than the model's choices.
        return [
            (title, {**options, "fields": [_shown(f) for f in options["fields"]]})
            for title, options in fieldsets
        ]

    # -- permissions: Django's model permission AND manage_tags ------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and self.has_manage_tags_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: EventTag | None = None) -> bool:
        return super().has_change_permission(request, obj) and self.has_manage_tags_permission(
            request
        )

    def has_delete_permission(self, request: HttpRequest, obj: EventTag | None = None) -> bool:
        if obj is not None and obj.deleted:
            return False
        return super().has_delete_permission(request, obj) and self.has_manage_tags_permission(
            request
        )

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> Any:
        # action_location arrived in Django 6.1 (actions on the change form); 5.2 lacks it.
        extra: dict[str, Any] = (
            {} if action_location is None else {"action_location": action_location}
        )
        actions = super().get_actions(request, **extra)
        # Bulk delete would skip X; tags are deleted one at a time, on X first.
        actions.pop("delete_selected", None)
        return actions

    # -- writes ------------------------------------------------------------------------

    def save_model(
        self, request: HttpRequest, obj: EventTag, form: ModelForm[EventTag], change: bool
    ) -> None:
        # The form already created or updated the tag on X (see EventTagForm.full_clean).
        obj.save()

    def delete_model(self, request: HttpRequest, obj: EventTag) -> None:
        tags.push_tag_deletion(obj)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except XConversionsError as exc:
            # Raised inside the view's transaction, so its log entry is rolled back too.
            refused = _("X refused: %(error)s") % {"error": exc}
            messages.error(request, refused if isinstance(exc, XAdsError) else str(exc))
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:xconversions_eventtag_change", args=[object_id])
            )

    # -- sync ----------------------------------------------------------------------------

    @admin.action(description=gettext_lazy("Sync from X"), permissions=["manage_tags"])
    def sync_from_x(self, request: HttpRequest, queryset: QuerySet[EventTag]) -> None:
        for account in AdAccount.objects.filter(pk__in=queryset.values("account_id")):
            report_sync(request, account)

    def get_urls(self) -> list[URLPattern]:
        sync = path(
            "sync/",
            self.admin_site.admin_view(require_POST(self.sync_view)),
            name="xconversions_eventtag_sync",
        )
        return [sync, *super().get_urls()]

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        """The list's "Sync from X" button: every active account (works with no tags yet)."""
        if not self.has_manage_tags_permission(request):
            raise PermissionDenied
        accounts = AdAccount.objects.filter(status=AdAccount.Status.ACTIVE)
        if not accounts:
            messages.warning(request, _("No active account to sync."))
        for account in accounts:
            report_sync(request, account)
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:xconversions_eventtag_changelist")
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if self.has_manage_tags_permission(request):
            context["xconv_sync_url"] = reverse(
                f"{self.admin_site.name}:xconversions_eventtag_sync"
            )
        return super().changelist_view(request, context)
