"""The REST API: recording (all or nothing), listing, tags, health, access, schema, fuzz."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from django_xconversions.api.schema import XConversionsSchemaGenerator
from django_xconversions.health import health
from django_xconversions.identifiers import hash_email
from django_xconversions.models import (
    AdAccount,
    Conversion,
    DeliveryAttempt,
    EventTag,
    Pixel,
    WorkerHeartbeat,
)

pytestmark = pytest.mark.django_db

CONVERSIONS = reverse("xconversions_api:conversion-list")
TAGS = reverse("xconversions_api:eventtag-list")
HEALTH = reverse("xconversions_api:health")
SCHEMA = reverse("xconversions_api:schema")
EMAIL = "Buyer.Person@example.com"


def detail(pk: int) -> str:
    return reverse("xconversions_api:conversion-detail", args=[pk])


@pytest.fixture(autouse=True)
def _fresh_throttle(settings: Any) -> Iterator[None]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed
    cache.clear()  # throttle history lives in the default cache
    yield
    cache.clear()


def make_tag(pixel: Pixel, key: str, remote_id: str, tag_type: str = "PURCHASE") -> EventTag:
    return EventTag.objects.create(
        account=pixel.account,
        pixel=pixel,
        remote_id=remote_id,
        website_tag_id=f"w{remote_id}",
        key=key,
        name=key.title(),
        type=tag_type,
    )


@pytest.fixture
def tag(pixel: Pixel) -> EventTag:
    return make_tag(pixel, "purchase", "o3bk1")


@pytest.fixture
def signup_tag(pixel: Pixel) -> EventTag:
    return make_tag(pixel, "sign_up", "o3bk2", "SIGN_UP")


@pytest.fixture
def admin(django_user_model: Any) -> Any:
    # Every model permission (tests/test_api_permissions.py covers the partial cases).
    return django_user_model.objects.create(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def staff(admin: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin)
    return client


def item(n: int, **extra: Any) -> dict[str, Any]:
    return {"event": "purchase", "twclid": f"click{n}", "conversion_id": f"order:{n}", **extra}


def post(client: APIClient, body: Any) -> Any:
    return client.post(CONVERSIONS, json.dumps(body), content_type="application/json")


# -- recording -------------------------------------------------------------------------


def test_one_object_is_recorded_with_hashes_only(
    staff: APIClient, tag: EventTag, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = item(1, email=EMAIL, phone="(123) 456-7890", value="19.90", number_items=2)
    response = post(staff, body)
    assert response.status_code == 201, response.json()
    data = response.json()
    row = Conversion.objects.get()
    assert data["id"] == row.pk and data["created"] is True and data["status"] == "pending"
    assert data["event"] == "purchase" and data["conversion_id"] == "order:1"
    assert data["hashed_email"] == hash_email(EMAIL) == row.hashed_email
    text = response.content.decode() + caplog.text
    assert EMAIL.lower() not in text.lower() and "456-7890" not in text
    assert str(row.value) == "19.9000" and row.currency == "USD" and row.number_items == 2


def test_500_items_are_recorded_in_order(staff: APIClient, tag: EventTag) -> None:
    response = post(staff, [item(n) for n in range(500)])
    assert response.status_code == 201, response.content[:500]
    results = response.json()["results"]
    assert len(results) == 500 and Conversion.objects.count() == 500
    ids = dict(Conversion.objects.values_list("conversion_id", "pk"))
    assert [r["id"] for r in results] == [ids[f"order:{n}"] for n in range(500)]
    assert all(r["created"] for r in results)


def test_one_bad_item_rejects_the_whole_list(staff: APIClient, tag: EventTag) -> None:
    body = [item(n) for n in range(499)]
    body.insert(3, item(999, email="not-an-email"))
    response = post(staff, body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["3"] and list(errors["3"]) == ["email"]
    assert "not a valid address" in errors["3"]["email"][0]
    assert "not-an-email" not in response.content.decode()
    assert Conversion.objects.count() == 0


def test_errors_name_every_index_and_field(staff: APIClient, tag: EventTag) -> None:
    body = [
        item(0),
        {"event": "nope", "twclid": "a"},
        item(2, value="-1", currency="EURO"),
        item(3, number_items="many"),
        "not an object",
        item(5, emial="x@example.com"),
        {"event": "purchase"},
        None,
    ]
    response = post(staff, body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"1", "2", "3", "4", "5", "6", "7"}
    assert "No event tag has the key 'nope'" in errors["1"]["event"][0]
    assert set(errors["2"]) == {"value", "currency"}
    assert "at least 0" in errors["2"]["value"][0] and "ISO 4217" in errors["2"]["currency"][0]
    assert "valid integer" in errors["3"]["number_items"][0]
    assert "non_field_errors" in errors["4"]
    assert "Unknown field" in errors["5"]["emial"][0]
    assert "At least one user identifier" in errors["6"]["identifiers"][0]
    assert "may not be null" in errors["7"]["non_field_errors"][0]
    assert Conversion.objects.count() == 0


def test_single_object_errors_are_keyed_by_field(staff: APIClient, tag: EventTag) -> None:
    response = post(staff, {"event": "purchase", "email": "bad", "conversion_time": "yesterday"})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"conversion_time"}  # types are checked first
    response = post(staff, {"event": "purchase", "email": "bad", "ip_address": "1.2.3"})
    assert set(response.json()["errors"]) == {"email", "ip_address"}


def test_more_than_500_items_is_refused(staff: APIClient, tag: EventTag) -> None:
    response = post(staff, [item(n) for n in range(501)])
    assert response.status_code == 400
    assert "1 to 500 conversions, not 501" in response.json()["errors"]["body"][0]
    assert post(staff, []).status_code == 400
    assert Conversion.objects.count() == 0


@pytest.mark.parametrize("body", ["text", 5, None, True])
def test_a_body_that_is_not_an_object_or_list_is_refused(
    staff: APIClient, tag: EventTag, body: Any
) -> None:
    response = post(staff, body)
    assert response.status_code == 400 and "body" in response.json()["errors"]


def test_malformed_json_is_a_400_naming_the_body(staff: APIClient) -> None:
    response = staff.post(CONVERSIONS, "{nope", content_type="application/json")
    assert response.status_code == 400 and "must be JSON" in response.json()["errors"]["body"][0]


def test_same_conversion_id_returns_the_same_row(staff: APIClient, tag: EventTag) -> None:
    first = post(staff, item(7)).json()
    again = post(staff, item(7, value=5)).json()
    assert again["id"] == first["id"] and first["created"] and not again["created"]
    both = post(staff, [item(8), item(8)]).json()["results"]
    assert both[0]["id"] == both[1]["id"] and [r["created"] for r in both] == [True, False]
    assert Conversion.objects.count() == 2


def test_the_callers_request_is_not_the_visitors(staff: APIClient, tag: EventTag) -> None:
    # The calling server's address, user agent and GPC header must not end up on the row.
    response = staff.post(
        CONVERSIONS,
        json.dumps(item(1)),
        content_type="application/json",
        HTTP_USER_AGENT="billing-service/1.0",
        HTTP_SEC_GPC="1",
        REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 201
    row = Conversion.objects.get()
    assert row.status == "pending" and row.ip_address is None and row.user_agent == ""
    only_device = {"event": "purchase", "conversion_id": "x"}
    response = staff.post(CONVERSIONS, json.dumps(only_device), content_type="application/json")
    assert "identifiers" in response.json()["errors"]


def test_values_the_database_cannot_hold_are_400(staff: APIClient, tag: EventTag) -> None:
    cases = {
        "value": item(1, value=10**20),
        "number_items": item(2, number_items=2**40),
        "description": item(3, description="a\x00b"),
        "conversion_id": item(4, conversion_id="x\ud800"),
        "conversion_time": item(5, conversion_time="0001-01-01T00:00:00+09:00"),
        "contents": item(6, contents=[{"content_id": {"nested": 1}}]),
    }
    for field, body in cases.items():
        response = staff.post(
            CONVERSIONS,
            json.dumps(body, ensure_ascii=True),
            content_type="application/json",
        )
        assert response.status_code == 400, (field, response.content)
        assert field in response.json()["errors"], (field, response.json())
    assert Conversion.objects.count() == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"\ud800": 1},
        {"event": "purchase\ud800"},
        {"email": "a\udfff@example.com"},
        {"contents": [{"\ud800": "1"}]},
        {"contents": [{"bad\u0000key": "1"}]},
        {"contents": [{"content_id": "\ud800"}]},
    ],
)
def test_text_the_database_or_renderer_cannot_hold_is_400(
    staff: APIClient, tag: EventTag, extra: dict[str, Any]
) -> None:
    response = staff.post(
        CONVERSIONS, json.dumps(item(1, **extra)), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert Conversion.objects.count() == 0


# -- reading ---------------------------------------------------------------------------


def test_list_filters(staff: APIClient, tag: EventTag, signup_tag: EventTag) -> None:
    post(staff, [item(n) for n in range(3)])
    post(staff, [{**item(n), "event": "sign_up"} for n in range(3, 5)])
    Conversion.objects.filter(conversion_id="order:0").update(status="sent")
    old = timezone.now() - dt.timedelta(days=3)
    Conversion.objects.filter(conversion_id="order:1").update(created_at=old)

    def ids(**params: str) -> set[str]:
        response = staff.get(CONVERSIONS, params)
        assert response.status_code == 200, response.json()
        return {row["conversion_id"] for row in response.json()["results"]}

    assert len(ids()) == 5
    assert ids(status="sent") == {"order:0"}
    assert ids(event="sign_up") == {"order:3", "order:4"}
    assert ids(event="sign_up", status="sent") == set()
    day = old.date().isoformat()
    assert ids(created_to=day) == {"order:1"}
    assert ids(created_from=day, created_to=day) == {"order:1"}
    assert "order:1" not in ids(created_from=(old + dt.timedelta(seconds=1)).isoformat())
    assert ids(created_to=old.isoformat()) == {"order:1"}
    assert len(ids(created_from=(old + dt.timedelta(days=1)).date().isoformat())) == 4


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"created_from": "yesterday"}, "created_from"),
        ({"created_to": "2025-02-30"}, "created_to"),
        ({"created_from": "2025-03-02", "created_to": "2025-03-01"}, "created_to"),
        ({"event": "a\x00"}, "event"),
        ({"created_to": "9999-12-31T23:59:59-05:00"}, "created_to"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(
    staff: APIClient, params: dict[str, str], field: str
) -> None:
    response = staff.get(CONVERSIONS, params)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert field in response.json()["errors"][field][0]


def test_pagination_follows_the_cursor(staff: APIClient, tag: EventTag, settings: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_PAGE_SIZE": 2}
    post(staff, [item(n) for n in range(5)])
    seen: list[int] = []
    url: str | None = CONVERSIONS
    pages = 0
    while url:
        data = staff.get(url).json()
        assert len(data["results"]) <= 2
        seen += [row["id"] for row in data["results"]]
        url, pages = data["next"], pages + 1
    assert pages == 3 and seen == sorted(Conversion.objects.values_list("pk", flat=True))[::-1]


def test_one_conversion(staff: APIClient, tag: EventTag) -> None:
    created = post(staff, item(1, email=EMAIL, ip_address="203.0.113.9", user_agent="UA")).json()
    response = staff.get(detail(created["id"]))
    assert response.status_code == 200
    data = response.json()
    assert data["event"] == "purchase" and data["pixel"] == "o8z6j"
    assert data["identifiers"] == ["email", "twclid", "ip_address", "user_agent"]
    assert "203.0.113.9" not in response.content.decode()
    assert staff.get(detail(created["id"] + 1000)).status_code == 404


def test_tampered_cursor_and_huge_ids_are_not_errors(staff: APIClient, tag: EventTag) -> None:
    post(staff, item(1))
    for position in ("abc", "1e9", "", "\u00b2", "9" * 30):
        cursor = base64.b64encode(f"p={position}".encode()).decode()
        assert staff.get(CONVERSIONS, {"cursor": cursor}).status_code in (200, 404)
    assert staff.get(detail(10**30)).status_code == 404


def test_event_tags(staff: APIClient, tag: EventTag, signup_tag: EventTag) -> None:
    response = staff.get(TAGS)
    assert response.status_code == 200
    rows = {row["key"]: row for row in response.json()}
    assert set(rows) == {"purchase", "sign_up"}
    assert rows["sign_up"]["type"] == "SIGN_UP" and rows["purchase"]["pixel"] == "o8z6j"
    assert rows["purchase"]["account"] == tag.account.account_id


# -- health ----------------------------------------------------------------------------


def test_health_numbers(staff: APIClient, tag: EventTag, pixel: Pixel) -> None:
    now = timezone.now()
    post(staff, [item(n) for n in range(10)])

    def set_rows(numbers: range, **fields: Any) -> None:
        ids = [f"order:{n}" for n in numbers]
        Conversion.objects.filter(conversion_id__in=ids).update(**fields)

    set_rows(range(0, 3), created_at=now - dt.timedelta(hours=2))  # oldest pending: 2 h
    set_rows(range(3, 5), status="sent", sent_at=now - dt.timedelta(minutes=5))
    set_rows(range(5, 6), status="sent", sent_at=now - dt.timedelta(days=2))
    set_rows(range(6, 7), status="failed", failed_at=now - dt.timedelta(minutes=10))
    set_rows(range(7, 8), status="failed", failed_at=now - dt.timedelta(hours=3))
    set_rows(range(8, 9), status="skipped")
    set_rows(range(9, 10), status="sending")
    for outcome, age in [("sent", 1), ("server_error", 5), ("rate_limited", 30), ("timeout", 90)]:
        DeliveryAttempt.objects.create(
            pixel=pixel,
            account=pixel.account,
            event_count=1,
            outcome=outcome,
            created_at=now - dt.timedelta(minutes=age),
        )
    paused = AdAccount.objects.create(
        account_id="paused1", name="Paused", status="paused", paused_reason="401 from X"
    )

    data = staff.get(HEALTH).json()
    assert data["by_status"] == {
        "pending": 3,
        "sending": 1,
        "sent": 3,
        "failed": 2,
        "skipped": 1,
        "held": 0,
    }
    assert 7200 <= data["oldest_pending_seconds"] < 7200 + 60
    assert data["last_sent_at"] == (now - dt.timedelta(minutes=5)).isoformat()
    assert data["failed_last_hour"] == 1 and data["failed_requests_last_hour"] == 2
    assert [a["account_id"] for a in data["paused_accounts"]] == [paused.account_id]
    assert data["paused_accounts"][0]["reason"] == "401 from X"
    assert len(data["daily"]) == 14 and data["daily"][-1]["day"] == timezone.localdate().isoformat()
    # Bucket by local day as the chart does, so a run just after midnight agrees too.
    sent_days = [timezone.localdate(now - dt.timedelta(minutes=5))] * 2 + [
        timezone.localdate(now - dt.timedelta(days=2))
    ]
    chart = {day["day"]: day["sent"] for day in data["daily"]}
    for day in set(sent_days):
        assert chart[day.isoformat()] == sent_days.count(day)
    assert sum(chart.values()) == len(sent_days)

    exact = health(now=now + dt.timedelta(minutes=1))
    assert exact.oldest_pending_seconds == pytest.approx(7260, abs=5)


def test_health_writes_dates_and_times_in_full_iso_8601(
    staff: APIClient, tag: EventTag, account: AdAccount
) -> None:
    """Python's isoformat throughout: microseconds and the +00:00 offset are kept (not
    DjangoJSONEncoder's milliseconds and Z), nested in lists and objects alike."""
    paused_at = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.timezone.utc)
    AdAccount.objects.filter(pk=account.pk).update(
        status="paused", paused_reason="401 from X", paused_at=paused_at
    )
    now = timezone.now().replace(microsecond=123456)
    WorkerHeartbeat.objects.create(
        worker_id="w1",
        host="h",
        pid=7,
        started_at=now - dt.timedelta(seconds=30),
        last_beat_at=now,
        stopped_at=now,
    )
    post(staff, [item(0)])
    Conversion.objects.update(status="sent", sent_at=now)

    data = staff.get(HEALTH).json()
    assert data["last_sent_at"] == now.isoformat() and data["last_sent_at"].endswith(
        ".123456+00:00"
    )
    assert data["paused_accounts"] == [
        {
            "account_id": account.account_id,
            "name": account.name,
            "reason": "401 from X",
            "paused_at": "2026-03-04T05:06:07.891011+00:00",
        }
    ]
    (worker,) = data["workers"]
    assert (worker["started_at"], worker["last_beat_at"], worker["stopped_at"]) == (
        (now - dt.timedelta(seconds=30)).isoformat(),
        now.isoformat(),
        now.isoformat(),
    )
    days = [day["day"] for day in data["daily"]]
    assert days[-1] == timezone.localdate().isoformat() and len(days[0]) == len("2026-03-04")
    assert data == json.loads(json.dumps(health().as_dict()))


