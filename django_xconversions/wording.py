"""Counts with their noun in the right number, written the same way by commands, health
problems and log lines."""

from __future__ import annotations

from django.utils.translation import ngettext


def plural(
    count: int, singular: str, plural_form: str | None = None, *, shown: str | None = None
) -> str:
    """``1 request``, ``2 requests``; ``shown`` replaces the number as written (a bounded
    count's "10000 or more") while ``count`` still picks the noun's number."""
    noun = ngettext(singular, plural_form or singular + "s", count)
    return f"{count if shown is None else shown} {noun}"
