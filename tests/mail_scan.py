"""Outgoing mail must never carry a raw identifier: conftest runs this after every test.

Any email address in a message (subject, body, HTML alternatives) other than the message's
own sender and recipients, and anything shaped like a phone number in international form,
fails the test. Error reports to ADMINS are the mail this suite sends.
"""

from __future__ import annotations

import html
import re
from email.utils import getaddresses
from typing import Any

import pytest

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# +country then at least seven more digits, with the usual separators.
PHONE = re.compile(r"\+\d[\d ().-]{6,}\d")


def _own_addresses(message: Any) -> set[str]:
    listed = [message.from_email, *message.recipients(), *getattr(message, "reply_to", [])]
    return {address.lower() for _, address in getaddresses([str(a) for a in listed if a])}


def _texts(message: Any) -> list[str]:
    alternatives = [content for content, _ in getattr(message, "alternatives", [])]
    return [html.unescape(str(text)) for text in (message.subject, message.body, *alternatives)]


def identifiers_in(message: Any) -> list[str]:
    own = _own_addresses(message)
    found: list[str] = []
    for text in _texts(message):
        found += [match for match in EMAIL.findall(text) if match.lower() not in own]
        found += PHONE.findall(text)
    return found


def fail_on_identifiers(outbox: list[Any]) -> None:
    """``pytest.fail`` naming the subject and matches of every message that leaks."""
    leaks = {message.subject: identifiers_in(message) for message in outbox}
    leaks = {subject: found for subject, found in leaks.items() if found}
    if leaks:
        pytest.fail(f"raw emails or phone numbers in outgoing mail: {leaks}", pytrace=False)
