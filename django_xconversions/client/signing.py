"""OAuth 1.0a request signing (HMAC-SHA1, requests-oauthlib) that never logs a token.

requests-oauthlib logs the signed headers (with oauth_token) and the body (hashed PII) at
DEBUG, and oauthlib the signature base string. Their records are dropped while we sign;
records of anyone else's OAuth code in the process are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.auth import AuthBase
from requests_oauthlib import OAuth1

__all__ = ["OAuth1Signer", "hmac_sha1_signer"]

_SIGNING_LOGGERS = ("requests_oauthlib.oauth1_auth", "oauthlib.oauth1.rfc5849")


class _WhileSigning(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._local.active = True
        try:
            yield
        finally:
            self._local.active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self._local, "active", False)


_quiet_signing = _WhileSigning()
for _name in _SIGNING_LOGGERS:
    logging.getLogger(_name).addFilter(_quiet_signing)


class OAuth1Signer(AuthBase):
    """Signs a request with a requests-oauthlib ``OAuth1``, the signing libraries' debug
    logs (which print tokens) muted; the client and the Connect with X flow both use it."""

    def __init__(self, oauth: Any) -> None:
        self._oauth = oauth

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        with _quiet_signing.active():
            signed: requests.PreparedRequest = self._oauth(r)
        return signed


def hmac_sha1_signer(
    consumer_key: str, consumer_secret: str, access_token: str, access_token_secret: str
) -> OAuth1Signer:
    """User-context signing as X's Ads API wants it: HMAC-SHA1 in the Authorization header
    (a JSON body is then not part of the signature)."""
    return OAuth1Signer(
        OAuth1(
            consumer_key,
            client_secret=consumer_secret,
            resource_owner_key=access_token,
            resource_owner_secret=access_token_secret,
            signature_method="HMAC-SHA1",
            signature_type="AUTH_HEADER",
        )
    )
