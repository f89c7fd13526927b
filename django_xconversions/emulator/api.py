"""The emulated X Ads API: routes, authentication, rate limits and handlers.

HTTP plumbing lives in server.py; this module turns a parsed request into a Response.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django_xconversions.emulator import oauth, oauth_flow, pixel_page, rules
from django_xconversions.emulator.faults import FaultPlan
from django_xconversions.emulator.tag_params import (
    ParamError,
    check_windows,
    parse_boolean,
    parse_count,
    parse_tag_params,
)
from django_xconversions.emulator.world import (
    SENDING_PERMISSIONS,
    USER_REQUEST_LIMIT,
    Account,
    Pixel,
    Tag,
    User,
    World,
    bare_event_id,
)

CURRENT_VERSION = "12"
MAX_TAG_IDS = 200
ROUTE_NOT_FOUND = {
    "code": "ROUTE_NOT_FOUND",
    "message": "The requested resource could not be found",
    "parameter": None,
}
# X's 401 for missing or wrong credentials. The code is documented (UNAUTHORIZED_ACCESS);
# the reference pages give no message for it: this is the wording X's API answers with.
NOT_AUTHENTICATED = {
    "code": "UNAUTHORIZED_ACCESS",
    "message": "This request is not properly authenticated",
    "parameter": None,
}
# The reference's 403 "Unauthorized Client" (the developer account has no Ads API access),
# in its current wording (page 004: "X Ads API") with the plain quotes of the older page
# (001), where the web page had not curled them. X writes its numeric app id between the
# brackets; the reference leaves it out and so does the emulator.
CLIENT_APP_NOT_AUTHORIZED = {
    "code": "UNAUTHORIZED_CLIENT_APPLICATION",
    "message": (
        "The client application with id <> making this request does not have access to "
        "X Ads API. Ensure your application has advertiser-api access. Use 'twurl accounts' "
        "and 'twurl set default <username> <key>' to change the application you're using."
    ),
    "parameter": None,
}
# A 403 for an account without Ads API access: ACCOUNT_LOCKED_OUT is one of X's documented
# 403 codes; the message is inferred (the reference documents none for it).
ACCOUNT_NO_ACCESS = {
    "code": "ACCOUNT_LOCKED_OUT",
    "message": "This account is locked out and has no access to X Ads API",
    "parameter": None,
}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in Title-Case
    body: bytes
    uri: str  # absolute, as the client signed it


@dataclass
class Response:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # close the connection without answering
    delay: float = 0.0  # hold the (already processed) answer back this long
    events: int = 0
    auth: str | None = None
    # A body sent as is instead of JSON (the OAuth flow's form-encoded tokens and pages).
    raw: bytes | None = None
    content_type: str | None = None
    # Conversions requests only: the pixel in the path and the batch's conversion_ids
    # (None for an event without one), for the request log.
    pixel_id: str | None = None
    conversion_ids: list[str | None] | None = None


class Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def envelope(data: Any, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"data": data, "request": {"params": params}, **extra}


def errors_body(errors: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    return {"errors": errors, "request": {"params": params}}


def refuse(
    status: int, errors: list[dict[str, Any]], params: dict[str, Any] | None = None
) -> Refused:
    return Refused(Response(status, errors_body(errors, params or {})))


def _no_access(user_id: str, account_id: str) -> Refused:
    # X's documented message, word for word (the server escapes <> in JSON; see server.py).
    message = (
        f"User {user_id} does not have access to account {account_id}. Type 'sn {user_id}' "
        "to get the handle of the user. Use 'twurl accounts' and 'twurl set default "
        "<username>' to change the user you're using."
    )
    return refuse(404, [rules.error("NOT_FOUND", message, None)], {"account_id": account_id})


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("offset:"):
            raise ValueError(text)
        return max(0, int(text.removeprefix("offset:")))
    except (ValueError, UnicodeDecodeError):
        message = f'Expected valid cursor, got "{cursor}" for cursor'  # inferred wording
        raise refuse(400, [rules.invalid(message, "cursor")]) from None


def _count_events(body: Any) -> int:
    conversions = body.get("conversions") if isinstance(body, dict) else None
    return len(conversions) if isinstance(conversions, list) else 0


def _conversion_ids(body: Any) -> list[str | None]:
    conversions = body.get("conversions") if isinstance(body, dict) else None
    if not isinstance(conversions, list):
        return []
    ids: list[str | None] = []
    for conversion in conversions:
        value = conversion.get("conversion_id") if isinstance(conversion, dict) else None
        ids.append(None if value is None else str(value))
    return ids


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    try:
        return json.loads(raw or b"null"), True
    except ValueError:
        return None, False


# A route's handler: an XAdsApi method, called with the request and the path's match.
Handler = Callable[["XAdsApi", Call, re.Match[str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]  # matched against the whole path
    handler: Handler
    # The conversions endpoint: faults aim at it by default (per pixel, group 2 of the
    # pattern), its answers take delay_seconds, and the request log names its pixel.
    conversions: bool = False
    # Outside X's API (inspection helpers): no fault ever hits it.
    emulator_only: bool = False

    def match(self, call: Call) -> re.Match[str] | None:
        return self.pattern.fullmatch(call.path) if call.method == self.method else None


class XAdsApi:
    def __init__(
        self, world: World, faults: FaultPlan, stopping: threading.Event | None = None
    ) -> None:
        self.world = world
        self.faults = faults
        # Set when the server stops: wakes handlers sleeping in a slow fault.
        self.stopping = stopping or threading.Event()
        self.oauth_flow = oauth_flow.OAuthFlow(world)

    # -- dispatch --------------------------------------------------------------------------

    @staticmethod
    def _route(call: Call) -> tuple[Route, re.Match[str]] | None:
        for route in ROUTES:
            match = route.match(call)
            if match:
                return route, match
        return None

    def handle(self, call: Call) -> Response:
        routed = self._route(call)
        if routed is None:
            response = Response(404, errors_body([ROUTE_NOT_FOUND], {}))
        else:
            route, match = routed
            pixel_id = match.group(2) if route.conversions else None
            faulty = route.conversions or (self.faults.all_endpoints and not route.emulator_only)
            fault = self.faults.next(pixel_id) if faulty else "ok"
            response = self._run(route, call, match, fault)
            if route.conversions:
                response.pixel_id = pixel_id
                if not response.reset:
                    # Every answer of the endpoint is late, refusals included.
                    response.delay += self.faults.delay_seconds
        if response.reset:
            return response
        response.headers.setdefault("x-current-api-version", CURRENT_VERSION)
        version = call.path.split("/")[1] if call.path.count("/") > 1 else ""
        if version.isdigit() and version != CURRENT_VERSION:
            # Inferred wording; X announces deprecations in this header.
            response.headers["x-api-warn"] = (
                f"Version {version} of the Ads API is not the current version "
                f"({CURRENT_VERSION}); please migrate to version {CURRENT_VERSION}."
            )
        return response

    def _run(self, route: Route, call: Call, match: re.Match[str], fault: str) -> Response:
        if fault not in ("ok", "timeout"):
            response = self._fault(fault)
            if route.conversions:
                body = _parse_json(call.body)[0]
                response.events = _count_events(body)
                response.conversion_ids = _conversion_ids(body)
            return response
        slow_first = fault == "timeout" and self.faults.slow_before_processing
        if slow_first and self.stopping.wait(self.faults.slow_seconds):
            return Response(0, reset=True)  # stopped while waiting: never processed
        try:
            response = route.handler(self, call, match)
        except Refused as refused:
            response = refused.response
        if fault == "timeout" and not self.faults.slow_before_processing:
            response.delay = self.faults.slow_seconds
        return response

    def _fault(self, fault: str) -> Response:
        if fault == "reset":
            return Response(0, reset=True)
        if fault == "500":
            error = rules.error("INTERNAL_ERROR", "Internal error", None)
            return Response(500, errors_body([error], {}))
        if fault == "503":
            error = rules.error("SERVICE_UNAVAILABLE", "Service unavailable", None)
            headers = {"retry-after": str(self.faults.retry_after_seconds)}
            return Response(503, errors_body([error], {}), headers)
        if fault == "401":
            return Response(401, errors_body([dict(NOT_AUTHENTICATED)], {}))
        if fault == "403":
            return Response(403, errors_body([dict(ACCOUNT_NO_ACCESS)], {}))
        if fault == "403_client_app":
            return Response(403, errors_body([dict(CLIENT_APP_NOT_AUTHORIZED)], {}))
        # "429": both limits exhausted until a reset a few seconds away.
        reset = str(int(self.world.clock()) + self.faults.rate_limit_reset_seconds)
        headers = {
            "x-rate-limit-limit": str(USER_REQUEST_LIMIT),
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": reset,
            "x-account-rate-limit-limit": str(self.world.budget_events),
            "x-account-rate-limit-remaining": "0",
            "x-account-rate-limit-reset": reset,
        }
        error = rules.error("TOO_MANY_REQUESTS", "Rate limit exceeded", None)
        return Response(429, errors_body([error], {}), headers)

    # -- authentication --------------------------------------------------------------------

    def _user(self, call: Call) -> User:
        try:
            signed = oauth.verify(self.world, call.method, call.uri, call.headers, call.body)
        except oauth.OAuthFailure:
            raise refuse(401, [NOT_AUTHENTICATED]) from None
        if signed.user is None:
            raise refuse(401, [NOT_AUTHENTICATED])
        return signed.user

    def _account_for(self, user: User, account_id: str) -> Account:
        account = self.world.accounts.get(account_id)
        if account is None or user.user_id not in account.users:
            raise _no_access(user.user_id, account_id)
        return account

    def _user_rate_headers(self, key: str) -> dict[str, str]:
        now = self.world.clock()
        with self.world.lock:
            window = self.world.request_window(key, now)
            window.used += 1
            return {
                "x-rate-limit-limit": str(USER_REQUEST_LIMIT),
                "x-rate-limit-remaining": str(max(0, USER_REQUEST_LIMIT - window.used)),
                "x-rate-limit-reset": str(window.reset_at),
            }

    # -- conversions -----------------------------------------------------------------------

    def _authenticate_conversions(self, call: Call, pixel: Pixel | None) -> tuple[Pixel, str, str]:
        """The pixel, "oauth" or "pixel_token", and the key of the user-level rate limit."""
        token = call.headers.get("X-Pixel-Token")
        if token is not None:
            # A pixel token is bound to its pixel: for an unknown pixel nothing can match
            # (inferred: 401, not 404).
            if pixel is None or not pixel.pixel_token or token != pixel.pixel_token:
                raise refuse(401, [NOT_AUTHENTICATED])
            return pixel, "pixel_token", f"pixel:{pixel.pixel_id}:conversions"
        user = self._user(call)
        if pixel is None:
            # Inferred wording: X documents only "404 Not Found" for a wrong pixel_id.
            message = "The requested resource could not be found"
            raise refuse(404, [rules.error("NOT_FOUND", message, "pixel_id")])
        account = self._account_for(user, pixel.account_id)
        if not SENDING_PERMISSIONS & set(account.users[user.user_id]):
            # Only AD_MANAGER and ACCOUNT_ADMIN may send: for anyone else the account is
            # out of reach, and X answers with its no-access 404.
            raise _no_access(user.user_id, account.account_id)
        return pixel, "oauth", f"user:{user.user_id}:conversions"

    def _account_headers(self, account_id: str, now: float) -> tuple[dict[str, str], int]:
        window = self.world.event_window(account_id, now)
        remaining = max(0, self.world.budget_events - window.used)
        headers = {
            "x-account-rate-limit-limit": str(self.world.budget_events),
            "x-account-rate-limit-remaining": str(remaining),
            "x-account-rate-limit-reset": str(window.reset_at),
        }
        return headers, remaining

    def conversions(self, call: Call, match: re.Match[str]) -> Response:
        body, parsed = _parse_json(call.body)
        events = _count_events(body)
        conversion_ids = _conversion_ids(body)
        try:
            pixel, auth, rate_key = self._authenticate_conversions(
                call, self.world.pixels.get(match.group(2))
            )
        except Refused as refused:
            refused.response.events = events
            refused.response.conversion_ids = conversion_ids
            raise
        params = {"account_id": pixel.account_id}

        def answer(status: int, payload: dict[str, Any], headers: dict[str, str]) -> Response:
            return Response(
                status, payload, headers, events=events, auth=auth, conversion_ids=conversion_ids
            )

        if not parsed:
            error = rules.invalid("Request body is not valid JSON", "conversions")  # inferred
            return answer(400, errors_body([error], params), {})
        headers = self._user_rate_headers(rate_key)
        shape = rules.check_shape(body)
        if shape:
            # A malformed request is refused before any of its events is counted (inferred).
            with self.world.lock:
                headers.update(self._account_headers(pixel.account_id, self.world.clock())[0])
            return answer(400, errors_body(shape, params), headers)
        with self.world.lock:
            now = self.world.clock()
            remaining = self._account_headers(pixel.account_id, now)[1]
            admitted = events <= remaining
            if admitted:
                # Every event of an admitted request counts, valid or not (inferred).
                self.world.event_window(pixel.account_id, now).used += events
            headers.update(self._account_headers(pixel.account_id, now)[0])
        if not admitted:
            error = rules.error("TOO_MANY_REQUESTS", "Rate limit exceeded", None)
            return answer(429, errors_body([error], params), headers)
        # Validation reads the world without the lock: 500 events must stay cheap.
        errors = rules.check_request(
            self.world, pixel, body, not_found_wording=self.faults.not_found_wording
        )
        if errors:
            status = 404 if any(e["code"] == "NOT_FOUND" for e in errors) else 400
            return answer(status, errors_body(errors, params), headers)
        debug_id = str(uuid.uuid4())
        with self.world.lock:
            self.world.record_conversions(pixel, body["conversions"], debug_id, self.world.clock())
        data = {"conversions_processed": events, "debug_id": debug_id}
        return answer(200, envelope(data, params), headers)

    # -- accounts --------------------------------------------------------------------------

    def _page(
        self, call: Call, items: list[dict[str, Any]], params: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        try:
            count = parse_count(call.query.get("count"))
        except ParamError as exc:
            raise refuse(400, exc.errors, params) from None
        offset = _decode_cursor(call.query["cursor"]) if call.query.get("cursor") else 0
        page = items[offset : offset + count]
        more = offset + count < len(items)
        next_cursor = _encode_cursor(offset + count) if more else None
        return envelope(page, params, next_cursor=next_cursor, **extra)

    def _oauth_answer(self, user: User, body: dict[str, Any]) -> Response:
        response = Response(200, body, auth="oauth")
        response.headers.update(self._user_rate_headers(f"user:{user.user_id}"))
        return response

    def accounts(self, call: Call, match: re.Match[str]) -> Response:
        user = self._user(call)
        with self.world.lock:
            mine = [a.as_json() for a in self.world.accounts.values() if user.user_id in a.users]
        return self._oauth_answer(user, self._page(call, mine, {}))

    def account(self, call: Call, match: re.Match[str]) -> Response:
        user = self._user(call)
        account = self._account_for(user, match.group(2))
        params = {"account_id": account.account_id}
        return self._oauth_answer(user, envelope(account.as_json(), params))

    def user_access(self, call: Call, match: re.Match[str]) -> Response:
        user = self._user(call)
        account = self._account_for(user, match.group(2))
        data = {"user_id": user.user_id, "permissions": list(account.users[user.user_id])}
        return self._oauth_answer(user, envelope(data, {"account_id": account.account_id}))

    # -- web event tags --------------------------------------------------------------------

    def _tag_context(self, call: Call, match: re.Match[str]) -> tuple[User, Account]:
        user = self._user(call)
        return user, self._account_for(user, match.group(2))

    def _flag(self, call: Call, name: str, params: dict[str, Any]) -> bool:
        raw = call.query.get(name)
        if raw is None:
            return False
        try:
            params[name] = parse_boolean(name, raw)
        except ParamError as exc:
            raise refuse(400, exc.errors, params) from None
        return bool(params[name])

    def list_tags(self, call: Call, match: re.Match[str]) -> Response:
        user, account = self._tag_context(call, match)
        params: dict[str, Any] = {"account_id": account.account_id}
        with_deleted = self._flag(call, "with_deleted", params)
        with_total_count = self._flag(call, "with_total_count", params)
        if with_total_count and call.query.get("cursor"):
            # Documented: "This parameter and cursor are exclusive" (message inferred).
            message = "with_total_count and cursor are exclusive"
            raise refuse(400, [rules.error("EXCLUSIVE_PARAMETERS", message, "cursor")], params)
        with self.world.lock:
            tags = [t for t in account.tags.values() if with_deleted or not t.deleted]
        if call.query.get("web_event_tag_ids"):
            wanted = [i.strip() for i in call.query["web_event_tag_ids"].split(",") if i.strip()]
            params["web_event_tag_ids"] = wanted
            if len(wanted) > MAX_TAG_IDS:
                message = f"Expected at most {MAX_TAG_IDS} ids for web_event_tag_ids"  # inferred
                raise refuse(400, [rules.invalid(message, "web_event_tag_ids")], params)
            chosen = set(wanted)
            tags = [t for t in tags if t.id in chosen]
        sort_by = call.query.get("sort_by", "created_at-asc")
        field_name, _, direction = sort_by.partition("-")
        if field_name not in ("created_at", "name", "id") or direction not in ("asc", "desc"):
            message = f'Expected a sortable field with -asc or -desc, got "{sort_by}" for sort_by'
            raise refuse(400, [rules.invalid(message, "sort_by")], params)
        if "sort_by" in call.query:
            params["sort_by"] = [sort_by]
        tags.sort(key=lambda t: (getattr(t, field_name), t.id), reverse=direction == "desc")
        extra = {"total_count": len(tags)} if with_total_count else {}
        body = self._page(call, [t.as_json() for t in tags], params, **extra)
        return self._oauth_answer(user, body)

    def _find_tag(self, account: Account, tag_id: str, *, with_deleted: bool) -> Tag:
        tag = account.tags.get(tag_id)
        if tag is None or (tag.deleted and not with_deleted):
            message = f"web_event_tag_id ({tag_id}) was not found"  # inferred wording
            params = {"account_id": account.account_id, "web_event_tag_id": tag_id}
            error = rules.error("WEB_EVENT_TAG_NOT_FOUND", message, "web_event_tag_id")
            raise refuse(404, [error], params)
        return tag

    def get_tag(self, call: Call, match: re.Match[str]) -> Response:
        user, account = self._tag_context(call, match)
        params: dict[str, Any] = {
            "web_event_tag_id": match.group(3),
            "account_id": account.account_id,
        }
        with_deleted = self._flag(call, "with_deleted", params)
        with self.world.lock:
            data = self._find_tag(account, match.group(3), with_deleted=with_deleted).as_json()
        return self._oauth_answer(user, envelope(data, params))

    def create_tag(self, call: Call, match: re.Match[str]) -> Response:
        user, account = self._tag_context(call, match)
        params: dict[str, Any] = {"account_id": account.account_id}
        try:
            fields = parse_tag_params(call.query, create=True)
            check_windows(fields["click_window"], fields["view_through_window"])
        except ParamError as exc:
            raise refuse(400, exc.errors, {**params, **call.query}) from None
        data = self.world.add_tag(account.account_id, **fields)
        # X echoes the parameters as it read them (typed), as in its example.
        return self._oauth_answer(user, envelope(data, {**fields, **params}))

    def update_tag(self, call: Call, match: re.Match[str]) -> Response:
        user, account = self._tag_context(call, match)
        params: dict[str, Any] = {
            "web_event_tag_id": match.group(3),
            "account_id": account.account_id,
        }
        with self.world.lock:
            tag = self._find_tag(account, match.group(3), with_deleted=False)
            try:
                fields = parse_tag_params(call.query, create=False)
                # Only what is sent changes; the rules apply to the merged values.
                check_windows(
                    fields.get("click_window", tag.click_window),
                    fields.get("view_through_window", tag.view_through_window),
                )
            except ParamError as exc:
                raise refuse(400, exc.errors, {**params, **call.query}) from None
            for name, value in fields.items():
                setattr(tag, name, value)
            data = tag.as_json()
        return self._oauth_answer(user, envelope(data, {**fields, **params}))

    def delete_tag(self, call: Call, match: re.Match[str]) -> Response:
        user, account = self._tag_context(call, match)
        params = {"web_event_tag_id": match.group(3), "account_id": account.account_id}
        with self.world.lock:
            tag = self._find_tag(account, match.group(3), with_deleted=False)
            tag.deleted = True
            data = tag.as_json()
        return self._oauth_answer(user, envelope(data, params))

    # -- 3-legged OAuth ----------------------------------------------------------------------

    @staticmethod
    def _as_response(answer: oauth_flow.Answer) -> Response:
        return Response(
            answer.status, headers=answer.headers, raw=answer.body, content_type=answer.content_type
        )

    def request_token(self, call: Call, match: re.Match[str]) -> Response:
        return self._as_response(self.oauth_flow.request_token(call))

    def authorize_page(self, call: Call, match: re.Match[str]) -> Response:
        return self._as_response(self.oauth_flow.authorize_page(call))

    def authorize_submit(self, call: Call, match: re.Match[str]) -> Response:
        return self._as_response(self.oauth_flow.authorize_submit(call))

    def access_token(self, call: Call, match: re.Match[str]) -> Response:
        return self._as_response(self.oauth_flow.access_token(call))

    # -- emulator-only ---------------------------------------------------------------------

    def inspect_received(self, call: Call, match: re.Match[str]) -> Response:
        raw = call.query.get("since", "0") or "0"
        if not raw.isdigit():
            raise refuse(400, [rules.invalid(f'Expected Integer, got "{raw}" for since', "since")])
        with self.world.lock:
            records = self.world.received[int(raw) :]
            total = len(self.world.received)
        return Response(200, {"data": records, "total": total})

    def inspect_stats(self, call: Call, match: re.Match[str]) -> Response:
        with self.world.lock:
            statuses: dict[str, int] = {}
            events = 0
            for entry in self.world.requests:
                statuses[str(entry["status"])] = statuses.get(str(entry["status"]), 0) + 1
                events += entry["events"]
            keys = [
                (
                    r["account_id"],
                    bare_event_id(r["event_id"], r["pixel_id"]),
                    r["conversion"].get("conversion_id"),
                )
                for r in self.world.received
            ]
            data = {
                "received": len(keys),
                # Accepted twice or more (same event and conversion_id): X would dedupe them.
                "duplicates": len(keys) - len(set(keys)),
                "requests": len(self.world.requests),
                "events_sent": events,
                "by_status": statuses,
            }
        return Response(200, {"data": data})

    def inspect_requests(self, call: Call, match: re.Match[str]) -> Response:
        """The conversions request log (``?pixel_id=P&after=T``, T a time.monotonic() value
        of this machine), in order of arrival."""
        pixel_id = call.query.get("pixel_id") or None
        raw = call.query.get("after", "")
        try:
            after = float(raw) if raw else None
        except ValueError:
            message = f'Expected Float, got "{raw}" for after'
            raise refuse(400, [rules.invalid(message, "after")]) from None
        data = self.world.conversion_requests(pixel_id, after)
        return Response(200, {"data": data})

    def inspect_reset(self, call: Call, match: re.Match[str]) -> Response:
        self.world.reset_records()
        return Response(200, {"data": {"reset": True}})

    def inspect_pixel_page(self, call: Call, match: re.Match[str]) -> Response:
        """A read-only HTML page: what this pixel's requests carried (pixel_page.py)."""
        pixel_id = match.group(1)
        with self.world.lock:
            received = [r for r in self.world.received if r["pixel_id"] == pixel_id]
        requests = self.world.conversion_requests(pixel_id)
        conversion_id = call.query.get("conversion_id") or None
        page = pixel_page.render(pixel_id, requests, received, conversion_id)
        return Response(200, raw=page, content_type=oauth_flow.HTML)


