"""The client side of X's 3-legged OAuth 1.0a flow ("Connect with X").

1. ``fetch_request_token(callback)``: POST oauth/request_token, signed with the app's
   consumer key and secret, ``oauth_callback`` a URL on the app's allowlist or ``"oob"``.
2. ``authorize_url(token)``: where the user approves the app on X.
3. ``fetch_access_token(request_token, verifier)``: POST oauth/access_token, signed with
   the request token too; the verifier comes back on the callback (or is the PIN).

Hosts come from ``XCONVERSIONS["OAUTH_BASE_URL"]``, keys from CONSUMER_KEY/SECRET. Plain
requests with requests-oauthlib's OAuth1 (not OAuth1Session, whose debug log prints the
token response); tokens and secrets are never logged and their reprs are masked.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

import requests
from requests_oauthlib import OAuth1

from django_xconversions.client import OAuth1Signer
from django_xconversions.conf import setting_path, xsettings
from django_xconversions.errors import ImproperlyConfiguredAccount, XConversionsError

__all__ = [
    "OOB",
    "AccessToken",
    "OAuthFlowError",
    "RequestToken",
    "authorize_url",
    "fetch_access_token",
    "fetch_request_token",
]

logger = logging.getLogger("django_xconversions.oauth_flow")

OOB = "oob"  # out-of-band: X shows the user a PIN instead of redirecting
# X answers errors as JSON ({"errors":[{"code","message"}]}), XML or plain text.
_XML_ERROR = re.compile(r"<error[^>]*>([^<]+)</error>")


class OAuthFlowError(XConversionsError):
    """X refused a step of the flow (or could not be reached); prints X's message."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestToken:
    token: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)
    secret: str = field(repr=False)
    user_id: str
    screen_name: str


def _base_url() -> str:
    return xsettings.OAUTH_BASE_URL.rstrip("/")


def authorize_url(request_token: str) -> str:
    return f"{_base_url()}/oauth/authorize?{urlencode({'oauth_token': request_token})}"


def _consumer() -> tuple[str, str]:
    # None (an unset environment variable) reads as "": missing, never the string "None".
    key, secret = xsettings.CONSUMER_KEY, xsettings.CONSUMER_SECRET
    missing = [
        setting_path(n) for n, v in (("CONSUMER_KEY", key), ("CONSUMER_SECRET", secret)) if not v
    ]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ImproperlyConfiguredAccount(
            f"{' and '.join(missing)} {verb} required to connect with X"
        )
    return key, secret


def _error_message(response: requests.Response) -> str:
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict) and first.get("message"):
            return str(first["message"])
    match = _XML_ERROR.search(text)
    if match:
        return match.group(1).strip()
    # Short plain text is X's message; anything else (an HTML page) is summarised.
    if text and len(text) <= 300 and "<" not in text:
        return text
    return f"HTTP {response.status_code}"


def _post(path: str, auth: OAuth1) -> dict[str, str]:
    url = f"{_base_url()}{path}"
    started = time.monotonic()
    try:
        response = requests.post(
            url,
            auth=OAuth1Signer(auth),  # mutes the signing libraries' debug logs (tokens)
            headers={"User-Agent": xsettings.USER_AGENT},
            timeout=(xsettings.CONNECT_TIMEOUT, xsettings.READ_TIMEOUT),
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise OAuthFlowError(
            f"Could not reach X at {setting_path('OAUTH_BASE_URL')} ({type(exc).__name__})"
        ) from exc
    # Status only: the body of a success holds the tokens.
    logger.debug("POST %s -> %s in %.3fs", path, response.status_code, time.monotonic() - started)
    if response.status_code != 200:
        raise OAuthFlowError(
            f"X refused {path}: {_error_message(response)}", status=response.status_code
        )
    return dict(parse_qsl(response.text, keep_blank_values=True))


def fetch_request_token(callback: str) -> RequestToken:
    """A request token whose approval X will send to ``callback`` (a URL, or OOB)."""
    key, secret = _consumer()
    auth = OAuth1(key, client_secret=secret, callback_uri=callback, signature_type="AUTH_HEADER")
    answer = _post("/oauth/request_token", auth)
    # OAuth 1.0a: a provider that did not confirm the callback is not speaking 1.0a.
    if answer.get("oauth_callback_confirmed") != "true":
        raise OAuthFlowError("X did not confirm the callback (oauth_callback_confirmed)")
    token, token_secret = answer.get("oauth_token", ""), answer.get("oauth_token_secret", "")
    if not (token and token_secret):
        raise OAuthFlowError("X's request token answer lacks oauth_token or its secret")
    return RequestToken(token, token_secret)


def fetch_access_token(request_token: RequestToken, verifier: str) -> AccessToken:
    """Trade an approved request token and its verifier (or PIN) for the access token."""
    key, secret = _consumer()
    auth = OAuth1(
        key,
        client_secret=secret,
        resource_owner_key=request_token.token,
        resource_owner_secret=request_token.secret,
        verifier=verifier,
        signature_type="AUTH_HEADER",
    )
    answer = _post("/oauth/access_token", auth)
    token, token_secret = answer.get("oauth_token", ""), answer.get("oauth_token_secret", "")
    if not (token and token_secret):
        raise OAuthFlowError("X's access token answer lacks oauth_token or its secret")
    return AccessToken(
        token, token_secret, answer.get("user_id", ""), answer.get("screen_name", "")
    )
