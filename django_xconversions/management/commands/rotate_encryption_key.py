"""manage.py rotate_encryption_key: re-encrypt stored tokens with the first configured key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from django_xconversions import crypto
from django_xconversions.conf import setting_path
from django_xconversions.models import AdAccount, Pixel

ENCRYPTED_FIELDS: dict[type[AdAccount] | type[Pixel], tuple[str, ...]] = {
    AdAccount: ("access_token_encrypted", "access_token_secret_encrypted"),
    Pixel: ("pixel_token_encrypted",),
}


class Command(BaseCommand):
    help = (
        f"Re-encrypt every stored token with the first key of {setting_path('ENCRYPTION_KEY')}"
        " (set it to [new_key, old_key] first; drop the old key afterwards)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = 0
        with transaction.atomic():
            for model, fields in ENCRYPTED_FIELDS.items():
                for row in model.objects.select_for_update().only("pk", *fields):
                    for name in fields:
                        value = getattr(row, name)
                        if value:
                            setattr(row, name, crypto.rotate(value))
                            rotated += 1
                    row.save(update_fields=list(fields))
        self.stdout.write(f"Re-encrypted {rotated} tokens with the first configured key.")
