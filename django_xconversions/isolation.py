"""Finding the events X rejects in a batch it refused as a whole.

X answers 400 for the whole batch and never says which event. Its messages often name
the offending value and field, though: ``hashed_email (abc) is not a valid SHA-256
hash``, ``Expected Time in ..., got "2022-06-16T01:14:00.603" for conversion_time``,
``event_id (o6dkt) is not a single event tag (SET)``. When a message's value (or, failing
that, its field) is carried by some events of the refused group only, those are the
suspects: the rest is sent. If X takes the rest, the refusal came from the suspects: a
lone suspect is failed with X's message (two requests in all), several are sent one by
one (most are bad: X named them) until X accepts two of them, then searched. A message is a hint,
never proof: if X refuses the rest too, the rest is searched in turn and the suspects
are sent on their own, and whatever X accepts of them is sent. Messages that name nothing
of the group (X's table writes "Hashed_email is not a valid SHA-256 hash", with no value)
leave the search below.

Without a usable message, X says nothing of how many events are bad. Every
request that X accepts delivers its events, so the search is group testing where a
passing group is also a sent one. We use Hwang's generalised binary splitting: with d bad
events expected among the n unresolved ones, send a group of 2**floor(log2((n-d+1)/d));
if X takes it, those events are sent; if not, halve the group (sending only the left
half, since a refused parent whose left half passes must hold the bad event on the
right) until one event stands alone, and put the halves never tried back into the pool.

The count d is not known, so it is estimated: a prior of PRIOR_BAD bad events in
PRIOR_EVENTS, updated with what the search has found and resolved so far. Against plain
halving with one merged request for the untried halves, on the same 50 random placements
in a batch of 500 (``bench/isolation.py``): one bad event costs 12 requests at the median
instead of 11, three cost 28 instead of 29.5, ten 77 instead of 92, and the events re-sent
(X's event budget) fall from 2,440 to 1,585 for three and from 5,958 to 2,230 for ten.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from django_xconversions.errors import APIErrorDetail, BadRequest

PRIOR_BAD = 3
PRIOR_EVENTS = 500
# Suspects (events carrying what X named) are sent one by one, X naming bad values, until
# X accepts this many of them: the rest is then searched.
TRUSTED_UNTIL = 2

T = TypeVar("T")

# What one request did: True, X took the events; BadRequest, X refused them all; False,
# they were dealt with otherwise (retry scheduled, budget spent) and leave the search.
Verdict = bool | BadRequest
Send = Callable[[list[T]], Verdict]
Fail = Callable[[T, BadRequest], None]
# The event (X's API dict) an item stands for, to match X's messages against.
EventOf = Callable[[T], Mapping[str, Any]]

# A value X's message quotes: in parentheses, hashed_email (abc), or in double quotes,
# got "2022-06-16T01:14:00.603"; shortest and longest readings (a value may hold either).
_QUOTED = (
    re.compile(r"\((.+?)\)"),
    re.compile(r"\((.+)\)"),
    re.compile(r'"(.+?)"'),
    re.compile(r'"(.+)"'),
)
# A field a message names: its first word (hashed_email (abc) ..., Hashed_email is ...,
# event_id abc ...) or the one after "for" (... for conversion_time).
_FIELD = re.compile(r"^\s*([A-Za-z_]+)|\bfor\s+([A-Za-z_]+)\s*$")


def group_size(unresolved: int, found: int, resolved: int) -> int:
    """How many unresolved events the next request should carry."""
    expected_bad = (found + PRIOR_BAD) / (resolved + PRIOR_EVENTS) * unresolved
    if expected_bad <= 1:
        return unresolved  # one expected: a single request confirms the rest are clean
    ratio = max(1.0, (unresolved - expected_bad + 1) / expected_bad)
    return min(unresolved, 1 << math.floor(math.log2(ratio)))


def isolate(
    items: Sequence[T],
    rejection: BadRequest,
    send: Send[T],
    fail: Fail[T],
    event_of: EventOf[T] | None = None,
) -> None:
    """Send every event of ``items`` that X accepts and ``fail`` each one it rejects.

    ``items`` were just refused together with ``rejection``, so at least one is bad.
    With ``event_of``, X's messages are matched to the events first (see above).
    """
    _resolve(list(items), rejection, send, fail, event_of)


def _resolve(
    group: list[T],
    rejection: BadRequest,
    send: Send[T],
    fail: Fail[T],
    event_of: EventOf[T] | None,
) -> None:
    """``group`` was just refused as a whole with ``rejection``: resolve every event."""
    suspects = suspected(rejection, group, event_of) if event_of is not None else []
    if not suspects or len(suspects) == len(group):
        _search(group, rejection, send, fail)
        return
    chosen = {id(item) for item in suspects}
    rest = [item for item in group if id(item) not in chosen]
    verdict = send(rest)
    if verdict is True:
        # The rest is clean, so the refusal came from the suspects.
        _named(suspects, rejection, send, fail, event_of)
        return
    if isinstance(verdict, BadRequest):
        _resolve(rest, verdict, send, fail, event_of)
    # Whatever the rest held, the suspects are unknown: X's message was only a hint.
    verdict = send(suspects)
    if isinstance(verdict, BadRequest):
        _resolve(suspects, verdict, send, fail, event_of)


def _named(
    suspects: list[T],
    rejection: BadRequest,
    send: Send[T],
    fail: Fail[T],
    event_of: EventOf[T] | None,
) -> None:
    """Suspects known to hold a bad event, each carrying what X named: most likely all
    bad, so each is sent alone (the last one is failed without a request when every
    other one was accepted). Once X accepts more than one, the name proves a weak guide
    (a value many events carry, bad in few) and the rest is searched."""
    accepted = 0
    found_or_unknown = False
    for n, item in enumerate(suspects):
        left = suspects[n:]
        if accepted >= TRUSTED_UNTIL and len(left) > 1:
            _search(left, rejection, send, fail, known_bad=not found_or_unknown)
            return
        if len(left) == 1 and not found_or_unknown:
            fail(item, about(rejection, item, event_of))
            return
        verdict = send([item])
        if verdict is True:
            accepted += 1
            continue
        found_or_unknown = True
        if isinstance(verdict, BadRequest):
            fail(item, verdict)


def suspected(rejection: BadRequest, group: Sequence[T], event_of: EventOf[T]) -> list[T]:
    """The events of ``group`` carrying what X's messages name: a value quoted in a
    message (in the field it names, if any event has it there), else, for a message
    naming only a field, the events that have that field when they are at most half."""
    events = [event_of(item) for item in group]
    found: set[int] = set()
    for detail in _details(rejection):
        values = _quoted(detail.message)
        fields = _fields(detail)
        in_field = {
            n
            for n, event in enumerate(events)
            if any(key in fields and text in values for key, text in _leaves(event))
        }
        anywhere = in_field or {
            n for n, event in enumerate(events) if any(t in values for _, t in _leaves(event))
        }
        if anywhere or values:
            found |= anywhere
            continue
        having = {
            n for n, event in enumerate(events) if any(k in fields for k, _ in _leaves(event))
        }
        if len(having) * 2 <= len(events):
            found |= having
    return [group[n] for n in sorted(found)]


def about(rejection: BadRequest, item: T, event_of: EventOf[T] | None) -> BadRequest:
    """``rejection`` with only the messages that name ``item``'s values (all of them if
    none does), for the failed event's record."""
    if event_of is None or not rejection.errors:
        return rejection
    mine = [d for d in rejection.errors if suspected(_only(rejection, d), [item], event_of)]
    if not mine or len(mine) == len(rejection.errors):
        return rejection
    return BadRequest(
        mine[0].message,
        status=rejection.status,
        code=mine[0].code,
        parameter=mine[0].parameter,
        errors=tuple(mine),
        response=rejection.response,
    )


