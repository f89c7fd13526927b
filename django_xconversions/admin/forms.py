"""Admin forms: write-only secrets, and event tags validated locally, then by X."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from django_xconversions import crypto, tags
from django_xconversions.admin.display import days
from django_xconversions.conf import setting_path
from django_xconversions.errors import EncryptionKeyError, XAdsError, XConversionsError
from django_xconversions.models import AdAccount, EventTag, Pixel

# X's own wording, so the local refusal reads the same as X's would.
MSG_VIEW_WINDOW = "view_through_window must be less than or equal to click_window"


def _secret(label: Any, help_text: Any) -> forms.CharField:
    # render_value=False: a stored secret never travels back to the browser.
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


KEEP_HELP = _("Write-only. Leave blank to keep the stored value.")


class AdAccountForm(forms.ModelForm[AdAccount]):
    access_token = _secret(_("Access token"), KEEP_HELP)
    access_token_secret = _secret(_("Access token secret"), KEEP_HELP)

    class Meta:
        model = AdAccount
        fields = ["account_id", "name"]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        typed = {name: cleaned.get(name) or "" for name in ("access_token", "access_token_secret")}
        if any(typed.values()) and _can_encrypt(self):
            for name, value in typed.items():
                # A blank one keeps its stored value: it must be one a configured key opens.
                stored = getattr(self.instance, f"{name}_encrypted")
                if not value and stored and crypto.opening_key(stored) is None:
                    self.add_error(
                        name,
                        _(
                            "The stored %(label)s cannot be decrypted with any key in "
                            "%(setting)s: type it too, or add the key it was written with "
                            "to the list."
                        )
                        % {
                            # The label in a sentence: "the stored access token secret".
                            "label": AdAccount.ENCRYPTED_FIELDS[f"{name}_encrypted"],
                            "setting": _SETTING,
                        },
                    )
        return cleaned

    def save(self, commit: bool = True) -> AdAccount:
        account = super().save(commit=False)
        token = self.cleaned_data.get("access_token") or ""
        secret = self.cleaned_data.get("access_token_secret") or ""
        if token or secret:
            # A blank one keeps its stored value (readable: see clean); set_tokens encrypts.
            account.set_tokens(
                token or _stored(account.access_token_encrypted),
                secret or _stored(account.access_token_secret_encrypted),
            )
        if commit:
            account.save()
        return account


_SETTING = setting_path("ENCRYPTION_KEY")


def _can_encrypt(form: forms.BaseForm) -> bool:
    """Whether typed secrets can be stored; if not, the form says why."""
    try:
        crypto.active_keys()
    except EncryptionKeyError as exc:
        form.add_error(None, str(exc))
        return False
    return True


def _stored(encrypted: str) -> str:
    return crypto.decrypt(encrypted) if encrypted else ""


class PixelForm(forms.ModelForm[Pixel]):
    pixel_token = _secret(
        _("Pixel token"),
        format_lazy(
            "{} {}", _("Conversions API token of the pixel (sent as X-Pixel-Token)."), KEEP_HELP
        ),
    )

    class Meta:
        model = Pixel
        fields = ["pixel_id", "account", "name"]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        if cleaned.get("pixel_token"):
            _can_encrypt(self)
        return cleaned

    def save(self, commit: bool = True) -> Pixel:
        pixel = super().save(commit=False)
        token = self.cleaned_data.get("pixel_token") or ""
        if token:
            pixel.set_pixel_token(token)
        if commit:
            pixel.save()
        return pixel


def window_error(click_window: int, view_through_window: int) -> str | None:
    """X's rule between the two windows (their allowed values are the fields' choices)."""
    if view_through_window > click_window:
        return MSG_VIEW_WINDOW
    return None


class EventTagForm(forms.ModelForm[EventTag]):
    """Checked locally first; when valid, the tag is created or changed on X right away,
    so X's refusal becomes a form error and nothing is saved locally."""

    class Meta:
        model = EventTag
        fields = [
            "account",
            "pixel",
            "key",
            "name",
            "type",
            "click_window",
            "view_through_window",
            "retargeting_enabled",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "1 day", not the model's "1 days" (its choices are part of the migrations).
        for name, values in (
            ("click_window", EventTag.CLICK_WINDOWS),
            ("view_through_window", EventTag.VIEW_THROUGH_WINDOWS),
        ):
            field = self.fields.get(name)
            if isinstance(field, forms.TypedChoiceField):
                field.choices = [(value, days(value)) for value in values]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        click = cleaned.get("click_window", self.instance.click_window)
        view = cleaned.get("view_through_window", self.instance.view_through_window)
        if click is not None and view is not None:
            problem = window_error(int(click), int(view))
            if problem:
                self.add_error("view_through_window", problem)
        account = cleaned.get("account") or getattr(self.instance, "account", None)
        pixel = cleaned.get("pixel")
        if pixel is not None and account is not None and pixel.account_id != account.pk:
            self.add_error("pixel", _("This pixel belongs to another account."))
        return cleaned

    def full_clean(self) -> None:
        super().full_clean()  # fields, clean(), model validation and unique checks
        if self.is_bound and not self.errors:
            self._push_to_x()

    def _push_to_x(self) -> None:
        tag = self.instance
        try:
            if tag.pk is None:
                tags.push_new_tag(tag)
            else:
                changed = [name for name in tags.EDITABLE_FIELDS if name in self.changed_data]
                tags.push_tag_changes(tag, changed)
        except XAdsError as exc:
            for message in exc.messages:
                self.add_error(None, _("X refused: %(message)s") % {"message": message})
        except XConversionsError as exc:  # e.g. the account has no tokens yet
            self.add_error(None, str(exc))
