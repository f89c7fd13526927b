"""manage.py rotate_encryption_key: says which key (position and fingerprint) encrypts
everything afterwards, notices keys listed in the wrong order instead of reporting success,
counts what each key opens with --dry-run, and exits non-zero when a secret opens with no
configured key. Keys and secrets never appear in its output.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction

from django_xconversions import crypto
from django_xconversions.models import AdAccount, Pixel
from tests.conftest import configure
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db

SECRETS = ("token-value-1", "secret-value-1", "pixel-token-1")
COLUMNS = (
    ("xconversions_adaccount", "access_token_encrypted"),
    ("xconversions_adaccount", "access_token_secret_encrypted"),
    ("xconversions_pixel", "pixel_token_encrypted"),
)
OLD, NEW, LOST = (Fernet.generate_key().decode() for _ in range(3))


def fp(key: str) -> str:
    return crypto.fingerprint(key)


def under(key: str, value: str, at: float | None = None) -> str:
    """``value`` as stored when ``key`` was first, encrypted at epoch second ``at``."""
    when = int(time.time() if at is None else at)
    return crypto.PREFIX + Fernet(key.encode()).encrypt_at_time(value.encode(), when).decode()


def raw() -> list[str]:
    values = []
    with connection.cursor() as cursor:
        for table, column in COLUMNS:
            cursor.execute(f"SELECT {column} FROM {table} ORDER BY id")  # noqa: S608
            values.extend(str(row[0]) for row in cursor.fetchall())
    return values


def opened_by(key: str) -> list[bool]:
    """For each stored secret (in ``raw()`` order): whether ``key`` opens it."""
    result = []
    for value in raw():
        try:
            Fernet(key.encode()).decrypt(value.removeprefix(crypto.PREFIX).encode())
        except InvalidToken:
            result.append(False)
        else:
            result.append(True)
    return result


@pytest.fixture
def stored(db: None) -> tuple[AdAccount, Pixel]:
    """An account and a pixel token, all three secrets written under OLD an hour ago."""
    account = AdAccount.objects.create(account_id="18ce54d4x5t", name="Shop")
    pixel = Pixel.objects.create(pixel_id="o8z6j", account=account, name="Shop pixel")
    hour_ago = time.time() - 3600
    AdAccount.objects.filter(pk=account.pk).update(
        access_token_encrypted=under(OLD, SECRETS[0], hour_ago),
        access_token_secret_encrypted=under(OLD, SECRETS[1], hour_ago),
    )
    Pixel.objects.filter(pk=pixel.pk).update(pixel_token_encrypted=under(OLD, SECRETS[2], hour_ago))
    return account, pixel


@dataclass
class Run:
    out: str
    returncode: int
    error: str = ""


def rotate(*args: str) -> Run:
    out = StringIO()
    try:
        call_command("rotate_encryption_key", *args, stdout=out)
    except CommandError as exc:
        run = Run(out.getvalue(), exc.returncode, str(exc))
    else:
        run = Run(out.getvalue(), 0)
    for secret in (*SECRETS, OLD, NEW, LOST):
        assert secret not in run.out + run.error
    return run


def readable_with(settings: Any, *keys: str) -> tuple[str, str, str]:
    configure(settings, ENCRYPTION_KEY=list(keys))
    account = AdAccount.objects.get()
    credentials = account.credentials(Pixel.objects.get())
    return credentials.access_token, credentials.access_token_secret, credentials.pixel_token


def test_new_key_first_moves_everything_and_says_which_key(
    settings: Any, stored: tuple[AdAccount, Pixel]
) -> None:
    updated_at = AdAccount.objects.get().updated_at
    configure(settings, ENCRYPTION_KEY=[NEW, OLD])
    run = rotate()
    assert run.returncode == 0
    assert f"key #1 ({fp(NEW)}): opens 0 secrets" in run.out
    assert f"key #2 ({fp(OLD)}): opens 3 secrets" in run.out
    assert (
        f"Re-encrypted 3 secrets with key #1 ({fp(NEW)}): every secret (3) is now under "
        f"key #1 ({fp(NEW)})." in run.out
    )
    assert f"key #2 ({fp(OLD)}) now opens no stored secret and can be removed" in run.out
    assert opened_by(NEW) == [True, True, True] and opened_by(OLD) == [False] * 3
    assert readable_with(settings, NEW) == SECRETS  # the old key can go
    assert AdAccount.objects.get().updated_at == updated_at  # a re-encryption is no edit

    # Run again: nothing left to do, and the ciphertext is not rewritten.
    configure(settings, ENCRYPTION_KEY=[NEW, OLD])
    before = raw()
    again = rotate()
    assert again.returncode == 0
    assert f"Nothing to rotate: every secret is already under key #1 ({fp(NEW)})." in again.out
    assert raw() == before


def test_old_key_first_is_not_reported_as_success(
    settings: Any, stored: tuple[AdAccount, Pixel]
) -> None:
    """The keys in the wrong order: every secret is already under the first key (the old
    one), the new key opens nothing. Before, this printed "Re-encrypted 3 tokens"."""
    configure(settings, ENCRYPTION_KEY=[OLD, NEW])
    before = raw()
    run = rotate()
    assert "Re-encrypted" not in run.out
    assert f"Nothing to rotate: every secret is already under key #1 ({fp(OLD)})." in run.out
    assert f"key #2 ({fp(NEW)}) opens no stored secret" in run.out
    assert "the keys are in the wrong order" in run.out and "Put the new key first" in run.out
    assert f"Do not remove key #1 ({fp(OLD)})" in run.out and "3 secrets open only" in run.out
    assert raw() == before and opened_by(OLD) == [True] * 3


def test_a_later_key_that_wrote_more_recently_stops_the_rotation(
    settings: Any, stored: tuple[AdAccount, Pixel]
) -> None:
    """NEW was first for a while (the pixel token was saved under it), then the list was
    written [OLD, NEW]: rotating would move the newest secret back to the old key."""
    Pixel.objects.update(pixel_token_encrypted=under(NEW, SECRETS[2]))
    configure(settings, ENCRYPTION_KEY=[OLD, NEW])
    before = raw()
    run = rotate()
    assert run.returncode == 2 and "wrong order" in run.error and "nothing was changed" in run.error
    assert f"key #2 ({fp(NEW)}) encrypted secrets more recently than key #1 ({fp(OLD)})" in run.out
    assert "Nothing changed: 1 secret left as it is." in run.out
    assert f"Do not remove key #2 ({fp(NEW)})" in run.out
    assert raw() == before

    # The dry run sees it too.
    assert rotate("--dry-run").returncode == 2
    assert raw() == before

    # --force: the user says the first key really is the one to keep.
    forced = rotate("--force")
    assert forced.returncode == 0
    assert f"Re-encrypted 1 secret with key #1 ({fp(OLD)})" in forced.out
    assert opened_by(OLD) == [True] * 3


def test_secrets_under_the_first_key_newer_than_the_rest_are_a_normal_rotation(
    settings: Any, stored: tuple[AdAccount, Pixel]
) -> None:
    """Half-way through: the pixel token was saved since NEW became first."""
    Pixel.objects.update(pixel_token_encrypted=under(NEW, SECRETS[2]))
    configure(settings, ENCRYPTION_KEY=[NEW, OLD])
    run = rotate()
    assert run.returncode == 0 and "Re-encrypted 2 secrets" in run.out
    assert opened_by(NEW) == [True] * 3


def test_a_secret_no_key_opens_exits_non_zero_and_the_rest_still_rotates(
    settings: Any, stored: tuple[AdAccount, Pixel]
) -> None:
    Pixel.objects.update(pixel_token_encrypted=under(LOST, SECRETS[2]))
    lost = raw()[2]
    configure(settings, ENCRYPTION_KEY=[NEW, OLD])
    run = rotate()
    assert run.returncode == 1
    assert 'cannot be decrypted with any key in XCONVERSIONS["ENCRYPTION_KEY"]' in run.error
    assert "no configured key: opens 1 secret" in run.out
    assert "pixel o8z6j (Shop pixel): pixel token" in run.out
    assert "re-enter the pixel token" in run.out
    assert "every readable secret (2) is now under key #1" in run.out
    assert opened_by(NEW) == [True, True, False] and raw()[2] == lost


def test_dry_run_counts_what_each_key_opens_and_changes_nothing(
    settings: Any, stored: tuple[AdAccount, Pixel]
) -> None:
    AdAccount.objects.update(access_token_secret_encrypted=under(NEW, SECRETS[1]))
    Pixel.objects.update(pixel_token_encrypted=under(LOST, SECRETS[2]))
    configure(settings, ENCRYPTION_KEY=[NEW, OLD])
    before = raw()
    run = rotate("--dry-run")
    assert run.returncode == 1  # a secret no key opens
    lines = run.out.splitlines()
    assert lines[0] == "Dry run, nothing changed."
    assert f"  key #1 ({fp(NEW)}): opens 1 secret" in lines
    assert f"  key #2 ({fp(OLD)}): opens 1 secret" in lines
    assert "  no configured key: opens 1 secret" in lines
    assert f"Rotating would re-encrypt 1 secret with key #1 ({fp(NEW)})." in lines
    assert f"Do not remove key #2 ({fp(OLD)}) from" in run.out
    assert raw() == before

    # Without the unreadable one, a dry run exits 0.
    Pixel.objects.update(pixel_token_encrypted="")
    assert rotate("--dry-run").returncode == 0
    assert raw() == [*before[:2], ""]


def test_nothing_stored_and_a_single_key(settings: Any, db: None) -> None:
    configure(settings, ENCRYPTION_KEY=NEW)
    run = rotate()
    assert run.returncode == 0 and "nothing to rotate" in run.out
    assert f"key #1 ({fp(NEW)}): opens 0 secrets" in run.out


def test_no_key_outside_debug_is_a_command_error(settings: Any, db: None) -> None:
    settings.DEBUG = False
    configure(settings, ENCRYPTION_KEY=None)
    run = rotate()
    assert run.returncode == 1 and 'XCONVERSIONS["ENCRYPTION_KEY"] is required' in run.error


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_token_saved_during_the_rotation_is_not_overwritten(
    settings: Any, stored: tuple[AdAccount, Pixel]
) -> None:
    """An admin types new tokens while the rotation runs: the rotation waits for that save
    and keeps it, rather than writing the old token (re-encrypted) over it."""
    configure(settings, ENCRYPTION_KEY=[NEW, OLD])
    saved, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def edit() -> None:
        try:
            with transaction.atomic():
                account = AdAccount.objects.select_for_update().get()
                account.set_tokens("typed-token", "typed-secret")
                account.save()
                saved.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    def run() -> None:
        try:
            outcome["run"] = rotate()
        finally:
            connections.close_all()

    editor = threading.Thread(target=edit)
    editor.start()
    assert saved.wait(timeout=30)
    rotation = threading.Thread(target=run)
    rotation.start()
    # The rotation is blocked by the editor's row lock.
    wait_until(waiting_on_a_lock, 30, "the rotation never waited for the editor")
    release.set()
    editor.join(timeout=30)
    rotation.join(timeout=30)
    assert outcome["run"].returncode == 0
    credentials = AdAccount.objects.get().credentials()
    assert (credentials.access_token, credentials.access_token_secret) == (
        "typed-token",
        "typed-secret",
    )
    assert opened_by(NEW) == [True] * 3


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def test_every_encrypted_column_is_listed_once_on_its_model() -> None:
    # save() re-encrypts, and the rotation and the survey cover, exactly these columns.
    from django_xconversions import stored_secrets

    for model in (AdAccount, Pixel):
        columns = {f.name for f in model._meta.concrete_fields if f.name.endswith("_encrypted")}
        assert set(model.ENCRYPTED_FIELDS) == columns
    surveyed = {(spec.model._meta.db_table, spec.column) for spec in stored_secrets.FIELDS}
    assert surveyed == set(COLUMNS)
