"""Cost of TwclidMiddleware per request, against the same stack without it.

    python bench/middleware.py --requests 20000 --repeat 7

Two WSGI handlers run the same trivial view through Django's full request handling, as
a WSGI server calls it (request and response objects, request_started/finished signals,
SecurityMiddleware, SessionMiddleware with database sessions, CommonMiddleware, ...):
A without TwclidMiddleware, B with it, both on requests without ``?twclid=`` (the common
case). Each repeat runs them in alternating chunks, ABAB... in even repeats and BABA...
in odd ones, so drift on a noisy machine hits both alike and neither always goes first;
the garbage collector runs between chunks, never inside one. The added cost is the median
of the per-repeat ratios B / A - 1. Landing requests carrying a twclid (one session write
each) are timed after each repeat's pairs, for information.

Queries are counted (CaptureQueriesContext) on a sample of each kind: requests without a
twclid must cost no query at all. Writes bench/results/middleware.json (or --output).
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import time
from typing import Any

import common

TWCLID_MIDDLEWARE = "django_xconversions.middleware.TwclidMiddleware"
LANDING = {"twclid": "26l6412g5p4iyj65a3oyr1bh9n"}
# Requests per timed chunk: small, so A and B alternate often (about 10 ms each).
CHUNK = 50


def handler(with_twclid_middleware: bool) -> Any:
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    stack = [m for m in settings.MIDDLEWARE if m != TWCLID_MIDDLEWARE]
    if with_twclid_middleware:
        stack.insert(
            stack.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
            TWCLID_MIDDLEWARE,
        )
    settings.MIDDLEWARE = stack
    return WSGIHandler()  # loads the middleware named now


def make_requests(count: int, query: dict[str, str]) -> list[dict[str, Any]]:
    """WSGI environs of GET /bench/ with ``query``, as a server hands them over."""
    from urllib.parse import urlencode

    return [
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/bench/",
            "QUERY_STRING": urlencode(query),
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "testserver",
            "HTTP_USER_AGENT": "Mozilla/5.0 (bench)",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for _ in range(count)
    ]


def serve(app: Any, environ: dict[str, Any]) -> None:
    """One request through ``app``, its body consumed and closed, as a server does."""
    statuses: list[str] = []
    response = app(environ, lambda status, headers: statuses.append(status))
    for _chunk in response:
        pass
    response.close()
    if statuses != ["200 OK"]:
        raise SystemExit(f"unexpected status {statuses}")


def timed_chunk(built: Any, requests: list[dict[str, Any]]) -> float:
    """Seconds for ``requests`` through ``built``, the collector held off while timing."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for environ in requests:
            serve(built, environ)
        return time.perf_counter() - started
    finally:
        gc.enable()


def queries_per_request(built: Any, query: dict[str, str], count: int = 50) -> float:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    requests = make_requests(count, query)
    with CaptureQueriesContext(connection) as captured:
        for environ in requests:
            serve(built, environ)
    return len(captured.captured_queries) / count


def one_repeat(plain: Any, with_mw: Any, total: int, b_first: bool) -> dict[str, float]:
    seconds = {"plain": 0.0, "no_click": 0.0}
    chunks = max(1, total // CHUNK)
    for _ in range(chunks):
        pair = [("plain", plain), ("no_click", with_mw)]
        for name, built in reversed(pair) if b_first else pair:
            seconds[name] += timed_chunk(built, make_requests(CHUNK, {"page": "1"}))
    # Landing requests write the session: timed after the pairs, never between them.
    landing = make_requests(max(1, total // 20), LANDING)
    landing_us = timed_chunk(with_mw, landing) / len(landing) * 1e6
    plain_us = seconds["plain"] / (chunks * CHUNK) * 1e6
    no_click_us = seconds["no_click"] / (chunks * CHUNK) * 1e6
    return {
        "order": "BABA" if b_first else "ABAB",
        "no_middleware_us": plain_us,
        "without_twclid_us": no_click_us,
        "with_twclid_us": landing_us,
        "added_without_twclid": no_click_us / plain_us - 1,
        "with_twclid_ratio": landing_us / plain_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="per handler and repeat")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--output", help="JSON path (default bench/results/middleware.json)")
    args = parser.parse_args()
    common.setup_django("sqlite")
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import clear_url_caches, path

    settings.ROOT_URLCONF = __name__
    globals()["urlpatterns"] = [path("bench/", lambda request: HttpResponse("ok"))]
    clear_url_caches()
    plain = handler(False)
    with_mw = handler(True)
    queries = {
        "no_middleware": queries_per_request(plain, {"page": "1"}),
        "without_twclid": queries_per_request(with_mw, {"page": "1"}),
        "with_twclid": queries_per_request(with_mw, LANDING),
    }
    if queries["without_twclid"] != 0:
        raise SystemExit(f"requests without a twclid ran queries: {queries}")
    # A warm-up repeat, not recorded: imports, caches and the allocator settle. Then
    # everything alive is frozen, so each chunk's collection only sees that chunk's garbage.
    one_repeat(plain, with_mw, min(args.requests, 2_000), b_first=False)
    gc.collect()
    gc.freeze()
    runs = [
        one_repeat(plain, with_mw, args.requests, b_first=repeat % 2 == 1)
        for repeat in range(args.repeat)
    ]
    added = common.median([r["added_without_twclid"] for r in runs])
    common.write(
        "middleware",
        {
            "requests_per_repeat": args.requests,
            "chunk": CHUNK,
            "runs": runs,
            "queries_per_request": queries,
            "median_no_middleware_us": common.median([r["no_middleware_us"] for r in runs]),
            "median_without_twclid_us": common.median([r["without_twclid_us"] for r in runs]),
            "median_with_twclid_us": common.median([r["with_twclid_us"] for r in runs]),
            "median_added_without_twclid": added,
            "added_without_twclid_range": [
                min(r["added_without_twclid"] for r in runs),
                max(r["added_without_twclid"] for r in runs),
            ],
            "median_with_twclid_ratio": common.median([r["with_twclid_ratio"] for r in runs]),
            "targets": [
                common.target("added without twclid (median of repeats)", added, "<=", 0.05),
                common.target(
                    "queries per request without twclid", queries["without_twclid"], "<=", 0
                ),
            ],
        },
        args.output,
    )


if __name__ == "__main__":
    main()
