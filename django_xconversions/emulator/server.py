"""HTTP plumbing of the emulator and the ``EmulatorServer`` tests and demos start."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django_xconversions.emulator.api import Call, Response, XAdsApi
from django_xconversions.emulator.faults import FaultPlan
from django_xconversions.emulator.world import World


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler sleeping in a slow fault
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: XAdsApi, stopping: threading.Event) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.stopping = stopping

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

    def _dispatch(self, method: str) -> None:
        started = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}"
        call = Call(
            method=method,
            path=split.path.rstrip("/") or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k: v for k, v in self.headers.items()},
            body=body,
            uri=f"http://{host}{self.path}",
        )
        response = self.server.api.handle(call)
        if response.delay:
            # A slow server: the request is still processed, only late.
            self.server.stopping.wait(response.delay)
        # Logged before answering, so a client that has its answer sees it in the log.
        self._log(call, response, started)
        if response.reset:
            self._reset()
        else:
            self._answer(response)

    def _reset(self) -> None:
        # SO_LINGER 0 turns close() into a TCP RST, what a dropped connection looks like.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _answer(self, response: Response) -> None:
        payload = json.dumps(response.body).encode() if response.body is not None else b""
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _log(self, call: Call, response: Response, started: float) -> None:
        world = self.server.api.world
        with world.lock:
            world.requests.append(
                {
                    "method": call.method,
                    "path": call.path,
                    "query": call.query,
                    "content_type": call.headers.get("Content-Type", ""),
                    "body_length": len(call.body),
                    "status": None if response.reset else response.status,
                    "events": response.events,
                    "auth": response.auth,
                    "time": started,
                    "duration": time.time() - started,
                }
            )


class EmulatorServer:
    """The emulated X Ads API on a background thread.

    ``EmulatorServer(port=0)`` takes an ephemeral port; ``url`` says where it listens.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self.world = World()
        self.faults = FaultPlan()
        self.api = XAdsApi(self.world, self.faults)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Seeding delegates to the world (see world.py for the arguments).
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
        return self.world.add_tag(account_id, **fields)

    def set_budget(self, events: int, window_seconds: float) -> None:
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
        with self.world.lock:
            return list(self.world.requests)

    def reset_records(self) -> None:
        self.world.reset_records()

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
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.requested_port), self.api, self._stopping)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread (the command-line entry point)."""
        self._httpd = _HTTPServer((self.host, self.requested_port), self.api, self._stopping)
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            if self._thread is not None:
                self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
