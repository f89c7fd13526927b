"""Write-only secrets in the admin, kept out of error reports; secrets no configured key
opens are said on the page (never a 500)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters

from django_xconversions.errors import EncryptionKeyError
from django_xconversions.stored_secrets import StoredSecret, unreadable_summary

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


def secrets_problem(find: Callable[[], list[StoredSecret]]) -> str | None:
    """What is wrong with the secrets ``find`` surveys (none opens, or the key setting
    itself is unusable), or None. Never raises: the page must render to say it."""
    try:
        found = find()
    except EncryptionKeyError as exc:
        return str(exc)
    return unreadable_summary(found) if found else None


def warn_unreadable(request: HttpRequest, find: Callable[[], list[StoredSecret]]) -> None:
    """Say on the page which stored secrets no configured key opens, and the fix."""
    problem = secrets_problem(find)
    if problem:
        messages.error(request, problem)


def unreadable_display(find: Callable[[], list[StoredSecret]]) -> str:
    """The read-only field's text: the problem, or that every stored secret opens."""
    return secrets_problem(find) or _("Every stored secret can be decrypted.")
