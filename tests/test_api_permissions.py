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

from django_xconversions.models import Conversion, EventTag, Pixel

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
def stored(pixel: Pixel) -> Conversion:
    tag = EventTag.objects.create(
        account=pixel.account,
        pixel=pixel,
        remote_id="o3bk1",
        website_tag_id="wo3bk1",
        key="purchase",
        name="Purchase",
        type="PURCHASE",
    )
    return Conversion.objects.create(
        event_tag=tag,
        pixel=pixel,
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
