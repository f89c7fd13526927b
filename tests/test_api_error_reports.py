"""Hostile bodies and error reports: deep or malformed JSON is a 400, and when something
does fail (DEBUG off, ADMINS set), neither the mail nor Django's technical 500 page carries
a raw email or phone number of any item of the request."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.core import mail
from django.core.cache import cache
from django.core.signals import got_request_exception
from django.test import Client
from django.urls import reverse
from django.views.debug import ExceptionReporter

from django_xconversions import tracking
from django_xconversions.api import ingest
from django_xconversions.api.parsers import MAX_DEPTH
from django_xconversions.models import Conversion, EventTag

pytestmark = pytest.mark.django_db

CONVERSIONS = reverse("xconversions_api:conversion-list")
OTHER_EMAIL = "Other.Buyer.Probe@Example.org"
OTHER_PHONE = "+1 (415) 555-0199"
# Raw forms and simple normalisations of the probe identifiers.
NEEDLES = ("other.buyer.probe", "555-0199", "4155550199", "(415)")


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [needle for needle in NEEDLES if needle in lowered]


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def boss_client(django_user_model: Any) -> Client:
    """A client logged in as a superuser that answers errors as a server would."""
    boss = django_user_model.objects.create_superuser("boss", password="pw")
    client = Client(raise_request_exception=False)
    client.force_login(boss)
    return client


def post(client: Client, body: str, **extra: Any) -> Any:
    return client.post(CONVERSIONS, body, content_type="application/json", **extra)


# -- deep and malformed JSON -------------------------------------------------------------


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 980, 5000, 100_000])
def test_deeply_nested_json_is_a_400_naming_the_rule(
    boss_client: Client, tag: EventTag, depth: int
) -> None:
    response = post(boss_client, nested(depth))
    assert response.status_code == 400, response.content[:300]
    message = response.json()["errors"]["body"][0]
    assert f"nested more than {MAX_DEPTH} levels deep" in message


def test_deep_objects_inside_an_item_are_refused_too(boss_client: Client, tag: EventTag) -> None:
    item = {"event": "purchase", "twclid": "a", "contents": [json.loads(nested(60, "{}"))]}
    response = post(boss_client, json.dumps([item]))
    assert response.status_code == 400
    assert "nested more than" in response.json()["errors"]["body"][0]
    assert Conversion.objects.count() == 0


def test_nesting_a_real_request_uses_is_accepted(boss_client: Client, tag: EventTag) -> None:
    item = {
        "event": "purchase",
        "twclid": "a",
        "contents": [{"content_id": "sku-1", "num_items": 1}],
    }
    assert post(boss_client, json.dumps([item])).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        "{nope",
        '{"event": "purchase"',
        "\ufeff{}",
        '{"a": NaN}',
        '{"a": Infinity}',
        "[" * 3 + "{" * 3,
        '"\\ud800"',
        "\x00",
    ],
)
def test_malformed_json_is_a_400(boss_client: Client, tag: EventTag, body: str) -> None:
    response = post(boss_client, body)
    assert response.status_code == 400, response.content[:300]
    assert "body" in response.json()["errors"]


def test_a_body_that_is_not_utf8_is_a_400(boss_client: Client, tag: EventTag) -> None:
    response = boss_client.post(CONVERSIONS, b'{"event": "\xff"}', content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()["errors"]


# -- error reports -----------------------------------------------------------------------


def two_items() -> str:
    return json.dumps(
        [
            {"event": "purchase", "email": "first.fine@example.com", "conversion_id": "1"},
            {"event": "purchase", "email": OTHER_EMAIL, "phone": OTHER_PHONE},
        ]
    )


@pytest.fixture
def crash_on_second_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected failure while the second item (raw identifiers in hand) is built."""
    real_track = tracking.track

    def track(event: str, **kwargs: Any) -> Conversion:
        if kwargs.get("email") == OTHER_EMAIL:
            raise RuntimeError("unexpected failure")
        return real_track(event, **kwargs)

    monkeypatch.setattr(tracking, "track", track)


# Django 6 takes plain addresses and deprecates the (name, address) pairs 5.2 requires.
ADMINS: list[Any] = ["ops@shop.test"] if django.VERSION >= (6,) else [("Ops", "ops@shop.test")]


