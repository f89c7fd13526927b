"""Privacy proof: raw emails and phone numbers enter through every entry point and are
found nowhere afterwards: not in any table, not in any log record (every logger at DEBUG,
third-party HTTP and OAuth libraries included), not in error messages, not in the admin,
not in API answers, and not in what X (the emulator) receives.

Entry points: SOURCES signals (the test shop's Order and Member, saved directly and
through the shop's views), ``track()``, the REST API (one object and a list), and the
admin (which has no form that accepts an identifier; asserted below).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_xconversions import delivery, track
from django_xconversions.emulator import EmulatorServer
from django_xconversions.identifiers import hash_email, hash_phone, is_sha256_hex
from django_xconversions.models import Conversion, EventTag, Pixel
from tests.shop.models import Member, Order

from .conftest import mirror_tag

pytestmark = pytest.mark.django_db

PHONE = "+1 (415) 555-0133"
BAD_EMAIL = "Broken.Probe@@Example..org"
BAD_PHONE = "+1 (415) 555-01"  # too short to be a number


def email(entry_point: str) -> str:
    """A distinctive raw address per entry point (all share the "privacy.probe" stem)."""
    return f"Privacy.Probe+{entry_point}@Example.org"


# What must never be found: the raw forms and their simple normalisations.
NEEDLES = (
    "privacy.probe",  # any of the raw addresses, lower-cased (the check is case-insensitive)
    "broken.probe",
    PHONE.lower(),
    "+14155550133",  # E.164
    "14155550133",  # digits only
    "4155550133",  # national digits
    "555-0133",
    "555-01",
    "(415)",
)
# Loggers that are quiet by default but talk at DEBUG: HTTP and OAuth internals.
NOISY_LOGGERS = (
    "",
    "django",
    "django.request",
    "django.db.backends",
    "requests",
    "urllib3",
    "oauthlib",
    "requests_oauthlib",
    "django_xconversions",
)


def found_in(text: str) -> list[str]:
    lowered = text.lower()
    return [needle for needle in NEEDLES if needle in lowered]


def as_text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def scan_tables() -> dict[str, list[str]]:
    """Every table of the database, every column read as text: table -> needles found."""
    hits: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            text = "\n".join(" ".join(as_text(v) for v in row) for row in cursor.fetchall())
            found = found_in(text)
            if found:
                hits[table] = found
    return hits


HOST_TABLES = (Order._meta.db_table, Member._meta.db_table)


def host_query(record: logging.LogRecord) -> bool:
    """SQL the shop itself ran on its own tables (an order holds its buyer's address)."""
    sql = str(getattr(record, "sql", ""))
    return record.name == "django.db.backends" and any(t in sql for t in HOST_TABLES)


def logged_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if not host_query(record)]


def log_text(records: list[logging.LogRecord]) -> str:
    # The message, plus every attribute of every record (args, exc_info, extras).
    return "\n".join(f"{r.getMessage()}\n{r.__dict__!r}" for r in records)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    for name in NOISY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    # SQL is logged at DEBUG only when DEBUG is on: turn the cursor debug on, so a raw
    # value in any query parameter would be caught too.
    previous = connection.force_debug_cursor
    connection.force_debug_cursor = True
    try:
        yield caplog
    finally:
        connection.force_debug_cursor = previous


@pytest.fixture
def tags(emulator: EmulatorServer, pixel: Pixel) -> dict[str, EventTag]:
    """purchase and sign_up, known to the emulator, so every conversion can be sent."""
    cache.clear()  # the API throttle's history
    return {
        "purchase": mirror_tag(emulator, pixel, "purchase", "PURCHASE"),
        "sign_up": mirror_tag(emulator, pixel, "sign_up", "SIGN_UP"),
    }


