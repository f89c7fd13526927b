"""OAuth 1.0a HMAC-SHA1 signature verification, as X's API does it, with oauthlib."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from oauthlib.common import safe_string_equals
from oauthlib.oauth1.rfc5849 import signature, utils

from django_xconversions.emulator.world import User, World

# How far a request's oauth_timestamp may be from the server's clock.
TIMESTAMP_TOLERANCE = 300
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class OAuthFailure(Exception):
    """The request is not properly authenticated (X answers 401 UNAUTHORIZED_ACCESS)."""


@dataclass(frozen=True)
class _Secrets:
    """What oauthlib's signing function reads off a client."""

    client_secret: str
    resource_owner_secret: str | None


@dataclass(frozen=True)
class Signed:
    consumer_key: str
    user: User | None


def _oauth_params(headers: Mapping[str, str]) -> dict[str, str]:
    header = headers.get("Authorization", "")
    if not header.startswith("OAuth "):
        raise OAuthFailure("no OAuth Authorization header")
    try:
        pairs = utils.parse_authorization_header(header)
    except ValueError as exc:
        raise OAuthFailure("malformed OAuth header") from exc
    # Header values are percent-encoded (RFC 5849 3.5.1).
    return {key: utils.unescape(value) for key, value in pairs}


def verify(
    world: World,
    method: str,
    uri: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    token_required: bool = True,
) -> Signed:
    """Check the signature of a request whose absolute URI is ``uri``, signed with an
    access token (or, with ``token_required=False``, possibly with none).

    A JSON body is not part of the signature; a form-encoded body is (RFC 5849 3.4.1.3).
    """
    token = _oauth_params(headers).get("oauth_token", "")
    user = world.tokens.get(token) if token else None
    if token_required and user is None:
        raise OAuthFailure("unknown or missing access token")
    signed = verify_signed(
        world, method, uri, headers, body, user.access_token_secret if user else None
    )
    return Signed(signed.consumer_key, user)


@dataclass(frozen=True)
class SignedParams:
    consumer_key: str
    params: dict[str, str]  # every signed parameter: oauth_* (header), query and form body


def verify_signed(
    world: World,
    method: str,
    uri: str,
    headers: Mapping[str, str],
    body: bytes,
    token_secret: str | None,
) -> SignedParams:
    """Check a request signed with the consumer secret and ``token_secret`` (an access
    token's, a request token's during the 3-legged flow, or None when no token is sent)."""
    params = _oauth_params(headers)
    consumer_key = params.get("oauth_consumer_key", "")
    token = params.get("oauth_token", "")
    if params.get("oauth_signature_method") != "HMAC-SHA1":
        raise OAuthFailure("signature method must be HMAC-SHA1")
    if params.get("oauth_version", "1.0") != "1.0":
        raise OAuthFailure("oauth_version must be 1.0")
    consumer_secret = world.apps.get(consumer_key)
    if consumer_secret is None:
        raise OAuthFailure("unknown consumer key")
    if not params.get("oauth_nonce"):
        raise OAuthFailure("missing nonce")
    try:
        timestamp = int(params.get("oauth_timestamp", ""))
    except ValueError as exc:
        raise OAuthFailure("bad timestamp") from exc
    if abs(world.clock() - timestamp) > TIMESTAMP_TOLERANCE:
        raise OAuthFailure("timestamp out of range")

    form_body = None
    if headers.get("Content-Type", "").split(";")[0].strip() == FORM_CONTENT_TYPE:
        form_body = body.decode("utf-8", "replace")
    signed_params = signature.collect_parameters(
        uri_query=urlsplit(uri).query,
        body=form_body,
        headers=dict(headers),
        exclude_oauth_signature=True,
    )
    base_string = signature.signature_base_string(
        method,  # type: ignore[arg-type]  # the stubs want a Literal; any verb is signed alike
        signature.base_string_uri(uri),
        signature.normalize_parameters(signed_params),  # type: ignore[arg-type]
    )
    expected = signature.sign_hmac_sha1_with_client(
        base_string, _Secrets(consumer_secret, token_secret)
    )
    if not safe_string_equals(expected, params.get("oauth_signature", "")):
        raise OAuthFailure("bad signature")

    # A nonce may be used once per consumer, token and timestamp (RFC 5849 3.3).
    nonce_key = (consumer_key, token, str(timestamp), params.get("oauth_nonce", ""))
    if not world.remember_nonce(nonce_key, timestamp, world.clock()):
        raise OAuthFailure("nonce already used")
    return SignedParams(consumer_key, {str(k): str(v) for k, v in signed_params})


def oauth_param(headers: Mapping[str, str], name: str) -> str | None:
    """One oauth_* parameter of the Authorization header, unverified (to find a secret)."""
    try:
        return _oauth_params(headers).get(name)
    except OAuthFailure:
        return None
