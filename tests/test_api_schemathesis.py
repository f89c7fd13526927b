"""Schemathesis against the API's own OpenAPI schema, in process through Django's WSGI app.

Every operation of the schema (drf-spectacular, served at the API's ``schema/`` route) gets
schema-valid and schema-violating requests, as a staff user; none may answer 5xx. Fixed
seed, derandomized and bounded, so the run is short and the same every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import reverse
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from django_xconversions.models import EventTag

from .conftest import configure

STAFF = "schemathesis-staff"
HEADER = "X-Test-Staff"
AUTH = {HEADER: STAFF}
MAX_EXAMPLES = 25


class StaffHeaderAuthentication(BaseAuthentication):
    """Test only: the user named in X-Test-Staff (no session, so no CSRF in the way)."""

    def authenticate(self, request: Request) -> tuple[User, None] | None:
        name = request.META.get("HTTP_X_TEST_STAFF")
        if not name:
            return None
        return User.objects.get(username=name), None


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """Django's WSGI app in the test's transaction: as Django's test client does, keep
    the per-request connection clean-up from closing the connection (and with it the
    test transaction, on PostgreSQL)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(db: None, settings: Any, tag: EventTag, wsgi_app: WSGIHandler) -> Any:
    User.objects.create(username=STAFF, is_staff=True, is_superuser=True)
    configure(
        settings,
        API_AUTHENTICATION_CLASSES=[StaffHeaderAuthentication],
        API_THROTTLE_RATE=None,  # hundreds of requests in a row
    )
    cache.clear()
    schema = schemathesis.openapi.from_wsgi(
        reverse("xconversions_api:schema") + "?format=json", wsgi_app, headers=AUTH
    )
    return schema


def operations(schema: Any) -> list[Any]:
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()  # an error here means the schema itself is broken
        found.append(operation)
    return found


# Driven by hand rather than with schemathesis.pytest.from_fixture(), which does not run
# under this pytest version; the same strategies, calls and check.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_5xx(api_schema: Any, mode: GenerationMode) -> None:
    found = operations(api_schema)
    labels = {operation.label for operation in found}
    assert {"GET /x/conversions/", "POST /x/conversions/", "GET /x/health/"} <= labels, labels
    nothing_to_negate = set()
    statuses: dict[str, set[int]] = {}
    for operation in found:

        @hypothesis.seed(20250131)
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            response = case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
            statuses.setdefault(case.operation.label, set()).add(response.status_code)

        try:
            call()
        except hypothesis.errors.Unsatisfiable:
            # An operation with no parameter and no body has no invalid request.
            assert mode is GenerationMode.NEGATIVE, operation.label
            nothing_to_negate.add(operation.label)
    assert not nothing_to_negate & {"GET /x/conversions/", "POST /x/conversions/"}
    # Authenticated as staff throughout: requests reached the views.
    seen = set().union(*statuses.values())
    assert not seen & {401, 403}, statuses
    if mode is GenerationMode.POSITIVE:
        assert 200 in statuses["GET /x/conversions/"], statuses
