"""The X Ads API client: ``XAdsClient`` over one pooled requests Session.

Authentication is OAuth 1.0a user context (HMAC-SHA1, requests-oauthlib) or, for the
conversions endpoint, a pixel's ``X-Pixel-Token``. JSON bodies go with ``json=`` so only
the method, URL, query and oauth_* parameters are signed, as X requires. Non-2xx answers
raise the typed errors of errors.py carrying X's message.

One job per module, top to bottom:

- ``endpoints``: ``XAdsClient``, the calls (conversions, web event tags, accounts) and
  which credentials each needs;
- ``transport``: the Session, URLs, timeouts, logging and rate-limit headers;
- ``error_mapping``: X's error answers and failed connections as ``errors.*``;
- ``signing``: ``OAuth1Signer``, OAuth 1.0a signing that never logs a token.

Request bodies hold hashed identifiers and are never logged; neither are tokens, secrets
or the Authorization header. Only method, path, status and duration are logged (logger
``django_xconversions.client``).
"""

from __future__ import annotations

from django_xconversions.client.endpoints import (
    PAGE_SIZE_MAX,
    TAG_IDS_MAX,
    ConversionsResult,
    XAdsClient,
)
from django_xconversions.client.signing import OAuth1Signer
from django_xconversions.client.transport import APIResponse, EventJSON
from django_xconversions.ratelimit import RateLimit

__all__ = [
    "PAGE_SIZE_MAX",
    "TAG_IDS_MAX",
    "APIResponse",
    "ConversionsResult",
    "EventJSON",
    "OAuth1Signer",
    "RateLimit",
    "XAdsClient",
]
