"""X's 3-legged OAuth 1.0a flow: request_token, the authorize page, access_token.

As X documents it: a request token needs an ``oauth_callback`` (``oob`` for a PIN) whose
URL, without its query string, is on the app's callback allowlist (exact match, never
localhost); the user approves on X's authorize page, which redirects to the callback with
``oauth_token`` and ``oauth_verifier`` (or shows a PIN); ``oauth/access_token``, signed with
the request token, trades the verifier for the user's access token. Emulator choices are
marked "inferred".

Demo mode (local development only, never X's behaviour): an app given
``allow_loopback_callbacks`` also accepts any callback on a loopback host (127.0.0.1,
localhost, [::1]) at any port and path, so a project's ``runserver`` on whatever port can
connect an account. Everything else is checked as X checks it.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django_xconversions.emulator import oauth
from django_xconversions.emulator.world import User, World

# X does not document how long a request token lives (inferred: 15 minutes).
REQUEST_TOKEN_TTL = 15 * 60
MAX_CALLBACK_URLS = 10  # X's hard limit per app
FORM = "application/x-www-form-urlencoded"
HTML = "text/html; charset=utf-8"
JSON = "application/json;charset=utf-8"
# X's own messages (code 32, 89, 415); the verifier one is what X's endpoint answers as text.
COULD_NOT_AUTHENTICATE = (32, "Could not authenticate you.")
INVALID_TOKEN = (89, "Invalid or expired token.")
CALLBACK_NOT_APPROVED = (
    415,
    "Callback URL not approved for this client application. Approved callback URLs can be "
    "adjusted in your application settings",
)
INVALID_VERIFIER = "Error processing your OAuth request: Invalid oauth_verifier parameter"
DISALLOWED_SCHEMES = frozenset(
    {"javascript", "vbscript", "vbs", "data", "mocha", "keyword", "livescript", "ldap"}
)
# Demo mode's loopback hosts, as urlsplit() reports them ("[::1]" -> "::1").
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Request(Protocol):
    """What a handler reads off the emulator's parsed request (api.Call)."""

    method: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    uri: str