def test_health_of_an_empty_outbox(staff: APIClient) -> None:
    data = staff.get(HEALTH).json()
    assert set(data["by_status"].values()) == {0} and data["oldest_pending_seconds"] is None
    assert data["last_sent_at"] is None and data["paused_accounts"] == []


# -- access and throttling -------------------------------------------------------------


@pytest.mark.parametrize("url", [CONVERSIONS, TAGS, HEALTH, SCHEMA, detail(1)])
def test_anonymous_is_refused(url: str) -> None:
    assert APIClient().get(url).status_code in (401, 403)


def test_anonymous_cannot_post(tag: EventTag) -> None:
    assert post(APIClient(), item(1)).status_code in (401, 403)
    assert Conversion.objects.count() == 0


def test_staff_with_a_session_works(admin: Any, tag: EventTag) -> None:
    client = APIClient()
    client.force_login(admin)
    assert post(client, item(1)).status_code == 201
    assert client.get(CONVERSIONS).status_code == 200


def test_authenticated_non_staff_is_forbidden(django_user_model: Any, tag: EventTag) -> None:
    client = APIClient()
    client.force_login(django_user_model.objects.create_user("clerk", password="pw"))
    assert client.get(CONVERSIONS).status_code == 403
    assert post(client, item(1)).status_code == 403


