"""The emulated X Ads API: routes, authentication, rate limits and handlers.

HTTP plumbing lives in server.py; this module turns a parsed request into a Response.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django_xconversions.emulator import oauth, rules
from django_xconversions.emulator.faults import FaultPlan
from django_xconversions.emulator.tag_params import (
    ParamError,
    check_windows,
    parse_count,
    parse_tag_params,
)
from django_xconversions.emulator.world import (
    SENDING_PERMISSIONS,
    USER_REQUEST_LIMIT,
    Account,
    Pixel,
    User,
    World,
)

CURRENT_VERSION = "12"
MAX_TAG_IDS = 200
ROUTE_NOT_FOUND = {
    "code": "ROUTE_NOT_FOUND",
    "message": "The requested resource could not be found",
    "parameter": None,
}
NOT_AUTHENTICATED = {
    "code": "UNAUTHORIZED_ACCESS",
    "message": "This request is not properly authenticated",
    "parameter": None,
}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    uri: str  # absolute, as the client signed it


@dataclass
class Response:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # close the connection without answering
    delay: float = 0.0  # sleep before processing (a slow server)
    events: int = 0
    auth: str | None = None


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
        return int(text.removeprefix("offset:"))
    except (ValueError, UnicodeDecodeError):
        raise refuse(
            400, [rules.invalid(f'Expected valid cursor, got "{cursor}" for cursor', "cursor")]
        ) from None


ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/(\d+)/measurement/conversions/([^/]+)"), "conversions"),
    ("GET", re.compile(r"/(\d+)/accounts"), "accounts"),
    ("GET", re.compile(r"/(\d+)/accounts/([^/]+)/authenticated_user_access"), "user_access"),
    ("GET", re.compile(r"/(\d+)/accounts/([^/]+)/web_event_tags"), "list_tags"),
    ("POST", re.compile(r"/(\d+)/accounts/([^/]+)/web_event_tags"), "create_tag"),
    ("GET", re.compile(r"/(\d+)/accounts/([^/]+)/web_event_tags/([^/]+)"), "get_tag"),
    ("PUT", re.compile(r"/(\d+)/accounts/([^/]+)/web_event_tags/([^/]+)"), "update_tag"),
    ("DELETE", re.compile(r"/(\d+)/accounts/([^/]+)/web_event_tags/([^/]+)"), "delete_tag"),
    # Emulator-only helpers, outside X's API, for demos and tests in other processes.
    ("GET", re.compile(r"/_emulator/received"), "inspect_received"),
    ("GET", re.compile(r"/_emulator/stats"), "inspect_stats"),
    ("POST", re.compile(r"/_emulator/reset"), "inspect_reset"),
]


class XAdsApi:
    def __init__(self, world: World, faults: FaultPlan) -> None:
        self.world = world
        self.faults = faults

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, call: Call) -> Response:
        for method, pattern, name in ROUTES:
            match = pattern.fullmatch(call.path)
            if match and method == call.method:
                try:
                    response: Response = getattr(self, name)(call, match)
                except Refused as refused:
                    response = refused.response
                break
        else:
            response = Response(404, errors_body([ROUTE_NOT_FOUND], {}))
        version = call.path.split("/")[1] if call.path.count("/") > 1 else ""
        response.headers.setdefault("x-current-api-version", CURRENT_VERSION)
        if version.isdigit() and version != CURRENT_VERSION:
            response.headers["x-api-warn"] = (
                f"Version {version} of the Ads API is not the current version "
                f"({CURRENT_VERSION}); please migrate."
            )
        return response

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
        with self.world.lock:
            account = self.world.accounts.get(account_id)
        if account is None or user.user_id not in account.users:
            raise _no_access(user.user_id, account_id)
        return account

    def _user_rate_headers(self, key: str) -> dict[str, str]:
        now = time.time()
        with self.world.lock:
            window = self.world.request_window(key, now)
            window.used += 1
            return {
                "x-rate-limit-limit": str(USER_REQUEST_LIMIT),
                "x-rate-limit-remaining": str(max(0, USER_REQUEST_LIMIT - window.used)),
                "x-rate-limit-reset": str(window.reset_at),
            }

    # -- conversions -----------------------------------------------------------------------

    def _authenticate_conversions(self, call: Call, pixel: Pixel | None, pixel_id: str) -> str:
        token = call.headers.get("X-Pixel-Token")
        if token is not None:
            if pixel is None or not pixel.pixel_token or token != pixel.pixel_token:
                raise refuse(401, [NOT_AUTHENTICATED])
            return "pixel_token"
        user = self._user(call)
        if pixel is None:
            raise refuse(
                404,
                [rules.error("NOT_FOUND", "The requested resource could not be found", "pixel_id")],
            )
        account = self._account_for(user, pixel.account_id)
        if not SENDING_PERMISSIONS & set(account.users[user.user_id]):
            message = (
                f"User {user.user_id} needs AD_MANAGER or ACCOUNT_ADMIN access to account "
                f"{account.account_id} to send conversions"
            )
            raise refuse(403, [rules.error("UNAUTHORIZED_ACCESS", message, None)])
        return "oauth"

    def conversions(self, call: Call, match: re.Match[str]) -> Response:
        fault = self.faults.next()
        if fault == "reset":
            return Response(0, reset=True)
        if fault == "500":
            error = rules.error("INTERNAL_ERROR", "Internal error", None)
            return Response(500, errors_body([error], {}))
        if fault == "503":
            error = rules.error("SERVICE_UNAVAILABLE", "Service unavailable", None)
            headers = {"retry-after": str(self.faults.retry_after_seconds)}
            return Response(503, errors_body([error], {}), headers)
        if fault == "429":
            reset = int(time.time()) + self.faults.rate_limit_reset_seconds
            headers = {
                "x-account-rate-limit-limit": str(self.world.budget_events),
                "x-account-rate-limit-remaining": "0",
                "x-account-rate-limit-reset": str(reset),
            }
            error = rules.error("TOO_MANY_REQUESTS", "Rate limit exceeded", None)
            return Response(429, errors_body([error], {}), headers)
        response = self._conversions(call, match.group(2))
        if fault == "timeout":
            response.delay = self.faults.slow_seconds
        return response

    def _conversions(self, call: Call, pixel_id: str) -> Response:
        with self.world.lock:
            pixel = self.world.pixels.get(pixel_id)
        auth = self._authenticate_conversions(call, pixel, pixel_id)
        if pixel is None:  # authentication already refused unknown pixels
            raise refuse(404, [ROUTE_NOT_FOUND])
        params = {"account_id": pixel.account_id}
        try:
            body = json.loads(call.body or b"null")
        except ValueError:
            error = rules.invalid("Request body is not valid JSON", "conversions")  # inferred
            return Response(400, errors_body([error], params), auth=auth)
        conversions = body.get("conversions") if isinstance(body, dict) else None
        events = len(conversions) if isinstance(conversions, list) else 0
        headers = self._user_rate_headers(auth + ":" + pixel_id)
        now = time.time()
        with self.world.lock:
            window = self.world.event_window(pixel.account_id, now)
            over = window.used + events > self.world.budget_events
            if not over:
                # Every event of an admitted request counts, rejected or not.
                window.used += events
            headers.update(
                {
                    "x-account-rate-limit-limit": str(self.world.budget_events),
                    "x-account-rate-limit-remaining": str(
                        max(0, self.world.budget_events - window.used)
                    ),
                    "x-account-rate-limit-reset": str(window.reset_at),
                }
            )
            if over:
                error = rules.error("TOO_MANY_REQUESTS", "Rate limit exceeded", None)
                return Response(
                    429, errors_body([error], params), headers, events=events, auth=auth
                )
            errors = rules.check_request(self.world, pixel, body)
            if errors:
                status = 404 if any(e["code"] == "NOT_FOUND" for e in errors) else 400
                return Response(
                    status, errors_body(errors, params), headers, events=events, auth=auth
                )
            debug_id = str(uuid.uuid4())
            self.world.record_conversions(pixel, conversions or [], debug_id, now)
        data = {"conversions_processed": events, "debug_id": debug_id}
        return Response(200, envelope(data, params), headers, events=events, auth=auth)

    # -- accounts --------------------------------------------------------------------------

    def _page(self, call: Call, items: list[dict[str, Any]], params: dict[str, Any]) -> Response:
        try:
            count = parse_count(call.query.get("count"))
        except ParamError as exc:
            raise refuse(400, exc.errors, params) from None
        offset = _decode_cursor(call.query["cursor"]) if call.query.get("cursor") else 0
        page = items[offset : offset + count]
        more = offset + count < len(items)
        next_cursor = _encode_cursor(offset + count) if more else None
        body = envelope(page, params, next_cursor=next_cursor)
        return Response(200, body, auth="oauth")

    def accounts(self, call: Call, match: re.Match[str]) -> Response:
        user = self._user(call)
        with self.world.lock:
            mine = [a.as_json() for a in self.world.accounts.values() if user.user_id in a.users]
        response = self._page(call, mine, {})
        response.headers.update(self._user_rate_headers(user.user_id))
        return response

    def user_access(self, call: Call, match: re.Match[str]) -> Response:
        user = self._user(call)
        account = self._account_for(user, match.group(2))
        data = {"user_id": user.user_id, "permissions": list(account.users[user.user_id])}
        response = Response(200, envelope(data, {"account_id": account.account_id}), auth="oauth")
        response.headers.update(self._user_rate_headers(user.user_id))
        return response

    # -- web event tags --------------------------------------------------------------------

    def _tag_context(self, call: Call, match: re.Match[str]) -> tuple[User, Account]:
        user = self._user(call)
        return user, self._account_for(user, match.group(2))

    def list_tags(self, call: Call, match: re.Match[str]) -> Response:
        user, account = self._tag_context(call, match)
        params: dict[str, Any] = {"account_id": account.account_id}
        with_deleted = call.query.get("with_deleted") == "true"
        with self.world.lock:
            tags = [t for t in account.tags.values() if with_deleted or not t.deleted]
        if call.query.get("web_event_tag_ids"):
            wanted = call.query["web_event_tag_ids"].split(",")
            if len(wanted) > MAX_TAG_IDS:
                message = f"Expected at most {MAX_TAG_IDS} ids for web_event_tag_ids"  # inferred
                raise refuse(400, [rules.invalid(message, "web_event_tag_ids")], params)
            params["web_event_tag_ids"] = wanted
            tags = [t for t in tags if t.id in set(wanted)]
        sort_by = call.query.get("sort_by", "created_at-asc")
        field_name, _, direction = sort_by.partition("-")
        if field_name not in ("created_at", "name", "id") or direction not in ("asc", "desc"):
            message = f'Expected a sortable field with -asc or -desc, got "{sort_by}" for sort_by'
            raise refuse(400, [rules.invalid(message, "sort_by")], params)
        tags.sort(key=lambda t: (getattr(t, field_name), t.id), reverse=direction == "desc")
        response = self._page(call, [t.as_json() for t in tags], params)
        response.headers.update(self._user_rate_headers(user.user_id))
        return response

    def _find_tag(self, account: Account, tag_id: str, *, with_deleted: bool) -> Any:
        tag = account.tags.get(tag_id)
        if tag is None or (tag.deleted and not with_deleted):
            message = f"web_event_tag_id ({tag_id}) was not found"  # inferred wording
            params = {"account_id": account.account_id, "web_event_tag_id": tag_id}
            raise refuse(404, [rules.error("NOT_FOUND", message, "web_event_tag_id")], params)
        return tag

    def get_tag(self, call: Call, match: re.Match[str]) -> Response:
        _, account = self._tag_context(call, match)
        with_deleted = call.query.get("with_deleted") == "true"
        with self.world.lock:
            tag = self._find_tag(account, match.group(3), with_deleted=with_deleted)
            data = tag.as_json()
        params = {"account_id": account.account_id, "web_event_tag_id": tag.id}
        return Response(200, envelope(data, params), auth="oauth")

    def create_tag(self, call: Call, match: re.Match[str]) -> Response:
        _, account = self._tag_context(call, match)
        params: dict[str, Any] = {"account_id": account.account_id, **call.query}
        try:
            fields = parse_tag_params(call.query, create=True)
            check_windows(fields["click_window"], fields["view_through_window"])
        except ParamError as exc:
            raise refuse(400, exc.errors, params) from None
        data = self.world.add_tag(account.account_id, **fields)
        return Response(200, envelope(data, params), auth="oauth")

    def update_tag(self, call: Call, match: re.Match[str]) -> Response:
        _, account = self._tag_context(call, match)
        params: dict[str, Any] = {
            "account_id": account.account_id,
            "web_event_tag_id": match.group(3),
            **call.query,
        }
        with self.world.lock:
            tag = self._find_tag(account, match.group(3), with_deleted=False)
            try:
                fields = parse_tag_params(call.query, create=False)
                check_windows(
                    fields.get("click_window", tag.click_window),
                    fields.get("view_through_window", tag.view_through_window),
                )
            except ParamError as exc:
                raise refuse(400, exc.errors, params) from None
            for name, value in fields.items():
                setattr(tag, name, value)
            data = tag.as_json()
        return Response(200, envelope(data, params), auth="oauth")

    def delete_tag(self, call: Call, match: re.Match[str]) -> Response:
        _, account = self._tag_context(call, match)
        params = {"account_id": account.account_id, "web_event_tag_id": match.group(3)}
        with self.world.lock:
            tag = self._find_tag(account, match.group(3), with_deleted=False)
            tag.deleted = True
            data = tag.as_json()
        return Response(200, envelope(data, params), auth="oauth")

    # -- emulator-only ---------------------------------------------------------------------

    def inspect_received(self, call: Call, match: re.Match[str]) -> Response:
        since = int(call.query.get("since", "0") or 0)
        with self.world.lock:
            records = self.world.received[since:]
            total = len(self.world.received)
        return Response(200, {"data": records, "total": total})

    def inspect_stats(self, call: Call, match: re.Match[str]) -> Response:
        with self.world.lock:
            statuses: dict[str, int] = {}
            for entry in self.world.requests:
                statuses[str(entry["status"])] = statuses.get(str(entry["status"]), 0) + 1
            data = {
                "received": len(self.world.received),
                "requests": len(self.world.requests),
                "by_status": statuses,
            }
        return Response(200, {"data": data})

    def inspect_reset(self, call: Call, match: re.Match[str]) -> Response:
        self.world.reset_records()
        return Response(200, {"data": {"reset": True}})
