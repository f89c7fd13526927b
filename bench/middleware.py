"""Cost of TwclidMiddleware per request, against the same stack without it.

    python bench/middleware.py --requests 20000 --repeat 5

Three handlers run the same trivial view through Django's full request handling
(SecurityMiddleware, SessionMiddleware with database sessions, CommonMiddleware, ...):
without TwclidMiddleware, with it on requests without ``?twclid=`` (the common case:
no query, no session write), and with it on landing requests carrying a twclid (one
session write each). Handlers run interleaved within each repeat; the ratios are
taken per repeat, and the JSON holds every repeat and the medians.
Writes bench/results/middleware.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common

TWCLID_MIDDLEWARE = "django_xconversions.middleware.TwclidMiddleware"
LANDING = {"twclid": "26l6412g5p4iyj65a3oyr1bh9n"}


def handler(with_twclid_middleware: bool) -> Any:
    from django.conf import settings
    from django.core.handlers.base import BaseHandler

    stack = [m for m in settings.MIDDLEWARE if m != TWCLID_MIDDLEWARE]
    if with_twclid_middleware:
        stack.insert(
            stack.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
            TWCLID_MIDDLEWARE,
        )
    settings.MIDDLEWARE = stack
    built = BaseHandler()
    built.load_middleware()
    return built


def per_request_us(built: Any, requests: list[Any]) -> float:
    started = time.perf_counter()
    for request in requests:
        response = built.get_response(request)
        assert response.status_code == 200, response.status_code
    return (time.perf_counter() - started) / len(requests) * 1e6


def make_requests(count: int, query: dict[str, str]) -> list[Any]:
    from django.test import RequestFactory

    factory = RequestFactory(HTTP_USER_AGENT="Mozilla/5.0 (bench)")
    return [factory.get("/bench/", query) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    common.setup_django("sqlite")
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import clear_url_caches, path

    settings.ROOT_URLCONF = __name__
    globals()["urlpatterns"] = [path("bench/", lambda request: HttpResponse("ok"))]
    clear_url_caches()
    without = handler(False)
    with_mw = handler(True)
    runs = []
    chunk = 250
    for _ in range(args.repeat):
        # Alternate small chunks so drift on a noisy machine hits all three alike.
        totals = {"plain": 0.0, "no_click": 0.0, "landing": 0.0}
        for _ in range(max(1, args.requests // chunk)):
            totals["plain"] += per_request_us(without, make_requests(chunk, {"page": "1"}))
            totals["no_click"] += per_request_us(with_mw, make_requests(chunk, {"page": "1"}))
            totals["landing"] += per_request_us(with_mw, make_requests(chunk // 10, LANDING))
        plain, no_click, landing = totals["plain"], totals["no_click"], totals["landing"]
        chunks = max(1, args.requests // chunk)
        runs.append(
            {
                "no_middleware_us": plain / chunks,
                "without_twclid_us": no_click / chunks,
                "with_twclid_us": landing / chunks,
                "added_without_twclid": no_click / plain - 1,
                "with_twclid_ratio": landing / plain,
            }
        )
    added = common.median([r["added_without_twclid"] for r in runs])
    common.write(
        "middleware",
        {
            "requests": args.requests,
            "runs": runs,
            "median_no_middleware_us": common.median([r["no_middleware_us"] for r in runs]),
            "median_without_twclid_us": common.median([r["without_twclid_us"] for r in runs]),
            "median_with_twclid_us": common.median([r["with_twclid_us"] for r in runs]),
            "median_added_without_twclid": added,
            "median_with_twclid_ratio": common.median([r["with_twclid_ratio"] for r in runs]),
            "targets": {"added_without_twclid": 0.05},
            "meets_targets": added <= 0.05,
        },
    )


if __name__ == "__main__":
    main()
