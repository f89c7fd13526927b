"""Sending one claimed batch and classifying X's answers into outcomes.

- 200: sent, with X's debug_id.
- 400 on n > 1 events: X rejects the whole batch without saying which event, so smaller
  groups are sent until each bad event stands alone (see ``isolation``); each is failed
  with X's message.
- 404 naming event ids (in either of X's wordings, see ``event_ids_not_found``): those
  events are failed with the message, the rest resent; a 404 naming no event of the batch
  (pixel or account not reachable) pauses the account.
- 401/403: the account is paused with X's message; its events go back to pending.
- 429: the account waits until X's reset; events go back to pending, no attempt counted.
- 5xx, timeouts, connection errors: retried with exponential backoff and jitter, up to
  MAX_ATTEMPTS, then failed (visible, and retryable from the admin).
Outcomes are collected in memory and written in a few bulk updates at the end, each
guarded by the claim token: rows another worker has taken over meanwhile are not
overwritten, and are counted as lost claims.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from django.db import connection, transaction
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from django_xconversions import budget, clock, errors, isolation, observe
from django_xconversions.claimed import Claimed, StoredRow, build_event, stored_event, wire_event
from django_xconversions.claiming import qualified_column
from django_xconversions.conf import xsettings
from django_xconversions.engine_types import Claim, SendSummary
from django_xconversions.models import AdAccount, Conversion, DeliveryAttempt, Pixel
from django_xconversions.payload import validate

if TYPE_CHECKING:
    from django_xconversions.client import ConversionsResult, EventJSON, XAdsClient

# X names the events its account does not hold in two wordings: the reference's JSON
# example "event_id (abc) does not belong to provided account" and its error table's
# "event_id abc does not belong to provided account"; one id or a comma-separated list.
NOT_IN_ACCOUNT = re.compile(
    r"event_ids?\s+\(?(?P<ids>[\w-]+(?:\s*,\s*[\w-]+)*)\)?\s+"
    r"(?:does|do)\s+not\s+belong\s+to\s+(?:the\s+)?provided\s+account"
)
ERROR_BODY_LIMIT = 4000

Outcome = DeliveryAttempt.Outcome
Reason = Conversion.ErrorReason

# Most specific first: RequestTimeout is a TransportError.
_OUTCOMES: tuple[tuple[type[Exception], DeliveryAttempt.Outcome], ...] = (
    (errors.BadRequest, Outcome.BAD_REQUEST),
    (errors.Unauthorized, Outcome.UNAUTHORIZED),
    (errors.Forbidden, Outcome.FORBIDDEN),
    (errors.NotFound, Outcome.NOT_FOUND),
    (errors.RateLimited, Outcome.RATE_LIMITED),
    (errors.ServerError, Outcome.SERVER_ERROR),
    (errors.RequestTimeout, Outcome.TIMEOUT),
    (errors.TransportError, Outcome.TRANSPORT_ERROR),
    (errors.ImproperlyConfiguredAccount, Outcome.NOT_CONFIGURED),
)


def outcome_of(exc: Exception | None) -> DeliveryAttempt.Outcome:
    """The delivery log's outcome for a request that ended with ``exc`` (None: sent)."""
    if exc is None:
        return Outcome.SENT
    for kind, outcome in _OUTCOMES:
        if isinstance(exc, kind):
            return outcome
    return Outcome.CLIENT_ERROR


def event_ids_not_found(messages: Iterable[str]) -> set[str]:
    """The event ids X's 404 messages say do not belong to the account."""
    named: set[str] = set()
    for message in messages:
        for match in NOT_IN_ACCOUNT.finditer(message):
            named.update(re.split(r"\s*,\s*", match["ids"]))
    return named


class AccountStopped(Exception):
    """The account cannot send now (paused or rate limited): stop this batch."""


