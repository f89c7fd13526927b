"""Encryption of secrets at rest (access tokens, pixel tokens) with Fernet.

The key comes from XCONVERSIONS["ENCRYPTION_KEY"]: one key, or a list whose first key
encrypts and every key decrypts, so keys can be rotated without losing stored tokens.

Keys are never printed: messages name a key by its position in the list (#1 is the first)
and its fingerprint, the first 8 hex digits of the SHA-256 of the key.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_xconversions.conf import encryption_keys, setting_path
from django_xconversions.errors import EncryptionKeyInvalid, EncryptionKeyMissing, UnreadableSecret

# Marks a value this module wrote, so plain text is never mistaken for a token.
PREFIX = "fernet:"

GENERATE_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


def fingerprint(key: str | bytes) -> str:
    """A short, stable name for a key that reveals nothing usable about it."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()[:8]


def _setting_entries() -> tuple[list[str], str | None]:
    """The configured keys (blank entries left out), and why the setting is malformed
    (None when it is not). Keys that are strings but not Fernet keys are listed too. None
    (an unset environment variable) is no key here; the system check reports it."""
    try:
        keys = list(encryption_keys())
    except ImproperlyConfigured as exc:
        return [], str(exc)
    for position, key in enumerate(keys, start=1):
        if not is_valid_key(key):
            return keys, (
                f"{setting_path('ENCRYPTION_KEY')} entry #{position} (fingerprint "
                f"{fingerprint(key)}) is not a valid Fernet key (32 url-safe base64-encoded "
                f"bytes); {GENERATE_HINT}."
            )
    return keys, None


def key_setting_error() -> str | None:
    """Why XCONVERSIONS["ENCRYPTION_KEY"] is malformed (wrong type, an entry that is not a
    Fernet key), or None. A setting that is merely empty is not malformed."""
    return _setting_entries()[1]


def configured_keys() -> tuple[str, ...]:
    """The configured keys, first (encrypting) key first; () when none is configured.
    Raises EncryptionKeyInvalid when the setting is not a string or a list of strings
    (a string that is not a Fernet key is returned; using it raises)."""
    keys, problem = _setting_entries()
    if problem and not keys:
        raise EncryptionKeyInvalid(problem)
    return tuple(keys)


def _derived_debug_key() -> str:
    # Only used with DEBUG on and no key configured (a checks.py warning says so): derived
    # from SECRET_KEY so a development database stays readable across restarts.
    digest = hashlib.sha256(("django-xconversions:" + settings.SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def uses_derived_key() -> bool:
    """Whether secrets are encrypted with the DEBUG-only key derived from SECRET_KEY."""
    return not configured_keys() and bool(settings.DEBUG)


def active_keys() -> tuple[str, ...]:
    """The keys secrets are encrypted and decrypted with, all valid Fernet keys."""
    keys, problem = _setting_entries()
    if problem:
        raise EncryptionKeyInvalid(problem)
    if keys:
        return tuple(keys)
    if settings.DEBUG:
        return (_derived_debug_key(),)
    raise EncryptionKeyMissing(
        f"{setting_path('ENCRYPTION_KEY')} is required to store and read tokens ({GENERATE_HINT})."
    )


def describe_keys() -> str:
    """The keys tried, by position and fingerprint: ``#1 3fa2b1c0, #2 9bd01e44``."""
    if uses_derived_key():
        return "#1 derived from SECRET_KEY (DEBUG only, no key configured)"
    return ", ".join(f"#{n} {fingerprint(k)}" for n, k in enumerate(active_keys(), start=1))


@lru_cache(maxsize=8)
def _fernets_for(keys: tuple[str, ...]) -> tuple[Fernet, ...]:
    return tuple(Fernet(k.encode()) for k in keys)


def _fernets() -> tuple[Fernet, ...]:
    return _fernets_for(active_keys())


def fernet() -> MultiFernet:
    return MultiFernet(list(_fernets()))


def encrypt(plaintext: str) -> str:
    return PREFIX + _fernets()[0].encrypt(plaintext.encode()).decode()


FIX_UNREADABLE = "reconnect the account with X (access tokens) or re-enter the pixel token"


def unreadable_message(
    subject: str = "A stored secret", *, plural: bool = False, fix: str = FIX_UNREADABLE
) -> str:
    """What to say of secrets no configured key opens, and how to fix it."""
    written = "they were" if plural else "it was"
    return (
        f"{subject} cannot be decrypted with any key in {setting_path('ENCRYPTION_KEY')} "
        f"(keys tried: {describe_keys()}). Either add the key {written} written with to the "
        f"list (the first key encrypts, the others only decrypt), or {fix}."
    )


@dataclass(frozen=True)
class Opened:
    """Which configured key opens a stored secret, and when it was encrypted."""

    key: int  # position in active_keys(): 0 is the first (encrypting) key
    written_at: int  # epoch seconds, from the Fernet token


def identify(stored: str) -> Opened | None:
    """The configured key that opens ``stored``; None when no key opens it or it is not a
    value this module wrote."""
    if not stored.startswith(PREFIX):
        return None
    token = stored[len(PREFIX) :].encode()
    for position, candidate in enumerate(_fernets()):
        try:
            return Opened(position, candidate.extract_timestamp(token))
        except InvalidToken:
            continue
    return None


def opening_key(stored: str) -> int | None:
    """The position (0 = first) of the configured key that opens ``stored``, or None."""
    opened = identify(stored)
    return None if opened is None else opened.key


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise UnreadableSecret(
            "A stored secret is not encrypted by django-xconversions: "
            "reconnect the account with X or re-enter the pixel token."
        )
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise UnreadableSecret(unreadable_message()) from exc


def rotate(stored: str) -> str:
    """Re-encrypt with the first (current) key."""
    return encrypt(decrypt(stored))


def is_current(stored: str) -> bool:
    """Whether ``stored`` is encrypted with the first (current) key."""
    return opening_key(stored) == 0


def reencrypted(stored: str) -> str:
    """``stored`` under the current key: unchanged when blank or already current, and
    unchanged when no key opens it or the key setting is unusable (saving the row's other
    fields must still work; the admin and the system checks say what is wrong)."""
    if not stored:
        return stored
    try:
        position = opening_key(stored)
    except (EncryptionKeyMissing, EncryptionKeyInvalid):
        return stored
    if position is None or position == 0:
        return stored
    return rotate(stored)


def is_valid_key(key: str | bytes) -> bool:
    try:
        Fernet(key.encode() if isinstance(key, str) else key)
    except (ValueError, TypeError):
        return False
    return True
