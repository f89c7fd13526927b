"""HTTP plumbing of the emulator and the ``EmulatorServer`` tests and demos start."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django_xconversions.emulator.api import Call, Response, XAdsApi
from django_xconversions.emulator.faults import FaultPlan
from django_xconversions.emulator.world import Clock, World


def dumps(body: Any) -> bytes:
    """Compact JSON with < and > escaped, as X writes it (its docs show \\u003Cusername\\u003E)."""
    text = json.dumps(body, separators=(",", ":"))
    if "<" in text or ">" in text:
        text = text.replace("<", "\\u003C").replace(">", "\\u003E")
    return text.encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler sleeping in a slow fault
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: XAdsApi, stopping: threading.Event) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.stopping = stopping
        # Open client connections, so stop() can cut idle keep-alive ones too.
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Connection resets (ours, on purpose, or the client's) are not errors worth printing.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pooled clients reuse connections
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (about 40 ms a response on Linux).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")  # no route takes it: ROUTE_NOT_FOUND, like any unknown route

    def _dispatch(self, method: str) -> None:
        started, arrived = self.server.api.world.clock(), time.monotonic()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        call = Call(
            method=method,
            path=split.path.rstrip("/") or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={name.title(): value for name, value in self.headers.items()},
            body=body,
            # The URI the client signed: scheme and host as it addressed us.
            uri=f"http://{host}{self.path}",
        )
        response = self.server.api.handle(call)
        # Logged before answering, so a client that has its answer sees it in the log.
        self._log(call, response, started, arrived)
        if response.delay and self.server.stopping.wait(response.delay):
            response.reset = True  # stopping: drop the connection rather than answer
        if response.reset:
            self._reset()
        else:
            self._answer(response)

    def _reset(self) -> None:
        # SO_LINGER 0 turns close() into a TCP RST, what a dropped connection looks like.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _answer(self, response: Response) -> None:
        if response.raw is not None:
            payload = response.raw
        else:
            payload = dumps(response.body) if response.body is not None else b""
        try:
            self.send_response(response.status)
            self.send_header(
                "Content-Type", response.content_type or "application/json;charset=utf-8"
            )
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _log(self, call: Call, response: Response, started: float, arrived: float) -> None:
        first = call.path.split("/")[1] if call.path.count("/") > 1 else ""
        entry = {
            "method": call.method,
            "path": call.path,
            "version": first if first.isdigit() else None,
            "query": call.query,
            "content_type": call.headers.get("Content-Type", ""),
            "body_length": len(call.body),
            "status": None if response.reset else response.status,
            "events": response.events,
            "auth": response.auth,
            "time": started,
            # time.monotonic() on arrival: tests compare it with their own monotonic clock
            # ("no request for pixel P after T"); on Linux it is shared by all processes.
            "monotonic": arrived,
            "duration": time.monotonic() - arrived,
            # Seconds the answer is held back (delay_seconds, a "timeout" fault): the batch
            # is processed already.
            "delay": response.delay,
            # Conversions requests: the pixel in the path and the batch's conversion_ids
            # (whatever the answer); None elsewhere.
            "pixel_id": response.pixel_id,
            "conversion_ids": response.conversion_ids,
        }
        world = self.server.api.world
        with world.lock:
            world.requests.append(entry)


class EmulatorServer:
    """The emulated X Ads API on a background thread.

    ``EmulatorServer(port=0)`` takes an ephemeral port; ``url`` says where it listens.
    ``clock`` (default ``time.time``) is the emulated X's "now": rate-limit windows and
    their reset headers, OAuth timestamp and nonce checks, request-token expiry. A test
    passes a clock it moves forward instead of sleeping; ``clock`` can also be swapped on a
    running server.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, clock: Clock = time.time) -> None:
        self.host = host
        self.requested_port = port
        self.world = World(clock)
        self.faults = FaultPlan()
        self._stopping = threading.Event()
        self.api = XAdsApi(self.world, self.faults, self._stopping)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def clock(self) -> Clock:
        return self.world.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.world.clock = clock

    # Seeding delegates to the world (see world.py).
    def add_app(self, consumer_key: str, consumer_secret: str) -> None:
        self.world.add_app(consumer_key, consumer_secret)

    def add_user(
        self, user_id: str, access_token: str, access_token_secret: str, screen_name: str = ""
    ) -> None:
        self.world.add_user(user_id, access_token, access_token_secret, screen_name)

    def add_account(
        self, account_id: str, name: str = "", users: dict[str, list[str]] | None = None
    ) -> None:
        self.world.add_account(account_id, name, users)

    def add_pixel(self, account_id: str, pixel_id: str, pixel_token: str | None = None) -> None:
        self.world.add_pixel(account_id, pixel_id, pixel_token)

    def add_tag(self, account_id: str, **fields: Any) -> dict[str, Any]:
        """Create a web event tag (fields as ``World.add_tag``); returns it as X does. Its
        website_tag_id is the event id conversions name."""
        return self.world.add_tag(account_id, **fields)

    def set_budget(self, events: int, window_seconds: float) -> None:
        """Events per account per fixed window (X: 60,000 per 15 minutes)."""
        self.world.set_budget(events, window_seconds)

    def reject_event_ids(self, *conversion_ids: str) -> None:
        """Reject, as X rejects a malformed event, any batch holding these conversion_ids."""
        with self.world.lock:
            self.world.rejected_conversion_ids.update(conversion_ids)

    def record_ids_only(self) -> None:
        """Keep only conversion_ids of what is received (for runs of millions of events)."""
        self.world.record_mode = "ids"

    @property
    def received(self) -> list[dict[str, Any]]:
        with self.world.lock:
            return list(self.world.received)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request, logged once processed (before a delayed answer goes out): method,
        path, status (None: reset), events, time, monotonic, pixel_id, conversion_ids, ..."""
        with self.world.lock:
            return list(self.world.requests)

    def conversion_requests(
        self, pixel_id: str | None = None, *, after: float | None = None
    ) -> list[dict[str, Any]]:
        """The log of conversions requests, in order of arrival: of one pixel if given, and
        only those that arrived after ``after`` (a ``time.monotonic()`` value) if given.
        Refused and reset requests are included (status 401, 429, None, ...)."""
        return self.world.conversion_requests(pixel_id, after)

    def requests_per_pixel(self, *, after: float | None = None) -> dict[str, int]:
        """How many conversions requests each pixel sent (arrived after ``after``)."""
        counts: dict[str, int] = {}
        for entry in self.conversion_requests(after=after):
            counts[entry["pixel_id"]] = counts.get(entry["pixel_id"], 0) + 1
        return counts

    def reset_records(self) -> None:
        self.world.reset_records()

    # 3-legged OAuth (see oauth_flow.py).
    def allow_callback(self, consumer_key: str, url: str) -> None:
        """Put ``url`` on the app's callback allowlist (X: exact match, no query, no
        localhost); request tokens for other callbacks are refused with X's 403."""
        self.api.oauth_flow.allow_callback(consumer_key, url)

    def allow_loopback_callbacks(self, consumer_key: str) -> None:
        """Demo mode (local development, not X's behaviour): the app also accepts any
        callback on 127.0.0.1, localhost or [::1], at any port and path."""
        self.api.oauth_flow.allow_loopback_callbacks(consumer_key)

    def authorize(self, request_token: str, user_id: str) -> str:
        """Approve a request token as ``user_id``, as the authorize page does; returns the
        oauth_verifier (a 7-digit PIN for an oob token)."""
        return self.api.oauth_flow.authorize(request_token, user_id)

    def authorize_url(self, request_token: str) -> str:
        return f"{self.url}/oauth/authorize?{urlencode({'oauth_token': request_token})}"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmulatorServer:
        if self._httpd is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.requested_port), self.api, self._stopping)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"x-ads-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; returns promptly even while handlers sleep in slow faults."""
        self._stopping.set()  # wakes sleeping handlers; they drop their connections
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()  # idle keep-alive connections would hold their threads
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
