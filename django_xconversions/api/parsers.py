"""The API's JSON parser: any body is data or a 400, never a crash.

Python's JSON decoder recurses once per nesting level: a 2 KB body of brackets exhausts
the stack (RecursionError, a 500) and anything deep but parsable would do the same later in
validation or rendering. No conversion comes near the limit (a list of items holding
``contents`` is four levels deep).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32
TOO_DEEP = f"The body must not be nested more than {MAX_DEPTH} levels deep."


def deeper_than(data: Any, limit: int) -> bool:
    """Whether lists and objects in ``data`` nest more than ``limit`` levels (no recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser (strict: no NaN or Infinity) with a nesting limit and messages
    that say what the body must be."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read()
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        except ParseError as exc:
            # DRF's text is "JSON parse error - <the decoder's reason>".
            reason = str(exc.detail).removeprefix("JSON parse error - ")
            raise ParseError(f"The body must be JSON: {reason}") from None
        # Each level needs a bracket: most bodies are cleared without walking them.
        if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and deeper_than(data, MAX_DEPTH):
            raise ParseError(TOO_DEEP)
        return data
