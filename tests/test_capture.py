"""Capture end to end with the Django test client: landing with ?twclid=, then a sign-up
and an order in later requests, through TwclidMiddleware and the SOURCES bindings."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import checks
from django.db import connection, transaction
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext

from django_xconversions import checks as xchecks
from django_xconversions import sources, tracking
from django_xconversions.context import SESSION_KEY
from django_xconversions.identifiers import hash_email
from django_xconversions.models import Conversion, EventTag
from tests.conftest import configure
from tests.shop.models import Member, Order

pytestmark = pytest.mark.django_db
BROWSER = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "Mozilla/5.0 (Shop test)"}
TWCLID = "26l6412g5p4iyj65a3oyr1bh9n"


@pytest.fixture
def visitor() -> Client:
    return Client(**BROWSER)


def land(visitor: Client, twclid: str = TWCLID, **headers: Any) -> None:
    assert visitor.get("/shop/", {"twclid": twclid}, **headers).status_code == 200


def test_a_click_then_a_sign_up_and_an_order_carry_the_twclid_ip_and_user_agent(
    visitor: Client, shop_tags: dict[str, EventTag]
) -> None:
    land(visitor)
    assert visitor.post("/shop/sign-up/", {"email": " Jane@Example.com "}).status_code == 200
    order_pk = visitor.post("/shop/orders/", {"email": "jane@example.com", "total": "25.50"})
    visitor.post(f"/shop/orders/{int(order_pk.content)}/pay/")

    sign_up = Conversion.objects.get(event_tag=shop_tags["sign_up"])
    purchase = Conversion.objects.get(event_tag=shop_tags["purchase"])
    for row in (sign_up, purchase):
        assert (row.twclid, row.ip_address, row.user_agent) == (
            TWCLID,
            "203.0.113.7",
            "Mozilla/5.0 (Shop test)",
        )
        assert row.hashed_email == hash_email("jane@example.com")
        assert row.status == "pending"
    member = Member.objects.get()
    assert sign_up.conversion_id == f"shop.member:{member.pk}"
    assert purchase.value == Decimal("25.50") and purchase.currency == "USD"
    assert purchase.number_items == 1
    assert purchase.contents[0]["content_id"] == f"sku-{int(order_pk.content)}"


def test_the_last_click_wins(visitor: Client, shop_tags: dict[str, EventTag]) -> None:
    land(visitor, "first-click")
    land(visitor, "second-click")
    visitor.post("/shop/sign-up/", {"email": "a@example.com"})
    assert Conversion.objects.get().twclid == "second-click"


def test_global_privacy_control_captures_nothing_and_skips_conversions(
    visitor: Client, shop_tags: dict[str, EventTag]
) -> None:
    land(visitor, HTTP_SEC_GPC="1")
    assert SESSION_KEY not in visitor.session
    visitor.post("/shop/sign-up/", {"email": "a@example.com"}, HTTP_SEC_GPC="1")
    row = Conversion.objects.get()
    assert row.status == "skipped" and row.error_reason == "consent"
    assert "Sec-GPC" in row.last_error
    assert (row.twclid, row.hashed_email, row.ip_address, row.user_agent) == ("", "", None, "")


def test_gpc_can_be_ignored_by_setting(
    settings: Any, visitor: Client, shop_tags: dict[str, EventTag]
) -> None:
    configure(settings, HONOR_GPC=False)
    land(visitor, HTTP_SEC_GPC="1")
    assert visitor.session[SESSION_KEY]["twclid"] == TWCLID


def refuse_everyone(request: Any) -> bool:
    return False


def test_a_consent_check_can_refuse(
    settings: Any, visitor: Client, shop_tags: dict[str, EventTag]
) -> None:
    configure(settings, CONSENT_CHECK=f"{__name__}.refuse_everyone")
    land(visitor)
    assert SESSION_KEY not in visitor.session
    visitor.post("/shop/sign-up/", {"email": "a@example.com"})
    row = Conversion.objects.get()
    assert row.status == "skipped" and "refuse_everyone" in row.last_error


def test_an_expired_twclid_is_not_used(
    settings: Any, visitor: Client, shop_tags: dict[str, EventTag]
) -> None:
    land(visitor)
    session = visitor.session
    session[SESSION_KEY] = {**session[SESSION_KEY], "at": time.time() - 31 * 24 * 3600}
    session.save()
    visitor.post("/shop/sign-up/", {"email": "a@example.com"})
    row = Conversion.objects.get()
    assert row.twclid == "" and row.hashed_email == hash_email("a@example.com")


@pytest.mark.parametrize("bad", ["", "x" * 256, "has space", "<script>", "ünï", "click\n"])
def test_an_invalid_twclid_is_ignored(visitor: Client, bad: str) -> None:
    land(visitor, bad)
    assert SESSION_KEY not in visitor.session


def test_an_order_saved_three_times_gives_one_conversion(shop_tags: dict[str, EventTag]) -> None:
    order = Order.objects.create(email="a@example.com", total=Decimal("5"), status="paid")
    order.save()
    Order.objects.get(pk=order.pk).save()
    assert Conversion.objects.filter(conversion_id=f"shop.order:{order.pk}").count() == 1


def test_an_order_paid_later_converts_at_the_transition(shop_tags: dict[str, EventTag]) -> None:
    order = Order.objects.create(email="a@example.com", total=Decimal("5"))
    order.save()
    assert not Conversion.objects.exists()
    reloaded = Order.objects.get(pk=order.pk)
    reloaded.status = "paid"
    reloaded.save()
    assert Conversion.objects.get().conversion_id == f"shop.order:{order.pk}"


def test_a_rolled_back_order_gives_no_conversion(shop_tags: dict[str, EventTag]) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(email="a@example.com", total=Decimal("5"), status="paid")
        raise RuntimeError("payment declined")
    assert not Order.objects.exists() and not Conversion.objects.exists()


def test_bad_data_on_an_order_never_breaks_its_save(shop_tags: dict[str, EventTag]) -> None:
    order = Order.objects.create(email="not-an-email", total=Decimal("5"), status="paid")
    row = Conversion.objects.get()
    assert order.pk and row.status == "failed" and row.error_reason == "invalid"
    assert row.last_error.startswith("email:") and "not-an-email" not in row.last_error


def test_the_middleware_adds_no_query_without_twclid(settings: Any, visitor: Client) -> None:
    visitor.get("/shop/")  # warm up
    with CaptureQueriesContext(connection) as queries:
        assert visitor.get("/shop/", HTTP_SEC_GPC="1").status_code == 200
        assert visitor.get("/shop/", {"q": "shoes"}).status_code == 200
    assert len(queries) == 0
    assert settings.SESSION_COOKIE_NAME not in visitor.cookies  # no session was written


def test_a_bound_models_save_adds_at_most_two_queries(
    visitor: Client, shop_tags: dict[str, EventTag]
) -> None:
    land(visitor)
    visitor.post("/shop/sign-up/", {"email": "warm@example.com"})  # tag cache, content type
    with CaptureQueriesContext(connection) as bound:
        visitor.post("/shop/sign-up/", {"email": "b@example.com"})
    sources.disconnect()
    try:
        with CaptureQueriesContext(connection) as unbound:
            visitor.post("/shop/sign-up/", {"email": "c@example.com"})
    finally:
        sources.connect()
    assert Conversion.objects.count() == 2
    # The session's twclid and the INSERT; inside a caller's transaction (as every test
    # runs) also SAVEPOINT and RELEASE, which keep that transaction usable on any error.
    statements = [query["sql"] for query in bound.captured_queries]
    savepoints = [sql for sql in statements if "SAVEPOINT" in sql]
    assert len(savepoints) == 2
    assert len(bound) - len(savepoints) - len(unbound) <= 2


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_bound_save_needs_no_savepoint(
    shop_tags: dict[str, EventTag],
) -> None:
    Member.objects.create(email="warm@example.com")  # content type cached
    assert not connection.in_atomic_block
    with CaptureQueriesContext(connection) as queries:
        Member.objects.create(email="a@example.com")
    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if "SAVEPOINT" in sql]
    assert sum("INSERT" in sql for sql in statements) == 2  # the member and its conversion
    assert Conversion.objects.filter(status="pending").count() == 2


def test_forwarded_for_is_ignored_unless_configured(
    settings: Any, visitor: Client, shop_tags: dict[str, EventTag]
) -> None:
    spoofed = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 192.0.2.50"}
    visitor.post("/shop/sign-up/", {"email": "a@example.com"}, **spoofed)
    configure(settings, CLIENT_IP_HEADER="HTTP_X_FORWARDED_FOR", TRUSTED_PROXY_COUNT=1)
    visitor.post("/shop/sign-up/", {"email": "b@example.com"}, **spoofed)
    first, second = Conversion.objects.order_by("pk")
    assert first.ip_address == "203.0.113.7"
    assert second.ip_address == "192.0.2.50"  # the entry our one proxy appended


def test_async_views_see_the_request_context(shop_tags: dict[str, EventTag]) -> None:
    client = AsyncClient(**BROWSER)
    query = {"email": "a@example.com", "twclid": "c1"}
    response = async_to_sync(client.get)("/shop/async-sign-up/", query)
    assert response.status_code == 200
    assert response.content.decode().endswith(" c1")


def test_misconfigured_sources_are_reported_at_start_up(settings: Any) -> None:
    configure(
        settings,
        SOURCES=[
            {"model": "shop.Nope", "event": "purchase"},
            {"model": "shop.Order", "event": "purchase", "when": {"field": "state", "value": 1}},
            {"model": "shop.Order", "event": "purchase", "email": "customer.email"},
            {"model": "shop.Order", "event": "purchase", "contents": "tests.nowhere.func"},
            {"model": "shop.Order", "event": ""},
            {"model": "shop.Order", "event": "purchase", "colour": "red"},
            {"model": "shop.Order", "event": "purchase", "email": "email"},
        ],
    )
    errors = xchecks.check_sources()
    assert all(isinstance(e, checks.Error) and e.id == "xconversions.E006" for e in errors)
    text = [e.msg for e in errors]
    assert len(text) == 6
    assert 'SOURCES"][0]' in text[0] and "'app_label.Model'" in text[0]
    assert "field 'state'" in text[1]
    assert "'customer.email'" in text[2]
    assert "tests.nowhere.func" in text[3]
    assert "'event' must be" in text[4]
    assert "unknown keys colour" in text[5]


def test_the_middleware_check_wants_it_after_sessions(settings: Any) -> None:
    settings.MIDDLEWARE = [
        "django_xconversions.middleware.TwclidMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
    ]
    assert [e.id for e in xchecks.check_middleware()] == ["xconversions.E008"]
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
    assert [e.id for e in xchecks.check_middleware()] == ["xconversions.W003"]


def test_track_writes_nothing_when_any_field_is_bad(shop_tags: dict[str, EventTag]) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        tracking.track("purchase", email="a@example.com", value="-1", currency="usd!")
    assert set(caught.value.message_dict) == {"value", "currency"}
    assert not Conversion.objects.exists()


@pytest.mark.parametrize("path", [".", "...", "a..b"])
def test_a_dotted_path_of_nothing_is_a_source_error_not_a_crash(path: str) -> None:
    # import_string raises ValueError or TypeError for these: start-up must not crash.
    with pytest.raises(sources.SourceError, match=r"neither an attribute of shop\.Order"):
        sources.parse(0, {"model": "shop.Order", "event": "purchase", "email": path})
