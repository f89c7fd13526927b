from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel

pytestmark = pytest.mark.django_db

TOKEN = "1234-access-token-plain"
SECRET = "access-token-secret-plain"


def make_account() -> AdAccount:
    account = AdAccount(account_id="18ce54d4x5t", name="Shop")
    account.set_tokens(TOKEN, SECRET)
    account.save()
    return account


def raw_row(table: str, pk: int) -> tuple[object, ...]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])  # noqa: S608
        row = cursor.fetchone()
    assert row is not None
    return row


def test_tokens_are_encrypted_at_rest_and_decrypt_back() -> None:
    account = make_account()
    row = raw_row(AdAccount._meta.db_table, account.pk)
    assert not any(TOKEN in str(v) or SECRET in str(v) for v in row)
    creds = AdAccount.objects.get(pk=account.pk).credentials()
    assert (creds.access_token, creds.access_token_secret) == (TOKEN, SECRET)


def test_credentials_repr_hides_tokens() -> None:
    creds = make_account().credentials()
    assert TOKEN not in repr(creds) and SECRET not in repr(creds)
    assert TOKEN not in str(AdAccount.objects.get()) and TOKEN not in repr(AdAccount.objects.get())


def test_pixel_token_encrypted(settings) -> None:
    account = make_account()
    pixel = Pixel(pixel_id="o8z6j", account=account)
    pixel.set_pixel_token("pixel-token-plain")
    pixel.save()
    assert not any("pixel-token-plain" in str(v) for v in raw_row(Pixel._meta.db_table, pixel.pk))
    assert account.credentials(pixel).pixel_token == "pixel-token-plain"


def test_key_rotation_reads_old_tokens_with_new_primary_key(settings) -> None:
    account = make_account()
    old_key = settings.XCONVERSIONS["ENCRYPTION_KEY"]
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "ENCRYPTION_KEY": [Fernet.generate_key().decode(), old_key],
    }
    assert AdAccount.objects.get(pk=account.pk).credentials().access_token == TOKEN


def test_wrong_key_says_which_setting(settings) -> None:
    account = make_account()
    settings.XCONVERSIONS = {
        **settings.XCONVERSIONS,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    with pytest.raises(ImproperlyConfigured, match=r'XCONVERSIONS\["ENCRYPTION_KEY"\]'):
        AdAccount.objects.get(pk=account.pk).credentials()


def test_conversion_unique_per_tag_and_conversion_id() -> None:
    account = make_account()
    pixel = Pixel.objects.create(pixel_id="o8z6j", account=account)
    tag = EventTag.objects.create(
        account=account,
        pixel=pixel,
        remote_id="o3bk1",
        website_tag_id="ny3od",
        name="Purchase",
        type="PURCHASE",
    )
    fields = {"event_tag": tag, "pixel": pixel, "conversion_time": timezone.now(), "twclid": "abc"}
    Conversion.objects.create(conversion_id="order:1", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversion.objects.create(conversion_id="order:1", **fields)
    assert Conversion.objects.count() == 1


def test_base36_ids_are_validated() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        Pixel(pixel_id="O8Z-6J", account=make_account()).full_clean()
    assert "pixel_id" in info.value.message_dict


def test_a_held_conversion_reads_as_its_key() -> None:
    held = Conversion(event_key="purchse", conversion_id="order:1", status="held")
    assert str(held) == "purchse:order:1 (held)"
