"""Building an API client for an account (and pixel) from its stored, encrypted tokens."""

from __future__ import annotations

from django_xconversions.client import XAdsClient
from django_xconversions.models import AdAccount, Credentials, Pixel


def client_for(account: AdAccount, pixel: Pixel | None = None) -> XAdsClient:
    """A client with the account's OAuth tokens, plus the pixel's token when it has one.

    The pixel token (X-Pixel-Token) is used for the conversions endpoint; everything else
    (tags, access checks) needs the account's OAuth tokens. Raises
    ``errors.UnreadableSecret`` when no configured key opens a stored secret.
    """
    return client_with(account.credentials(pixel))


def client_with(credentials: Credentials) -> XAdsClient:
    """A client with already decrypted tokens."""
    return XAdsClient(
        access_token=credentials.access_token or None,
        access_token_secret=credentials.access_token_secret or None,
        pixel_token=credentials.pixel_token or None,
    )
