"""Encryption of secrets at rest (access tokens, pixel tokens) with Fernet.

The key comes from XCONVERSIONS["ENCRYPTION_KEY"]: one key, or a list whose first key
encrypts and every key decrypts, so keys can be rotated without losing stored tokens.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_xconversions.conf import setting_path, xsettings

# Marks a value this module wrote, so plain text is never mistaken for a token.
PREFIX = "fernet:"


def configured_keys() -> tuple[str, ...]:
    value = xsettings.ENCRYPTION_KEY
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(k for k in value if k)


def _derived_debug_key() -> str:
    # Only used with DEBUG on and no key configured (a checks.py warning says so): derived
    # from SECRET_KEY so a development database stays readable across restarts.
    digest = hashlib.sha256(("django-xconversions:" + settings.SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def active_keys() -> tuple[str, ...]:
    keys = configured_keys()
    if keys:
        return keys
    if settings.DEBUG:
        return (_derived_debug_key(),)
    raise ImproperlyConfigured(
        f"{setting_path('ENCRYPTION_KEY')} is required to store tokens "
        "(generate one with: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())')."
    )


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def fernet() -> MultiFernet:
    return _fernet_for(active_keys())


def encrypt(plaintext: str) -> str:
    return PREFIX + fernet().encrypt(plaintext.encode()).decode()


def _no_key_opens() -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"A stored secret cannot be decrypted with {setting_path('ENCRYPTION_KEY')}: "
        "add the key it was written with to the list (key rotation)."
    )


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ImproperlyConfigured("A stored secret is not encrypted by django-xconversions.")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise _no_key_opens() from exc


def rotate(stored: str) -> str:
    """Re-encrypt with the first (current) key."""
    try:
        return PREFIX + fernet().rotate(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise _no_key_opens() from exc


def is_current(stored: str) -> bool:
    """Whether ``stored`` is encrypted with the first (current) key."""
    key = active_keys()[0]
    try:
        Fernet(key.encode()).decrypt(stored[len(PREFIX) :].encode())
    except InvalidToken:
        return False
    return True


def reencrypted(stored: str) -> str:
    """``stored`` under the current key: unchanged when blank or already current."""
    if not stored.startswith(PREFIX) or is_current(stored):
        return stored
    return rotate(stored)


def is_valid_key(key: str) -> bool:
    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        return False
    return True