@dataclass
class Answer:
    """A non-JSON-envelope answer: form-encoded tokens, an HTML page, a redirect."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RequestToken:
    token: str
    secret: str = field(repr=False)
    consumer_key: str
    callback: str  # a URL or "oob"
    expires_at: float
    # Set once a user approved: a verifier (a PIN for oob) and who approved.
    verifier: str | None = field(default=None, repr=False)
    user_id: str | None = None
    # A nonce of the authorize form, so only the page X served can approve (CSRF).
    form_nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)


def _errors(status: int, *errors: tuple[int, str]) -> Answer:
    body = {"errors": [{"code": code, "message": message} for code, message in errors]}
    return Answer(status, json.dumps(body, separators=(",", ":")).encode(), JSON)


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def is_loopback_callback(url: str) -> bool:
    """An http(s) URL on 127.0.0.1, localhost or [::1], any port (demo mode's rule)."""
    parts = urlsplit(url)
    try:
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and parts.hostname in LOOPBACK_HOSTS


def _with_params(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _page(title: str, body: str, status: int = 200) -> Answer:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "</head><body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Answer(status, text.encode(), HTML)


class OAuthFlow:
    """Request tokens, callback allowlists and the access tokens users granted."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.request_token_ttl: float = REQUEST_TOKEN_TTL
        self.callback_urls: dict[str, list[str]] = {}  # consumer key -> allowlist
        # Apps in demo mode: any loopback callback is approved (see the module docstring).
        self.loopback_callbacks: set[str] = set()
        self.request_tokens: dict[str, RequestToken] = {}
        # X hands the same access token to a user who authorizes the same app again.
        self.granted: dict[tuple[str, str], User] = {}

    # -- seeding (the developer portal's app settings) -----------------------------------

    def allow_callback(self, consumer_key: str, url: str) -> None:
        """Add ``url`` to the app's callback allowlist, refusing what the portal refuses."""
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise ValueError("X does not allow query strings in allowlisted callback URLs")
        if parts.hostname == "localhost":
            raise ValueError("X does not allow localhost callback URLs: use 127.0.0.1")
        if not parts.scheme or parts.scheme.lower() in DISALLOWED_SCHEMES:
            raise ValueError(f"X does not allow the callback URL {url!r}")
        with self.world.lock:
            if consumer_key not in self.world.apps:
                raise KeyError(f"unknown app {consumer_key}")
            allowed = self.callback_urls.setdefault(consumer_key, [])
            if url not in allowed:
                if len(allowed) >= MAX_CALLBACK_URLS:
                    raise ValueError(f"X allows at most {MAX_CALLBACK_URLS} callback URLs")
                allowed.append(url)

    def allow_loopback_callbacks(self, consumer_key: str) -> None:
        """Demo mode for the app: approve any loopback callback besides its allowlist."""
        with self.world.lock:
            if consumer_key not in self.world.apps:
                raise KeyError(f"unknown app {consumer_key}")
            self.loopback_callbacks.add(consumer_key)

    def _approved(self, consumer_key: str, callback: str) -> bool:
        if callback == "oob" or _without_query(callback) in self.callback_urls.get(
            consumer_key, []
        ):
            return True
        return consumer_key in self.loopback_callbacks and is_loopback_callback(callback)

    # -- POST oauth/request_token --------------------------------------------------------

    def request_token(self, call: Request) -> Answer:
        try:
            signed = oauth.verify_signed(
                self.world, call.method, call.uri, call.headers, call.body, None
            )
        except oauth.OAuthFailure:
            return _errors(401, COULD_NOT_AUTHENTICATE)
        if "oauth_token" in signed.params:
            return _errors(401, COULD_NOT_AUTHENTICATE)  # no token at this step
        callback = signed.params.get("oauth_callback", "")
        if not callback:
            # Required for OAuth 1.0a (X's docs); the answer is inferred.
            return _errors(401, COULD_NOT_AUTHENTICATE)
        if not self._approved(signed.consumer_key, callback):
            return _errors(403, CALLBACK_NOT_APPROVED)
        token = RequestToken(
            token=secrets.token_urlsafe(24),
            secret=secrets.token_urlsafe(32),
            consumer_key=signed.consumer_key,
            callback=callback,
            expires_at=self.world.clock() + self.request_token_ttl,
        )
        with self.world.lock:
            self._prune(self.world.clock())
            self.request_tokens[token.token] = token
        body = urlencode(
            {
                "oauth_token": token.token,
                "oauth_token_secret": token.secret,
                "oauth_callback_confirmed": "true",
            }
        )
        return Answer(200, body.encode(), FORM)

    def _prune(self, now: float) -> None:
        expired = [key for key, rt in self.request_tokens.items() if rt.expires_at <= now]
        for key in expired:
            del self.request_tokens[key]

    def _live(self, token: str) -> RequestToken | None:
        found = self.request_tokens.get(token)
        return found if found is not None and found.expires_at > self.world.clock() else None

    # -- GET/POST oauth/authorize: the user's consent ------------------------------------

    def authorize_page(self, call: Request) -> Answer:
        request_token = self._live(call.query.get("oauth_token", ""))
        if request_token is None or request_token.verifier is not None:
            return self._invalid_page()
        with self.world.lock:
            users = sorted(self.world.users.values(), key=lambda u: u.user_id)
        options = "".join(
            f"<option value='{html.escape(u.user_id)}'>"
            f"@{html.escape(u.screen_name or u.user_id)} ({html.escape(u.user_id)})</option>"
            for u in users
        )
        app = html.escape(request_token.consumer_key)
        body = (
            f"<p>Authorize <b>{app}</b> to access your account?</p>"
            "<form method='post' action='/oauth/authorize'>"
            f"<input type='hidden' name='oauth_token' value='{html.escape(request_token.token)}'>"
            f"<input type='hidden' name='authenticity_token' "
            f"value='{html.escape(request_token.form_nonce)}'>"
            f"<p><label>Sign in as <select name='user_id' id='user_id'>{options}</select>"
            "</label></p>"
            "<p><button type='submit' name='action' value='authorize' id='allow'>"
            "Authorize app</button> "
            "<button type='submit' name='action' value='cancel' id='cancel'>Cancel</button></p>"
            "</form>"
        )
        return _page("Authorize app", body)

    def authorize_submit(self, call: Request) -> Answer:
        form = dict(parse_qsl(call.body.decode("utf-8", "replace"), keep_blank_values=True))
        request_token = self._live(form.get("oauth_token", ""))
        if (
            request_token is None
            or request_token.verifier is not None
            or not _same(form.get("authenticity_token", ""), request_token.form_nonce)
        ):
            return self._invalid_page()
        if form.get("action") == "cancel":
            return self._denied(request_token)
        try:
            verifier = self.authorize(request_token.token, form.get("user_id", ""))
        except KeyError:
            return _page("Unknown user", "<p>No such user.</p>", 400)
        if request_token.callback == "oob":
            body = (
                "<p>Next, return to the app and enter this PIN to complete authorization:</p>"
                f"<p><code id='oauth_pin' style='font-size:2em'>{html.escape(verifier)}</code></p>"
            )
            return _page("Authorization PIN", body)
        location = _with_params(
            request_token.callback,
            {"oauth_token": request_token.token, "oauth_verifier": verifier},
        )
        return Answer(302, b"", HTML, {"Location": location})

    def _denied(self, request_token: RequestToken) -> Answer:
        with self.world.lock:
            self.request_tokens.pop(request_token.token, None)
        if request_token.callback == "oob":
            return _page("Authorization denied", "<p>You denied the app access.</p>")
        # X redirects with denied=<request token> when the user cancels.
        location = _with_params(request_token.callback, {"denied": request_token.token})
        return Answer(302, b"", HTML, {"Location": location})

    @staticmethod
    def _invalid_page() -> Answer:
        body = (
            "<p>This page is no longer valid. It looks like someone already used the token "
            "information you provided, or it expired. Please return to the site that sent "
            "you to this page and try again.</p>"
        )
        return _page("Invalid request token", body, 403)  # status inferred

    def authorize(self, token: str, user_id: str) -> str:
        """Approve ``token`` as ``user_id`` (what the authorize page does); the verifier."""
        with self.world.lock:
            request_token = self._live(token)
            if request_token is None or request_token.verifier is not None:
                raise KeyError("unknown, expired or already approved request token")
            if user_id not in self.world.users:
                raise KeyError(f"unknown user {user_id}")
            request_token.user_id = user_id
            # For oob X shows a 7-digit PIN; otherwise the verifier is a random string.
            request_token.verifier = (
                f"{secrets.randbelow(10**7):07d}"
                if request_token.callback == "oob"
                else secrets.token_urlsafe(24)
            )
            return request_token.verifier

    # -- POST oauth/access_token ---------------------------------------------------------

    def access_token(self, call: Request) -> Answer:
        token = oauth.oauth_param(call.headers, "oauth_token") or ""
        with self.world.lock:
            request_token = self._live(token)
        if request_token is None:
            return _errors(401, INVALID_TOKEN)
        try:
            signed = oauth.verify_signed(
                self.world, call.method, call.uri, call.headers, call.body, request_token.secret
            )
        except oauth.OAuthFailure:
            return _errors(401, COULD_NOT_AUTHENTICATE)
        if signed.consumer_key != request_token.consumer_key:
            return _errors(401, COULD_NOT_AUTHENTICATE)
        with self.world.lock:
            # Single use: any properly signed attempt consumes the request token, so a
            # wrong verifier (or PIN) cannot be retried (inferred: the strict reading).
            if self.request_tokens.pop(token, None) is None:
                return _errors(401, INVALID_TOKEN)
        verifier = signed.params.get("oauth_verifier", "")
        if (
            request_token.verifier is None
            or request_token.user_id is None
            or not _same(verifier, request_token.verifier)
        ):
            return Answer(401, INVALID_VERIFIER.encode(), "text/plain; charset=utf-8")
        user = self._grant(request_token.consumer_key, request_token.user_id)
        body = urlencode(
            {
                "oauth_token": user.access_token,
                "oauth_token_secret": user.access_token_secret,
                "user_id": user.user_id,
                "screen_name": user.screen_name,
            }
        )
        return Answer(200, body.encode(), FORM)

    def _grant(self, consumer_key: str, user_id: str) -> User:
        """The user's access token for this app, minted on first authorization; from then
        on it authenticates Ads API calls like any seeded token."""
        with self.world.lock:
            granted = self.granted.get((consumer_key, user_id))
            if granted is None:
                seeded = self.world.users[user_id]
                granted = User(
                    user_id,
                    f"{user_id}-{secrets.token_urlsafe(30)}",
                    secrets.token_urlsafe(33),
                    seeded.screen_name,
                )
                self.granted[(consumer_key, user_id)] = granted
                self.world.tokens[granted.access_token] = granted
            return granted