@pytest.fixture
def staff_client(django_user_model: Any) -> Client:
    user = django_user_model.objects.create(
        username="privacy-admin", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(user)
    return client


def test_raw_identifiers_are_stored_logged_shown_and_sent_nowhere(
    debug_logs: pytest.LogCaptureFixture,
    emulator: EmulatorServer,
    tags: dict[str, EventTag],
    staff_client: Client,
) -> None:
    # -- 1. signals: the shop's models, saved directly and through its views --------------
    order = Order.objects.create(email=email("order"), phone=PHONE, total="12.50")
    order.status = "paid"
    order.save()
    Member.objects.create(email=email("member"), phone=PHONE)
    visitor = Client()
    response = visitor.post(
        "/shop/sign-up/?twclid=privacyclick1",
        {"email": email("signup-view"), "phone": PHONE},
    )
    assert response.status_code == 200
    response = visitor.post("/shop/orders/", {"email": email("order-view"), "total": "3.00"})
    assert visitor.post(f"/shop/orders/{int(response.content)}/pay/").status_code == 200
    # Invalid values on a bound model: stored failed, the reason without the value.
    bad_order = Order.objects.create(email=BAD_EMAIL, phone=BAD_PHONE, status="paid")
    bad_row = Conversion.objects.get(conversion_id=f"shop.order:{bad_order.pk}")
    assert bad_row.status == "failed" and bad_row.error_reason == "invalid"
    assert "email" in bad_row.last_error and "phone" in bad_row.last_error
    assert found_in(bad_row.last_error) == []

    # -- 2. track() ---------------------------------------------------------------------
    tracked = track("purchase", email=email("track"), phone=PHONE, conversion_id="t-1")
    assert tracked.hashed_email == hash_email(email("track"))
    assert tracked.hashed_phone == hash_phone("+14155550133")
    with pytest.raises(ValidationError) as refused:
        track("purchase", email=BAD_EMAIL, phone=BAD_PHONE, conversion_id="t-bad")
    assert found_in(str(refused.value) + repr(refused.value.message_dict)) == []

    # -- 3. the REST API: one object, a list, and refused items ---------------------------
    api = reverse("xconversions_api:conversion-list")
    one = {"event": "sign_up", "email": email("api"), "phone": PHONE, "conversion_id": "a-1"}
    response = staff_client.post(api, one, content_type="application/json")
    assert response.status_code == 201, response.content
    assert found_in(response.content.decode()) == []
    many = [
        {"event": "purchase", "email": email(f"api-list-{n}"), "phone": PHONE, "value": n}
        for n in range(3)
    ]
    response = staff_client.post(api, many, content_type="application/json")
    assert response.status_code == 201, response.content
    assert found_in(response.content.decode()) == []
    for bad in (
        {"event": "purchase", "email": BAD_EMAIL},
        {"event": "purchase", "phone": BAD_PHONE},
        [{"event": "purchase", "email": email("api-list-ok")}, {"event": "x", "email": BAD_EMAIL}],
        {"event": "purchase", "email": email("api-unknown-field"), "emial": email("typo")},
    ):
        response = staff_client.post(api, bad, content_type="application/json")
        assert response.status_code == 400
        assert found_in(response.content.decode()) == [], response.content
    listed = staff_client.get(api)
    assert listed.status_code == 200 and found_in(listed.content.decode()) == []

    # -- 4. the admin: no form takes an identifier; pages showing conversions -------------
    rows = list(Conversion.objects.all())
    assert len(rows) >= 10
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "xconversions":
            continue
        form_fields = set(model_admin.get_form(_request(staff_client), None).base_fields)
        assert not form_fields & {"email", "phone", "hashed_email", "hashed_phone"}, model
    assert staff_client.get(reverse("admin:xconversions_conversion_add")).status_code == 403
    pages = [
        reverse("admin:index"),
        reverse("admin:xconversions_conversion_changelist"),
        reverse("admin:xconversions_conversion_changelist") + "?status=failed",
        reverse("admin:xconversions_deliveryattempt_changelist"),
        *(reverse("admin:xconversions_conversion_change", args=[row.pk]) for row in rows),
    ]
    for page in pages:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        assert found_in(response.content.decode()) == [], page
    # The hashes are what the admin shows.
    page = staff_client.get(reverse("admin:xconversions_conversion_change", args=[tracked.pk]))
    assert tracked.hashed_email in page.content.decode()

    # -- 5. send, from the admin's "Send now" action and the engine ----------------------
    pending = [r.pk for r in rows if r.status == "pending"]
    response = staff_client.post(
        reverse("admin:xconversions_conversion_changelist"),
        {"action": "send_now_action", "_selected_action": pending},
    )
    assert response.status_code == 302
    delivery.send_pending()
    assert set(Conversion.objects.values_list("status", flat=True)) == {"sent", "failed"}
    for page in pages[1:4]:
        assert found_in(staff_client.get(page).content.decode()) == []

    # X received hashes only.
    received = emulator.received
    assert len(received) == Conversion.objects.filter(status="sent").count() >= 9
    for record in received:
        identifiers = record["conversion"]["identifiers"]
        for identifier in identifiers:
            for key in ("hashed_email", "hashed_phone_number"):
                if key in identifier:
                    assert is_sha256_hex(identifier[key])
    phones = [
        i["hashed_phone_number"]
        for r in received
        for i in r["conversion"]["identifiers"]
        if "hashed_phone_number" in i
    ]
    assert phones and set(phones) == {hash_phone(PHONE)}
    assert found_in(json.dumps(received)) == []
    assert found_in(json.dumps(emulator.requests, default=str)) == []

    # -- 6. nothing anywhere: every table, every log record --------------------------------
    hits = scan_tables()
    # The shop's own tables hold the addresses it was given: that is the host's business
    # data, not ours, and it shows the scan does find them.
    assert set(hits) == {Order._meta.db_table, Member._meta.db_table}, hits
    records = logged_records(debug_logs)
    names = {r.name for r in records}
    # The capture worked: the HTTP library, our client and SQL all logged at DEBUG.
    assert {"urllib3.connectionpool", "django_xconversions.client"} <= names, names
    assert any(r.name == "django.db.backends" for r in records)
    # ... and the only records holding a raw value are the shop's SQL on its own tables.
    assert any(found_in(log_text([r])) for r in debug_logs.records if host_query(r))
    leaks = [r.getMessage()[:300] for r in records if found_in(log_text([r]))]
    assert leaks == []


def _request(client: Client) -> Any:
    """A request carrying the client's logged-in user, for ModelAdmin.get_form()."""
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    user_id = client.session["_auth_user_id"]
    request.user = get_user_model().objects.get(pk=user_id)
    return request
