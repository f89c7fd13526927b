"""Connect an AdAccount with X through the 3-legged OAuth 1.0a flow (admin views).

``connect_urls`` returns the URL patterns AdAccountAdmin.get_urls() adds, before the
catch-all object URLs:

- ``connect/`` (xconversions_adaccount_connect): choose an account (``?account=<pk>``
  preselects one) or a new account id, and web or PIN; the POST gets a request token
  and sends the browser to X's authorize page (or to the PIN page).
- ``connect/callback/`` (…_connect_callback): where X sends the browser back. It only
  completes a request token this admin session started (connect_session.py), so the GET
  cannot be forged into storing someone else's tokens.
- ``connect/pin/`` (…_connect_pin): the out-of-band variant; the PIN is POSTed (CSRF).

Every view needs the change permission on ad accounts (creating one needs add). Tokens
and secrets are never logged or rendered; only the public request token is part of the
authorize URL, by design of OAuth.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin, widgets
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from django_xconversions import actions, oauth_flow
from django_xconversions.admin import connect_session
from django_xconversions.admin.connect_session import PendingFlow
from django_xconversions.errors import XConversionsError
from django_xconversions.models import AdAccount, base36_validator

AccountAdmin = ModelAdmin[AdAccount]

TEMPLATES = "admin/xconversions/connect"
WEB, PIN = "web", "pin"


class ConnectForm(forms.Form):
    account = forms.ModelChoiceField(
        queryset=AdAccount.objects.none(),
        required=False,
        empty_label=gettext_lazy("— a new account —"),
        label=gettext_lazy("Ad account"),
    )
    new_account_id = forms.CharField(
        max_length=32,
        required=False,
        validators=[base36_validator],
        label=gettext_lazy("New account ID"),
        help_text=gettext_lazy("The X ad account's ID, only for an account not listed above."),
        widget=widgets.AdminTextInputWidget,
    )
    new_name = forms.CharField(
        max_length=200,
        required=False,
        label=gettext_lazy("New account name"),
        widget=widgets.AdminTextInputWidget,
    )
    method = forms.ChoiceField(
        choices=[
            (WEB, gettext_lazy("Authorize on X and come back here")),
            (PIN, gettext_lazy("Authorize on X and type the PIN it shows")),
        ],
        initial=WEB,
        widget=widgets.AdminRadioSelect(attrs={"class": "radiolist"}),
        label=gettext_lazy("Method"),
    )

    def __init__(self, *args: Any, accounts: Any, can_add: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        account_field = cast("forms.ModelChoiceField[AdAccount]", self.fields["account"])
        account_field.queryset = accounts
        self.can_add = can_add
        if not can_add:
            del self.fields["new_account_id"], self.fields["new_name"]
            account_field.required = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("account") is not None or not self.can_add:
            return data
        account_id = data.get("new_account_id", "")
        if not account_id:
            raise forms.ValidationError(_("Choose an account, or give a new account's id."))
        if AdAccount.objects.filter(account_id=account_id).exists():
            self.add_error("new_account_id", _("This account exists: choose it above."))
        return data


class ConnectViews:
    def __init__(self, model_admin: AccountAdmin) -> None:
        self.model_admin = model_admin
        self.site_name = model_admin.admin_site.name

    def urls(self) -> list[URLPattern]:
        wrap = self.model_admin.admin_site.admin_view  # staff only, CSRF-protected
        return [
            path(
                "connect/",
                wrap(require_http_methods(["GET", "POST"])(self.start)),
                name="xconversions_adaccount_connect",
            ),
            path(
                "connect/callback/",
                wrap(require_GET(self.callback)),
                name="xconversions_adaccount_connect_callback",
            ),
            path(
                "connect/pin/",
                wrap(
                    sensitive_post_parameters("pin")(
                        require_http_methods(["GET", "POST"])(self.pin)
                    )
                ),
                name="xconversions_adaccount_connect_pin",
            ),
        ]

    # -- helpers -----------------------------------------------------------------------

    def _url(self, name: str, *args: Any) -> str:
        return reverse(f"{self.site_name}:xconversions_adaccount_{name}", args=args)

    def _require_change(self, request: HttpRequest) -> None:
        if not self.model_admin.has_change_permission(request):
            raise PermissionDenied

    def _render(
        self, request: HttpRequest, template: str, title: str, **context: Any
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            f"{TEMPLATES}/{template}",
            {
                **self.model_admin.admin_site.each_context(request),
                "opts": AdAccount._meta,
                "title": title,
                "changelist_url": self._url("changelist"),
                **context,
            },
        )

    def _callback_url(self, request: HttpRequest) -> str:
        return request.build_absolute_uri(self._url("connect_callback"))

    def _refuse(self, request: HttpRequest, message: str) -> HttpResponseRedirect:
        messages.error(request, message)
        return HttpResponseRedirect(self._url("connect"))

    # -- start ---------------------------------------------------------------------------

    def start(self, request: HttpRequest) -> HttpResponse:
        self._require_change(request)
        accounts = self.model_admin.get_queryset(request)
        can_add = self.model_admin.has_add_permission(request)
        if request.method == "POST":
            form = ConnectForm(request.POST, accounts=accounts, can_add=can_add)
            if form.is_valid():
                redirect = self._begin(request, form.cleaned_data)
                if redirect is not None:
                    return redirect
        else:
            form = ConnectForm(
                initial={"account": request.GET.get("account")}, accounts=accounts, can_add=can_add
            )
        return self._render(
            request,
            "start.html",
            _("Connect with X"),
            form=form,
            callback_url=self._callback_url(request),
        )

    def _begin(self, request: HttpRequest, data: dict[str, Any]) -> HttpResponse | None:
        account: AdAccount | None = data.get("account")
        if account is not None and not self.model_admin.has_change_permission(request, account):
            raise PermissionDenied
        oob = data["method"] == PIN
        callback = oauth_flow.OOB if oob else self._callback_url(request)
        try:
            request_token = oauth_flow.fetch_request_token(callback)
        except XConversionsError as exc:
            hint = ""
            if getattr(exc, "status", None) == 403 and not oob:
                hint = " " + _(
                    "Add %(url)s to your X app's callback URLs (X refuses localhost: "
                    "use 127.0.0.1)."
                ) % {"url": callback}
            said = str(exc).rstrip()
            # X's refusal has no closing full stop; the hint must not run on from it.
            separator = "" if not hint or said.endswith((".", "!", "?")) else "."
            messages.error(request, f"{said}{separator}{hint}")
            return None
        flow = connect_session.start(
            request,
            request_token,
            account_pk=account.pk if account else None,
            account_id=account.account_id if account else data["new_account_id"],
            account_name=account.name if account else data.get("new_name", ""),
            oob=oob,
        )
        if oob:
            return HttpResponseRedirect(f"{self._url('connect_pin')}?flow={flow.flow_id}")
        return HttpResponseRedirect(oauth_flow.authorize_url(request_token.token))

    # -- web callback --------------------------------------------------------------------

    def callback(self, request: HttpRequest) -> HttpResponse:
        self._require_change(request)
        denied = request.GET.get("denied", "")
        flow = connect_session.find_by_token(request, denied or request.GET.get("oauth_token", ""))
        if flow is None or flow.oob:
            return self._refuse(
                request,
                _(
                    "This authorization was not started from your admin session, or it "
                    "expired. Nothing was stored; connect again."
                ),
            )
        connect_session.finish(request, flow)
        if denied:
            messages.warning(request, _("The authorization was cancelled on X."))
            return HttpResponseRedirect(self._url("changelist"))
        return self._complete(request, flow, request.GET.get("oauth_verifier", ""))

    # -- PIN (out of band) ---------------------------------------------------------------

    def pin(self, request: HttpRequest) -> HttpResponse:
        self._require_change(request)
        source = request.POST if request.method == "POST" else request.GET
        flow = connect_session.find(request, source.get("flow", ""))
        if flow is None or not flow.oob:
            return self._refuse(
                request, _("This PIN authorization is unknown or expired; connect again.")
            )
        if request.method == "POST":
            pin = "".join(str(request.POST.get("pin", "")).split())
            if pin:
                connect_session.finish(request, flow)
                return self._complete(request, flow, pin)
            messages.error(request, _("Type the PIN X showed you."))
        return self._render(
            request,
            "pin.html",
            _("Connect with X: PIN"),
            flow_id=flow.flow_id,
            authorize_url=oauth_flow.authorize_url(flow.token),
            account_label=flow.account_name or flow.account_id,
        )

    # -- both: trade the verifier and store the tokens -----------------------------------

    def _complete(self, request: HttpRequest, flow: PendingFlow, verifier: str) -> HttpResponse:
        account = self._account_for(request, flow)
        try:
            access = oauth_flow.fetch_access_token(flow.request_token, verifier)
        except XConversionsError as exc:
            return self._refuse(request, _("Nothing was stored: %(why)s") % {"why": exc})
        if account is None:
            account = AdAccount(account_id=flow.account_id, name=flow.account_name)
        account.set_tokens(access.token, access.secret)
        account.x_user_id = access.user_id
        account.x_screen_name = access.screen_name
        account.save()
        messages.success(
            request,
            _("%(account)s is connected with X as @%(screen_name)s.")
            % {"account": account, "screen_name": access.screen_name or access.user_id},
        )
        checked = actions.check_access(account)
        if not checked.ok:
            messages.warning(
                request, _("It cannot send conversions yet: %(why)s") % {"why": checked.message}
            )
        return HttpResponseRedirect(self._url("change", account.pk))

    def _account_for(self, request: HttpRequest, flow: PendingFlow) -> AdAccount | None:
        """The account the flow is bound to (None: to be created), permissions re-checked."""
        if flow.account_pk is not None:
            account = AdAccount.objects.filter(pk=flow.account_pk).first()
            if account is None or not self.model_admin.has_change_permission(request, account):
                raise PermissionDenied
            return account
        if not self.model_admin.has_add_permission(request):
            raise PermissionDenied
        existing = AdAccount.objects.filter(account_id=flow.account_id).first()
        if existing is not None and not self.model_admin.has_change_permission(request, existing):
            raise PermissionDenied
        return existing


def connect_urls(model_admin: AccountAdmin) -> list[URLPattern]:
    return ConnectViews(model_admin).urls()
