"""API access by default: staff AND the model permission the admin would ask for.

A staff user who sees nothing in the admin (403 on every page) must see nothing through the
API either: reads need ``view_conversion`` (``view_eventtag`` for event tags), writes
``add_conversion``, as DRF's ``DjangoModelPermissions`` maps them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from django_xconversions.models import Conversion, EventTag

pytestmark = pytest.mark.django_db

CONVERSIONS = reverse("xconversions_api:conversion-list")
TAGS = reverse("xconversions_api:eventtag-list")
HEALTH = reverse("xconversions_api:health")
SCHEMA = reverse("xconversions_api:schema")
ITEM = {"event": "purchase", "twclid": "click1", "conversion_id": "order:1"}


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def stored(tag: EventTag) -> Conversion:
    return Conversion.objects.create(
        event_tag=tag,
        pixel=tag.pixel,
        conversion_id="order:0",
        conversion_time="2025-01-01T00:00:00Z",
        twclid="click0",
    )


def staff_client(django_user_model: Any, *codenames: str, is_staff: bool = True) -> APIClient:
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=is_staff)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="xconversions", codename__in=codenames)
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


def post(client: APIClient, body: Any) -> Any:
    return client.post(CONVERSIONS, json.dumps(body), content_type="application/json")


def reads(stored: Conversion) -> dict[str, str]:
    return {
        "list": CONVERSIONS,
        "detail": reverse("xconversions_api:conversion-detail", args=[stored.pk]),
        "tags": TAGS,
        "health": HEALTH,
        "schema": SCHEMA,
    }


def test_staff_without_permissions_is_refused_everywhere(
    django_user_model: Any, stored: Conversion
) -> None:
    client = staff_client(django_user_model)
    # The same user sees nothing in the admin either.
    admin = Client()
    admin.force_login(django_user_model.objects.get(username="ops"))
    assert admin.get(reverse("admin:xconversions_conversion_changelist")).status_code == 403
    codes = {name: client.get(url).status_code for name, url in reads(stored).items()}
    assert codes == dict.fromkeys(codes, 403)
    assert post(client, ITEM).status_code == 403
    assert Conversion.objects.count() == 1


def test_view_permission_reads_but_cannot_write(django_user_model: Any, stored: Conversion) -> None:
    client = staff_client(django_user_model, "view_conversion")
    codes = {name: client.get(url).status_code for name, url in reads(stored).items()}
    assert codes == {"list": 200, "detail": 200, "tags": 403, "health": 200, "schema": 200}
    assert post(client, ITEM).status_code == 403
    assert Conversion.objects.count() == 1


def test_event_tags_need_their_own_view_permission(
    django_user_model: Any, stored: Conversion
) -> None:
    client = staff_client(django_user_model, "view_eventtag")
    assert client.get(TAGS).status_code == 200
    assert client.get(CONVERSIONS).status_code == 403
    assert client.get(HEALTH).status_code == 403


def test_add_permission_writes(django_user_model: Any, stored: Conversion) -> None:
    client = staff_client(django_user_model, "add_conversion")
    response = post(client, ITEM)
    assert response.status_code == 201, response.content
    assert Conversion.objects.filter(conversion_id="order:1").exists()
    # Adding is not viewing.
    assert client.get(CONVERSIONS).status_code == 403


def test_permissions_without_staff_are_refused(django_user_model: Any, stored: Conversion) -> None:
    client = staff_client(
        django_user_model, "view_conversion", "add_conversion", "view_eventtag", is_staff=False
    )
    codes = {name: client.get(url).status_code for name, url in reads(stored).items()}
    assert codes == dict.fromkeys(codes, 403)
    assert post(client, ITEM).status_code == 403


def test_inactive_superuser_is_refused_and_active_one_has_everything(
    django_user_model: Any, stored: Conversion
) -> None:
    boss = django_user_model.objects.create_superuser("boss", password="pw")
    client = APIClient()
    client.force_authenticate(boss)
    codes = {name: client.get(url).status_code for name, url in reads(stored).items()}
    assert codes == dict.fromkeys(codes, 200)
    assert post(client, ITEM).status_code == 201
    boss.is_active = False
    boss.save()
    client.force_authenticate(boss)
    assert client.get(HEALTH).status_code == 403


# -- anonymous callers: 401 with a challenge when one can be answered --------------------

SESSION = "rest_framework.authentication.SessionAuthentication"
BASIC = "rest_framework.authentication.BasicAuthentication"
TOKEN = "rest_framework.authentication.TokenAuthentication"
METRICS = reverse("xconversions_api:metrics")


def authenticating_with(settings: Any, classes: list[str] | None) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "API_AUTHENTICATION_CLASSES": classes}


def anonymous_answers(stored: Conversion) -> dict[str, tuple[int, str | None]]:
    """Every endpoint's status and WWW-Authenticate header for a caller without credentials."""
    client = APIClient()
    responses = {
        name: client.get(url) for name, url in {**reads(stored), "metrics": METRICS}.items()
    }
    responses["post"] = post(client, ITEM)
    return {
        name: (r.status_code, r.headers.get("WWW-Authenticate")) for name, r in responses.items()
    }


@pytest.mark.parametrize(
    ("classes", "challenge"),
    [
        (None, 'Basic realm="api"'),  # DRF's defaults: session, then basic
        ([SESSION, BASIC], 'Basic realm="api"'),
        ([BASIC], 'Basic realm="api"'),
        ([SESSION, TOKEN], "Token"),
        ([TOKEN, BASIC], "Token"),  # the first class with a challenge decides
    ],
)
def test_anonymous_calls_are_401_with_the_challenge_when_basic_or_token_is_enabled(
    settings: Any, stored: Conversion, classes: list[str] | None, challenge: str
) -> None:
    authenticating_with(settings, classes)
    answers = anonymous_answers(stored)
    assert answers == dict.fromkeys(answers, (401, challenge))
    assert Conversion.objects.count() == 1


def test_with_session_authentication_alone_anonymous_calls_stay_403(
    settings: Any, stored: Conversion
) -> None:
    """A session has no challenge to send (401 must carry one): 403, as DRF answers."""
    authenticating_with(settings, [SESSION])
    answers = anonymous_answers(stored)
    assert answers == dict.fromkeys(answers, (403, None))


@pytest.mark.parametrize("classes", [None, [SESSION]])
def test_a_signed_in_user_without_the_permission_is_403_without_a_challenge(
    settings: Any, django_user_model: Any, stored: Conversion, classes: list[str] | None
) -> None:
    """401 asks for credentials; a known user who may not read gets 403 whatever the auth."""
    authenticating_with(settings, classes)
    django_user_model.objects.create_user("clerk", password="pw")
    client = APIClient()
    client.login(username="clerk", password="pw")
    response = client.get(HEALTH)
    assert (response.status_code, response.headers.get("WWW-Authenticate")) == (403, None)


def test_wrong_basic_credentials_are_401_with_the_challenge(
    settings: Any, django_user_model: Any, stored: Conversion
) -> None:
    django_user_model.objects.create_superuser("boss", password="right")
    authenticating_with(settings, None)
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Basic Ym9zczp3cm9uZw==")  # boss:wrong
    response = guesser.get(HEALTH)
    assert (response.status_code, response["WWW-Authenticate"]) == (401, 'Basic realm="api"')
    right = APIClient()
    right.credentials(HTTP_AUTHORIZATION="Basic Ym9zczpyaWdodA==")  # boss:right
    assert right.get(HEALTH).status_code == 200
