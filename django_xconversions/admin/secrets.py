"""Write-only secrets in the admin, kept out of error reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.views.decorators.debug import sensitive_post_parameters

if TYPE_CHECKING:
    from django.contrib import admin

    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = object


class SecretsKeptFromErrorReports(_ModelAdmin):
    """Error reports (ADMINS mail, the DEBUG page) list POST data: never the secrets typed
    into the form's password fields."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        secrets = [
            name
            for name, field in self.form.base_fields.items()
            if isinstance(field.widget, forms.PasswordInput)
        ]
        view = super().changeform_view
        if secrets:  # no names would mean every parameter
            view = sensitive_post_parameters(*secrets)(view)
        return view(request, object_id, form_url, extra_context)