# The route table. Versioned paths take any numeric version; X's current one is 12.
_ACCOUNTS = r"/(\d+)/accounts"
_ACCOUNT = _ACCOUNTS + r"/([^/]+)"
_TAGS = _ACCOUNT + "/web_event_tags"
_TAG = _TAGS + r"/([^/]+)"

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        re.compile(r"/(\d+)/measurement/conversions/([^/]+)"),
        XAdsApi.conversions,
        conversions=True,
    ),
    Route("GET", re.compile(_ACCOUNTS), XAdsApi.accounts),
    Route("GET", re.compile(_ACCOUNT), XAdsApi.account),
    Route("GET", re.compile(_ACCOUNT + "/authenticated_user_access"), XAdsApi.user_access),
    Route("GET", re.compile(_TAGS), XAdsApi.list_tags),
    Route("POST", re.compile(_TAGS), XAdsApi.create_tag),
    Route("GET", re.compile(_TAG), XAdsApi.get_tag),
    Route("PUT", re.compile(_TAG), XAdsApi.update_tag),
    Route("DELETE", re.compile(_TAG), XAdsApi.delete_tag),
    # 3-legged OAuth (api.x.com, unversioned paths; see oauth_flow.py).
    Route("POST", re.compile(r"/oauth/request_token"), XAdsApi.request_token),
    Route("GET", re.compile(r"/oauth/authorize"), XAdsApi.authorize_page),
    Route("POST", re.compile(r"/oauth/authorize"), XAdsApi.authorize_submit),
    Route("POST", re.compile(r"/oauth/access_token"), XAdsApi.access_token),
    # Emulator-only helpers, outside X's API, for demos and tests in other processes.
    Route("GET", re.compile(r"/_emulator/received"), XAdsApi.inspect_received, emulator_only=True),
    Route("GET", re.compile(r"/_emulator/stats"), XAdsApi.inspect_stats, emulator_only=True),
    Route("GET", re.compile(r"/_emulator/requests"), XAdsApi.inspect_requests, emulator_only=True),
    Route("POST", re.compile(r"/_emulator/reset"), XAdsApi.inspect_reset, emulator_only=True),
    Route(
        "GET",
        re.compile(r"/_emulator/pixels/([^/]+)"),
        XAdsApi.inspect_pixel_page,
        emulator_only=True,
    ),
)
