"""Rotating ENCRYPTION_KEY: old tokens still decrypt, and the command re-encrypts them."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.db import connection

from django_xconversions import crypto
from django_xconversions.models import AdAccount, Pixel
from tests.conftest import configure

pytestmark = pytest.mark.django_db


def raw_column(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def test_rotation_keeps_tokens_readable_and_moves_them_to_the_new_key(settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    configure(settings, ENCRYPTION_KEY=old)
    account = AdAccount(account_id="18ce54d4x5t", name="Shop")
    account.set_tokens("token-value-1", "secret-value-1")
    account.save()
    pixel = Pixel(pixel_id="o8z6j", account=account)
    pixel.set_pixel_token("pixel-token-1")
    pixel.save()

    configure(settings, ENCRYPTION_KEY=[new, old])
    assert AdAccount.objects.get().credentials().access_token == "token-value-1"
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "Re-encrypted 3 secrets with key #1" in out.getvalue()

    configure(settings, ENCRYPTION_KEY=new)  # the old key is gone
    credentials = AdAccount.objects.get().credentials(Pixel.objects.get())
    assert (credentials.access_token, credentials.access_token_secret) == (
        "token-value-1",
        "secret-value-1",
    )
    assert credentials.pixel_token == "pixel-token-1"
    stored = raw_column("xconversions_adaccount", "access_token_encrypted", account.pk)
    assert "token-value-1" not in stored
    with pytest.raises(InvalidToken):
        Fernet(old.encode()).decrypt(stored.removeprefix(crypto.PREFIX).encode())