def test_permission_and_authentication_classes_come_from_settings(
    django_user_model: Any, settings: Any
) -> None:
    django_user_model.objects.create_user("clerk", password="pw")
    session = APIClient()
    session.login(username="clerk", password="pw")
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    }
    assert session.get(HEALTH).status_code == 200
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "API_AUTHENTICATION_CLASSES": ["rest_framework.authentication.BasicAuthentication"],
    }
    response = session.get(HEALTH)  # sessions no longer count: basic auth is asked for
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic")
    basic = APIClient()
    basic.credentials(HTTP_AUTHORIZATION="Basic Y2xlcms6cHc=")  # clerk:pw
    assert basic.get(HEALTH).status_code == 200


def test_throttled_per_user(staff: APIClient, settings: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_THROTTLE_RATE": "2/minute"}
    assert [staff.get(HEALTH).status_code for _ in range(3)] == [200, 200, 429]
    cache.clear()
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_THROTTLE_RATE": None}
    assert {staff.get(HEALTH).status_code for _ in range(5)} == {200}


def test_throttled_per_ip_when_anonymous(settings: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_THROTTLE_RATE": "2/minute"}
    client = APIClient()
    codes = [client.get(HEALTH, REMOTE_ADDR="198.51.100.7").status_code for _ in range(3)]
    assert codes[:2] in ([401, 401], [403, 403]) and codes[2] == 429
    assert client.get(HEALTH, REMOTE_ADDR="198.51.100.8").status_code in (401, 403)


def test_a_malformed_rate_names_the_setting(staff: APIClient, settings: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_THROTTLE_RATE": "fast"}
    with pytest.raises(ImproperlyConfigured, match=r'XCONVERSIONS\["API_THROTTLE_RATE"\]'):
        staff.get(HEALTH)


def test_failed_logins_are_throttled_per_ip(django_user_model: Any, settings: Any) -> None:
    django_user_model.objects.create_superuser("boss", password="right")
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "API_THROTTLE_RATE": "2/minute",
        "API_AUTHENTICATION_CLASSES": ["rest_framework.authentication.BasicAuthentication"],
    }
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Basic Ym9zczp3cm9uZw==")  # boss:wrong
    codes = [guesser.get(HEALTH, REMOTE_ADDR="198.51.100.9").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


# -- schema ----------------------------------------------------------------------------


def test_schema_generates_valid_without_warnings() -> None:
    generator = XConversionsSchemaGenerator()  # type: ignore[no-untyped-call]
    schema = generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS, (
        dict(GENERATOR_STATS._warn_cache),
        dict(GENERATOR_STATS._error_cache),
    )
    validate_schema(schema)  # type: ignore[no-untyped-call]
    assert set(schema["paths"]) == {
        "/x/conversions/",
        "/x/conversions/{id}/",
        "/x/event-tags/",
        "/x/health/",
    }
    operations = schema["paths"]["/x/conversions/"]
    assert set(operations) == {"get", "post"}
    names = {p["name"] for p in operations["get"]["parameters"]}
    assert names == {"status", "event", "created_from", "created_to", "cursor"}
    components = schema["components"]["schemas"]
    assert "ConversionInput" in components and "Health" in components
    assert "email" in components["ConversionInput"]["properties"]


def test_health_schema_lists_every_field_health_returns(staff: APIClient) -> None:
    generator = XConversionsSchemaGenerator()  # type: ignore[no-untyped-call]
    schema = generator.get_schema(request=None, public=True)
    documented = set(schema["components"]["schemas"]["Health"]["properties"])
    assert documented == set(staff.get(HEALTH).json()) == set(health().as_dict())


def test_schema_is_served_to_staff(staff: APIClient) -> None:
    response = staff.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/x/conversions/" in json.loads(response.content)["paths"]


# -- fuzz: no JSON body gives a 500 ------------------------------------------------------

# Any code point, lone surrogates and NUL included (json.dumps escapes them).
TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "event",
    "email",
    "phone",
    "twclid",
    "ip_address",
    "user_agent",
    "value",
    "currency",
    "number_items",
    "contents",
    "conversion_id",
    "conversion_time",
    "description",
]
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.sampled_from(["purchase", "2025-01-01T00:00:00Z", "1e400", "-0", "+1 555 0100", "x@y.z"])
)
ITEM = st.builds(
    lambda base, extra: {**base, **extra},
    st.just({"event": "purchase", "twclid": "abc"}),
    st.dictionaries(st.sampled_from(FIELDS), SCALAR | JSON, max_size=5),
)
FUZZ = hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def unthrottled(settings: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_THROTTLE_RATE": None}


@seed(20250101)
@FUZZ
@given(body=JSON)
def test_fuzz_any_json_body(staff: APIClient, tag: EventTag, unthrottled: None, body: Any) -> None:
    assert post(staff, body).status_code < 500


@seed(20250102)
@FUZZ
@given(body=ITEM | st.lists(ITEM, max_size=4))
def test_fuzz_conversion_fields(
    staff: APIClient, tag: EventTag, unthrottled: None, body: Any
) -> None:
    response = post(staff, body)
    assert response.status_code in (201, 400), response.content


@seed(20250103)
@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["status", "event", "created_from", "created_to", "cursor"]),
        st.text(max_size=30),
        max_size=4,
    )
)
def test_fuzz_list_parameters(
    staff: APIClient, tag: EventTag, unthrottled: None, params: dict[str, str]
) -> None:
    assert staff.get(CONVERSIONS, params).status_code in (200, 400, 404)


def test_held_conversions_are_listed_and_filtered_by_their_key(
    staff: APIClient, tag: EventTag
) -> None:
    from django_xconversions import track

    held = track("purchse", twclid="click1", conversion_id="order:9")  # a typo'd key
    assert held.status == "held"
    post(staff, item(1))
    rows = {row["conversion_id"]: row for row in staff.get(CONVERSIONS).json()["results"]}
    assert rows["order:9"]["event"] == "purchse" and rows["order:9"]["status"] == "held"
    assert rows["order:9"]["event_tag"] is None and rows["order:9"]["pixel"] is None
    assert rows["order:1"]["event"] == "purchase"
    by_key = staff.get(CONVERSIONS, {"event": "purchse"}).json()["results"]
    assert [row["conversion_id"] for row in by_key] == ["order:9"]
    one = staff.get(detail(held.pk))
    assert one.status_code == 200 and one.json()["error_reason"] == "no_tag"