def _only(rejection: BadRequest, detail: APIErrorDetail) -> BadRequest:
    return BadRequest(detail.message, errors=(detail,), status=rejection.status)


def _details(rejection: BadRequest) -> list[APIErrorDetail]:
    if rejection.errors:
        return list(rejection.errors)
    return [
        APIErrorDetail(rejection.code or "", m, rejection.parameter) for m in rejection.messages
    ]


def _quoted(message: str) -> set[str]:
    values = {found for pattern in _QUOTED for found in pattern.findall(message)}
    return {value for value in values if value.strip()}


def _fields(detail: APIErrorDetail) -> set[str]:
    fields = {detail.parameter.lower()} if detail.parameter else set()
    for match in _FIELD.finditer(detail.message):
        fields.update(word.lower() for word in match.groups() if word)
    return fields


def _leaves(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every (field, value as text) of an event, nested lists and objects included."""
    if isinstance(value, Mapping):
        for name, inner in value.items():
            yield from _leaves(inner, str(name).lower())
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _leaves(inner, key)
    elif value is not None and value != "":
        yield key, str(value)
        if not isinstance(value, str):
            yield key, json.dumps(value)


def _search(
    items: Sequence[T],
    rejection: BadRequest,
    send: Send[T],
    fail: Fail[T],
    *,
    known_bad: bool = True,
) -> None:
    """Group testing over ``items``, refused together with ``rejection`` (or, if not
    ``known_bad``, not known to hold a bad event at all)."""
    pool = list(items)
    pool_known_bad = known_bad  # until a bad event is found, the refusal covers the pool
    found = resolved = 0
    while pool:
        size = group_size(len(pool), found, resolved)
        group, rest = pool[:size], pool[size:]
        if pool_known_bad and not rest:
            verdict: Verdict = rejection  # refused already: no request teaches anything
        else:
            verdict = send(group)
        if verdict is True:
            resolved += len(group)
            pool = rest
            continue
        pool_known_bad = False
        if verdict is False:
            pool = rest
            continue
        assert isinstance(verdict, BadRequest)  # noqa: S101 (the Verdict union)
        untried, sent, isolated = _halve(group, verdict, send, fail)
        resolved += sent + isolated
        found += isolated
        pool = untried + rest


def _halve(
    group: list[T], rejection: BadRequest, send: Send[T], fail: Fail[T]
) -> tuple[list[T], int, int]:
    """Narrow a refused group down to one bad event by sending left halves.

    Returns the right halves never tried, how many events were sent, and whether a bad
    event was isolated (0 or 1).
    """
    untried: list[T] = []
    sent = 0
    segment = group
    while len(segment) > 1:
        middle = len(segment) // 2
        left, right = segment[:middle], segment[middle:]
        verdict = send(left)
        if verdict is True:
            sent += len(left)
            segment = right  # the refusal came from the right half
        elif isinstance(verdict, BadRequest):
            untried.extend(right)
            segment, rejection = left, verdict
        else:
            untried.extend(right)
            segment = []
    if not segment:
        return untried, sent, 0
    # Every other event of the last refused request was accepted, so X's messages in
    # that refusal are about this event.
    fail(segment[0], rejection)
    return untried, sent, 1
