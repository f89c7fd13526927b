"""TwclidMiddleware: capture X's click id on landing and expose the request context.

Place it after SessionMiddleware. A request without ``?twclid=`` costs a dictionary
lookup: no session read, no session write, no database query. With one, the id is
checked (an invalid one is ignored) and, when the visitor has not refused tracking
(Sec-GPC, CONSENT_CHECK), stored in the session with its capture time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase

from django_xconversions import context

GetResponse = Callable[[HttpRequest], Any]


def has_twclid(request: HttpRequest) -> bool:
    # A substring test on the raw query string: parsing request.GET for every request
    # would cost more than the rest of the middleware.
    return context.QUERY_PARAMETER in request.META.get("QUERY_STRING", "")


def capture(request: HttpRequest, request_context: context.RequestContext) -> None:
    """Store this request's valid twclid, if any, when tracking is allowed."""
    if not has_twclid(request) or context.QUERY_PARAMETER not in request.GET:
        return
    twclid = request_context.url_twclid
    if twclid is not None and request_context.consent:
        context.remember_twclid(request, twclid)


class TwclidMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        request_context = context.RequestContext(request)
        token = context.enter(request_context)
        try:
            capture(request, request_context)
            response: HttpResponseBase = self.get_response(request)
        finally:
            context.leave(token)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        request_context = context.RequestContext(request)
        token = context.enter(request_context)
        try:
            if has_twclid(request):
                # Sessions and consent checks may touch the database: not on the loop.
                await sync_to_async(capture)(request, request_context)
            response: HttpResponseBase = await self.get_response(request)
        finally:
            context.leave(token)
        return response
