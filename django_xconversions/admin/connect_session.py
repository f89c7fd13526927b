"""Pending "Connect with X" flows, kept in the admin user's session.

A flow is bound to the session and user that started it and to the account it connects:
the callback only completes a request token found here, so a token issued to anyone else
(another admin, an attacker's own X login) is refused. The request token secret is stored
encrypted, so a cookie-based session backend never carries it in clear.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.http import HttpRequest

from django_xconversions import crypto
from django_xconversions.oauth_flow import RequestToken

SESSION_KEY = "xconversions_connect"
# How long a started flow may take (X's request tokens are short-lived too).
MAX_AGE_SECONDS = 15 * 60
MAX_PENDING = 5  # per session: older flows are dropped


@dataclass(frozen=True)
class PendingFlow:
    flow_id: str
    token: str
    secret_encrypted: str = field(repr=False)
    user_pk: str
    account_pk: int | None  # None: create ``account_id`` when the flow completes
    account_id: str
    account_name: str
    oob: bool
    started_at: float

    @property
    def request_token(self) -> RequestToken:
        return RequestToken(self.token, crypto.decrypt(self.secret_encrypted))


def _flows(request: HttpRequest) -> dict[str, dict[str, Any]]:
    stored = request.session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return {}
    now = time.time()
    return {
        key: value
        for key, value in stored.items()
        if isinstance(value, dict) and now - float(value.get("started_at", 0)) < MAX_AGE_SECONDS
    }


def _save(request: HttpRequest, flows: dict[str, dict[str, Any]]) -> None:
    if flows:
        request.session[SESSION_KEY] = flows
    else:
        request.session.pop(SESSION_KEY, None)


def start(
    request: HttpRequest,
    request_token: RequestToken,
    *,
    account_pk: int | None,
    account_id: str,
    account_name: str,
    oob: bool,
) -> PendingFlow:
    flow = PendingFlow(
        flow_id=secrets.token_urlsafe(16),
        token=request_token.token,
        secret_encrypted=crypto.encrypt(request_token.secret),
        user_pk=str(request.user.pk),
        account_pk=account_pk,
        account_id=account_id,
        account_name=account_name,
        oob=oob,
        started_at=time.time(),
    )
    flows = _flows(request)
    flows[flow.flow_id] = asdict(flow)
    newest = sorted(flows.items(), key=lambda item: float(item[1]["started_at"]))
    _save(request, dict(newest[-MAX_PENDING:]))
    return flow


def _matching(request: HttpRequest, **wanted: Any) -> PendingFlow | None:
    user_pk = str(request.user.pk)
    for value in _flows(request).values():
        if value.get("user_pk") == user_pk and all(value.get(k) == v for k, v in wanted.items()):
            try:
                return PendingFlow(**value)
            except TypeError:  # written by another version of this module
                return None
    return None


def find_by_token(request: HttpRequest, token: str) -> PendingFlow | None:
    """The flow of this session and user that got ``token`` from X, if any."""
    return _matching(request, token=token) if token else None


def find(request: HttpRequest, flow_id: str) -> PendingFlow | None:
    return _matching(request, flow_id=flow_id) if flow_id else None


def finish(request: HttpRequest, flow: PendingFlow) -> None:
    """Forget the flow: a request token is used once, whatever the outcome."""
    flows = _flows(request)
    flows.pop(flow.flow_id, None)
    _save(request, flows)