def pause_account(account: AdAccount, reason: str, summary: SendSummary) -> None:
    """Stop sending for ``account`` until an admin resumes it; its rows stay pending."""
    AdAccount.objects.filter(pk=account.pk).update(
        status=AdAccount.Status.PAUSED, paused_reason=reason, paused_at=clock.now()
    )
    summary.paused[account.account_id] = reason
    observe.paused(account, reason)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: between half and all of BASE * 2**(attempt-1)."""
    base = xsettings.RETRY_BACKOFF_BASE
    ceiling = min(xsettings.RETRY_BACKOFF_MAX, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not crypto)


class _Item:
    """A claimed row on its way: its event as sent (the JSON text stored or written from
    the row, or the dict that passed validate), and the dict read from that text when X's
    answer must be read against it (a refused batch, a 404)."""

    __slots__ = ("_event", "row", "sent")

    def __init__(self, row: Claimed, sent: EventJSON | dict[str, Any]) -> None:
        self.row = row
        self.sent = sent
        self._event = sent if isinstance(sent, dict) else None

    @property
    def event(self) -> dict[str, Any]:
        if self._event is None:
            self._event = _read_event(str(self.sent))
        return self._event


def _read_event(text: str) -> dict[str, Any]:
    """The event a text sent to X holds; empty if it holds none (a wire_text written by
    other means than the capture's): X's messages are then matched to nothing of it."""
    try:
        event = json.loads(text)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


@dataclass(frozen=True)
class Transmission:
    """One request's answer: the result, or the error X (or the network) gave."""

    result: ConversionsResult | None
    error: errors.XAdsError | errors.ImproperlyConfiguredAccount | None
    seconds: float

    @property
    def accepted(self) -> bool:
        return self.error is None


def pk_in(ids: list[int]) -> Q | RawSQL:
    """``pk IN ids`` for conversions, the ids passed as one parameter where the database
    takes a list as one: Django's 500 placeholders cost more than the rest of an outcome
    UPDATE on the sending thread. (The SQL names come from the model, the ids are a
    parameter.)"""
    pk = qualified_column("id")
    if connection.vendor == "postgresql":
        return RawSQL(f"{pk} = ANY(%s)", [ids], output_field=BooleanField())  # noqa: S611
    if connection.vendor == "sqlite":  # JSONField needs JSON1, so json_each is there
        sql = f"{pk} IN (SELECT value FROM json_each(%s))"  # noqa: S608
        return RawSQL(sql, [json.dumps(ids)], output_field=BooleanField())  # noqa: S611
    return Q(pk__in=ids)


def _transmit(client: XAdsClient, pixel_id: str, items: list[_Item]) -> Transmission:
    started = time.monotonic()
    try:
        result = client.send_conversions(pixel_id, [item.sent for item in items])
    except (errors.XAdsError, errors.ImproperlyConfiguredAccount) as exc:
        return Transmission(None, exc, time.monotonic() - started)
    return Transmission(result, None, time.monotonic() - started)


class BatchSender:
    def __init__(
        self, client: XAdsClient, pixel: Pixel, claim: Claim, summary: SendSummary
    ) -> None:
        self.client = client
        self.pixel = pixel
        self.account: AdAccount = pixel.account
        self.rows = claim.rows
        self.token = claim.token
        self.summary = summary
        self.account_stopped = False
        self.now = clock.now()
        self._sent: dict[str, list[int]] = defaultdict(list)
        self._failed: dict[tuple[Conversion.ErrorReason, str], list[int]] = defaultdict(list)
        self._retry: dict[tuple[int, float, str], list[int]] = defaultdict(list)
        self._attempt_log: list[DeliveryAttempt] = []
        self._decided: set[int] = set()
        self._items: list[_Item] = []
        self._prepared = False
        self._rate_limit: Any = None

    # -- running ---------------------------------------------------------------------------

    def run(self) -> None:
        """Prepare, send and write, all on this thread."""
        self.prepare()
        self.complete(self.transmit())

    def prepare(self) -> None:
        """Build and validate the events; locally invalid ones fail at once (written with
        the outcomes). No database: ``transmit`` runs it on the helper thread."""
        self._items = []
        self._prepared = True
        for row in self.rows:
            if isinstance(row, StoredRow):  # checked and written as X's text when recorded
                self._items.append(_Item(row, stored_event(row)))
                continue
            text = wire_event(row)
            if text is not None:  # surely valid: written straight from the row
                self._items.append(_Item(row, text))
                continue
            event, _ = build_event(row)
            problems = validate(event)
            if problems:
                self._fail([row.pk], Reason.INVALID, "; ".join(p.message for p in problems))
            else:
                self._items.append(_Item(row, event))

    def transmit(self) -> Transmission | None:
        """Build the events and send the batch's first request: no database, so it runs
        on a helper thread while this thread writes outcomes and claims the next batch
        (the build, most of a batch's own work, overlaps those statements)."""
        if not self._prepared:
            self.prepare()
        if not self._items:
            return None
        return _transmit(self.client, self.pixel.pixel_id, self._items)

    def release(self) -> None:
        """Send nothing after all (the account was stopped before this batch's turn): the
        rows go back to pending, their events back to the budget."""
        self._items = []
        self._write()

    def complete(self, transmission: Transmission | None) -> None:
        """Classify X's answer (sending more requests when events must be isolated) and
        write every outcome."""
        try:
            if transmission is not None:
                self._deliver(self._items, reserved=True, transmission=transmission)
        except AccountStopped:
            self.account_stopped = True
        finally:
            self._write()

    def _deliver(
        self, items: list[_Item], *, reserved: bool, transmission: Transmission | None = None
    ) -> None:
        """Send events of unknown status; isolate the bad ones if X rejects the batch."""
        outcome = self._attempt(items, reserved=reserved, transmission=transmission)
        if isinstance(outcome, errors.BadRequest):
            self._isolate(items, outcome)

    def _attempt(
        self, items: list[_Item], *, reserved: bool, transmission: Transmission | None = None
    ) -> errors.BadRequest | bool:
        """One request. True: sent. BadRequest: X rejected the whole batch. False: the
        events were dealt with otherwise (retry scheduled, account stopped, no budget)."""
        if transmission is None:
            if not reserved and not self._reserve(len(items)):
                return False  # budget spent: these rows go back to pending when written
            transmission = _transmit(self.client, self.pixel.pixel_id, items)
        exc, result = transmission.error, transmission.result
        if isinstance(exc, errors.ImproperlyConfiguredAccount):
            # Nothing was sent: the account lacks credentials. Pause it until fixed.
            self._log(len(items), transmission.seconds, exc)
            self._pause(f"Credentials missing: {exc}")
        if exc is not None:
            self._log(len(items), transmission.seconds, exc)
            self._observe(exc.rate_limit)
            if isinstance(exc, errors.BadRequest):
                return exc
            self._handle_error(items, exc)
            return False
        assert result is not None  # noqa: S101 (a transmission has one or the other)
        self._log(
            len(items), transmission.seconds, None, status=200, debug_id=result.debug_id or ""
        )
        self._observe(result.rate_limit)
        self._sent[result.debug_id or ""].extend(item.row.pk for item in items)
        self._decided.update(item.row.pk for item in items)
        return True

    def _isolate(self, items: list[_Item], rejection: errors.BadRequest) -> None:
        """Send what X accepts of a refused batch and fail each event it rejects."""

        def send(group: list[_Item]) -> errors.BadRequest | bool:
            return self._attempt(group, reserved=False)

        def fail(item: _Item, refusal: errors.BadRequest) -> None:
            self._fail([item.row.pk], Reason.REJECTED, "; ".join(refusal.messages))

        # X's messages name the rejected value: matched to the events, they narrow the search.
        isolation.isolate(items, rejection, send, fail, event_of=lambda item: item.event)

    def _reserve(self, events: int) -> bool:
        grant = budget.reserve(self.account.pk, events)
        if grant.events < events:
            budget.give_back(self.account.pk, grant.events)
            if grant.wait_until is not None:
                self.summary.budget_exhausted[self.account.account_id] = grant.wait_until
            return False
        return True

    def _handle_error(self, items: list[_Item], exc: errors.XAdsError) -> None:
        if isinstance(exc, errors.NotFound):
            self._not_found(items, exc)
        elif isinstance(exc, errors.Unauthorized | errors.Forbidden):
            self._pause(f"X refused the credentials: {exc}")
        elif isinstance(exc, errors.RateLimited):
            self._rate_limited(exc)
        elif isinstance(exc, errors.ServerError | errors.TransportError):
            self._schedule_retry(items, exc)
        else:
            # Any other 4xx is permanent for these events.
            self._fail([i.row.pk for i in items], Reason.REJECTED, str(exc))

    def _not_found(self, items: list[_Item], exc: errors.XAdsError) -> None:
        named = event_ids_not_found(exc.messages)
        bad = [i for i in items if i.event["event_id"] in named]
        if not bad:
            self._pause(f"X could not find the pixel or account: {exc}")
        self._fail([i.row.pk for i in bad], Reason.NOT_FOUND, "; ".join(exc.messages))
        rest = [i for i in items if i.event["event_id"] not in named]
        if rest:
            self._deliver(rest, reserved=False)

    def _pause(self, reason: str) -> NoReturn:
        pause_account(self.account, reason, self.summary)
        raise AccountStopped(reason)

    def _rate_limited(self, exc: errors.XAdsError) -> NoReturn:
        reset_at = getattr(exc, "reset_at", None)
        if reset_at is not None:
            until = dt.datetime.fromtimestamp(reset_at, tz=dt.timezone.utc)
        else:
            until = clock.now() + dt.timedelta(seconds=exc.retry_after or 60)
        budget.wait_out_rate_limit(self.account.pk, until)
        self.summary.rate_limited[self.account.account_id] = until
        raise AccountStopped(str(exc))

    def _schedule_retry(self, items: list[_Item], exc: errors.XAdsError) -> None:
        message = str(exc)
        for item in items:
            attempt = item.row.attempts + 1
            if attempt >= xsettings.MAX_ATTEMPTS:
                gave_up = f"Gave up after {attempt} attempts: {message}"
                self._fail([item.row.pk], Reason.MAX_ATTEMPTS, gave_up)
                continue
            delay = max(backoff_seconds(attempt), exc.retry_after or 0.0)
            # Rows of one batch usually share an attempt count: one update per group.
            self._retry[(attempt, round(delay, 3), message)].append(item.row.pk)
            self._decided.add(item.row.pk)

    def _fail(self, ids: list[int], reason: Conversion.ErrorReason, message: str) -> None:
        self._failed[(reason, message)].extend(ids)
        self._decided.update(ids)

    def _observe(self, rate_limit: Any) -> None:
        # The latest answer's headers are folded into the budget when outcomes are written.
        if rate_limit is not None:
            self._rate_limit = rate_limit

    def _log(
        self,
        events: int,
        seconds: float,
        exc: errors.XAdsError | errors.ImproperlyConfiguredAccount | None,
        *,
        status: int | None = None,
        debug_id: str = "",
    ) -> None:
        answered = isinstance(exc, errors.XAdsError)
        body = exc.body if isinstance(exc, errors.XAdsError) else None
        self._attempt_log.append(
            DeliveryAttempt(
                account_id=self.account.pk,
                pixel_id=self.pixel.pk,
                event_count=events,
                http_status=exc.status if isinstance(exc, errors.XAdsError) else status,
                outcome=outcome_of(exc),
                error_code=(exc.code or "") if isinstance(exc, errors.XAdsError) else "",
                error_body=str(body if body is not None else (exc or ""))[:ERROR_BODY_LIMIT],
                debug_id=debug_id,
                duration_ms=int(seconds * 1000),
            )
        )
        # A missing credential stops the request before it leaves.
        if answered or exc is None:
            self.summary.requests += 1
            logged = self._attempt_log[-1]
            observe.request(
                self.account,
                self.pixel,
                events=events,
                http_status=logged.http_status,
                outcome=logged.outcome,
                seconds=seconds,
                debug_id=debug_id,
            )

    # -- writing ---------------------------------------------------------------------------

    def _mine(self, ids: list[int]) -> Any:
        # Found by primary key (the claim token has no index: each index costs an entry
        # on every send). The token guards: a row re-claimed by another worker after our
        # lease expired is theirs now, and our late outcome must not overwrite it.
        return Conversion.objects.filter(pk_in(ids), claim_token=self.token)

    def _update(self, ids: list[int], **values: Any) -> int:
        """Write ``values`` to the rows of ``ids`` still under this claim; count the rest
        as lost claims. Returns how many were written."""
        written = int(self._mine(ids).update(claim_token=None, lease_expires_at=None, **values))
        self.summary.lost_claims += len(ids) - written
        return written

    def _write(self) -> None:
        # One transaction for every outcome of the batch, its attempt log and the budget.
        with transaction.atomic():
            # Reserved events no request carried: rows failed locally, or every row of a
            # batch released unsent.
            budget.give_back(self.account.pk, len(self.rows) - len(self._items))
            self._write_outcomes()
            if self._attempt_log:
                DeliveryAttempt.objects.bulk_create(self._attempt_log)
            if self._rate_limit is not None:
                budget.observe(
                    self.account.pk,
                    limit=self._rate_limit.limit,
                    remaining=self._rate_limit.remaining,
                    reset_at=self._rate_limit.reset_at,
                )

    def _write_outcomes(self) -> None:
        now = clock.now()
        for debug_id, ids in self._sent.items():
            sent = self._update(
                ids,
                status=Conversion.Status.SENT,
                debug_id=debug_id,
                sent_at=now,
                last_error="",
                error_reason="",
                wire_text=None,  # done with: a sent row keeps its fields only
            )
            self.summary.sent += sent
            observe.sent(self.pixel, ids, debug_id=debug_id, written=sent, at=now)
        for (reason, message), ids in self._failed.items():
            failed = self._update(
                ids,
                status=Conversion.Status.FAILED,
                error_reason=reason,
                last_error=message,
                failed_at=now,
                wire_text=None,  # sent again only if requeued: then built from its fields
            )
            if failed:
                self.summary.failed[reason] += failed
            observe.failed(self.pixel, ids, reason=reason, message=message, written=failed, at=now)
        for (attempt, delay, message), ids in self._retry.items():
            self.summary.retrying += self._update(
                ids,
                status=Conversion.Status.PENDING,
                attempts=attempt,
                next_attempt_at=now + dt.timedelta(seconds=delay),
                error_reason=Reason.TRANSIENT,
                last_error=message,
            )
        undecided = [row.pk for row in self.rows if row.pk not in self._decided]
        if undecided:
            # Paused, rate limited or out of budget: back to pending, no attempt counted.
            self.summary.released += self._update(undecided, status=Conversion.Status.PENDING)
