"""What an admin adds to an object's change page, given the object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from django.contrib import admin

    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = object


class ObjectPageContext(_ModelAdmin):
    """``object_page_context(request, obj)`` is called on each request of an object's
    change page (not for an object that does not exist); what it returns joins the
    template's context, over what the caller passed."""

    def object_page_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {}

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            context.update(self.object_page_context(request, obj))
        return super().change_view(request, object_id, form_url, context)