@pytest.fixture
def reports(settings: Any) -> Iterator[list[str]]:
    """Django's technical 500 page, text and HTML, as ADMINS would receive it."""
    settings.DEBUG = False
    settings.ADMINS = ADMINS
    pages: list[str] = []

    def report(sender: Any, request: Any, **kwargs: Any) -> None:
        reporter = ExceptionReporter(request, *sys.exc_info())
        pages.extend([reporter.get_traceback_text(), reporter.get_traceback_html()])

    got_request_exception.connect(report)
    try:
        yield pages
    finally:
        got_request_exception.disconnect(report)


def test_a_crash_mid_list_reports_no_raw_identifier(
    boss_client: Client, tag: EventTag, crash_on_second_item: None, reports: list[str]
) -> None:
    response = post(boss_client, two_items())
    assert response.status_code == 500
    assert Conversion.objects.count() == 0
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert "unexpected failure" in message.body  # the report is useful ...
    assert "ingest.py" in message.body  # ... with its traceback ...
    assert leaks(message.subject + message.body) == []  # ... and holds no identifier
    assert len(reports) == 2 and "unexpected failure" in reports[1]
    for page in reports:
        assert leaks(page) == [], [line for line in page.splitlines() if leaks(line)][:5]


def test_a_crash_on_one_object_reports_no_raw_identifier(
    boss_client: Client, tag: EventTag, crash_on_second_item: None, reports: list[str]
) -> None:
    body = json.dumps({"event": "purchase", "email": OTHER_EMAIL, "phone": OTHER_PHONE})
    assert post(boss_client, body).status_code == 500
    assert len(mail.outbox) == 1
    assert leaks(mail.outbox[0].body) == []
    assert reports and all(leaks(page) == [] for page in reports)


def test_a_crash_while_storing_reports_no_raw_identifier(
    boss_client: Client, tag: EventTag, reports: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def store_all(conversions: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(ingest, "store_all", store_all)
    assert post(boss_client, two_items()).status_code == 500
    assert len(mail.outbox) == 1 and "database went away" in mail.outbox[0].body
    assert leaks(mail.outbox[0].body) == []
    assert reports and all(leaks(page) == [] for page in reports)


def test_ingest_called_directly_reports_no_raw_identifier(
    tag: EventTag, crash_on_second_item: None, settings: Any
) -> None:
    # No view around it: ingest and its serializer hide their own locals.
    settings.DEBUG = False
    with pytest.raises(RuntimeError) as raised:
        ingest.check_all(json.loads(two_items()))  # no local of this frame holds them
    exc = raised.value
    reporter = ExceptionReporter(None, type(exc), exc, exc.__traceback__)
    text, page = reporter.get_traceback_text(), reporter.get_traceback_html()
    assert "check_all" in text and "unexpected failure" in page
    assert leaks(text) == [] and leaks(page) == []


def test_form_encoded_identifiers_are_cleansed_from_reports(
    boss_client: Client, tag: EventTag, reports: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refused as 415, but a failure before that point would list request.POST.
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken throttle")

    from django_xconversions.api.permissions import SettingsAccessMixin

    monkeypatch.setattr(SettingsAccessMixin, "check_throttles", broken)
    response = boss_client.post(CONVERSIONS, {"event": "purchase", "email": OTHER_EMAIL})
    assert response.status_code == 500
    assert leaks(mail.outbox[0].body) == []
    assert reports and all(leaks(page) == [] for page in reports)


# -- the scan conftest runs after every test ------------------------------------------------


def test_the_mail_scan_finds_raw_identifiers_and_ignores_the_envelope() -> None:
    from django.core.mail import EmailMultiAlternatives

    from tests import mail_scan

    clean = EmailMultiAlternatives(
        "[Django] ERROR: Internal Server Error",
        "'ADMINS': [('Ops', 'ops@shop.test')], 'SERVER_EMAIL': 'root@localhost'\n"
        "time 2025-01-01 00:00:00+00:00, hash 3f1c...e9, value 1e+14",
        "root@localhost",
        ["Ops <ops@shop.test>"],
    )
    assert mail_scan.identifiers_in(clean) == []
    leaky = EmailMultiAlternatives("report", "vars: 'phone': '+1 (415) 555-0199'", to=["a@b.test"])
    leaky.attach_alternative("<td>&#x27;Other.Buyer.Probe@Example.org&#x27;</td>", "text/html")
    assert mail_scan.identifiers_in(leaky) == ["+1 (415) 555-0199", "Other.Buyer.Probe@Example.org"]
    with pytest.raises(pytest.fail.Exception, match=r"Other\.Buyer\.Probe"):
        mail_scan.fail_on_identifiers([clean, leaky])
    mail_scan.fail_on_identifiers([clean])
