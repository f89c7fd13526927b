"""Database-tagged checks (``manage.py check --database default``; ``migrate`` runs them):
each SOURCES event key routes to a live tag with a pixel, and every stored secret opens
with a configured key. They read the database, so they must stay quiet when its tables
do not exist yet and must never break the caller's transaction."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import checks as django_checks
from django.core.management import call_command
from django.db import connection, transaction

from django_xconversions import checks
from django_xconversions.models import AdAccount, EventTag, Pixel
from tests.conftest import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, configure

pytestmark = pytest.mark.django_db

DATABASE_IDS = {"xconversions.W010", "xconversions.W011", "xconversions.W012"}


def database_messages(ids: set[str] = DATABASE_IDS) -> list[django_checks.CheckMessage]:
    found = django_checks.run_checks(databases=["default"])
    return [m for m in found if m.id in ids]


def make_tag(pixel: Pixel | None, key: str, *, account: AdAccount, **fields: Any) -> EventTag:
    return EventTag.objects.create(
        account=account,
        pixel=pixel,
        remote_id=f"r{key.replace('_', '')}",
        website_tag_id=f"w{key.replace('_', '')}",
        key=key,
        name=key.title(),
        type="PURCHASE",
        **fields,
    )


# -- SOURCES event keys ------------------------------------------------------------------------


def test_every_source_key_routed_gives_no_message(shop_tags: dict[str, EventTag]) -> None:
    assert database_messages() == []


def test_a_key_no_tag_has_is_named_with_the_entry_and_the_fix(settings: Any, pixel: Pixel) -> None:
    make_tag(pixel, "sign_up", account=pixel.account)
    configure(
        settings,
        SOURCES=[
            {
                "model": "shop.Order",
                "event": "purchse",
                "when": {"field": "status", "value": "paid"},
            },
            {"model": "shop.Member", "event": "sign_up"},
        ],
    )
    [warning] = database_messages()
    assert warning.id == "xconversions.W010"
    assert warning.msg == (
        "XCONVERSIONS[\"SOURCES\"][0] (shop.Order) event 'purchse': no event tag has this key; "
        "its conversions are held until this is fixed."
    )
    assert warning.hint.startswith(
        "To fix it: Set the key on an event tag in the admin (Event tags)"
    )
    assert 'XCONVERSIONS["SOURCES"]' in warning.hint


def test_a_deleted_tag_and_a_tag_without_pixel_are_named(settings: Any, pixel: Pixel) -> None:
    make_tag(pixel, "purchase", account=pixel.account, deleted=True)
    make_tag(None, "sign_up", account=pixel.account)
    [deleted, no_pixel] = database_messages()
    assert deleted.id == "xconversions.W010"
    assert deleted.msg.startswith("XCONVERSIONS[\"SOURCES\"][0] (shop.Order) event 'purchase':")
    assert "event tag 'Purchase' with this key was deleted on X" in deleted.msg
    assert no_pixel.id == "xconversions.W011"
    assert no_pixel.msg == (
        "XCONVERSIONS[\"SOURCES\"][1] (shop.Member) event 'sign_up': event tag 'Sign_Up' "
        "has no pixel to send through; its conversions are held until this is fixed."
    )
    assert "Choose the pixel of the event tag in the admin (Event tags)" in no_pixel.hint
    assert "Give the key to a live event tag" in deleted.hint


def test_every_unrouted_key_of_every_entry_in_one_run(settings: Any, db: None) -> None:
    configure(
        settings,
        SOURCES=[
            {"model": "shop.Order", "event": "purchase"},
            {"model": "shop.Member", "event": "sign_up"},
            {"model": "shop.Order", "event": "refund"},
            {"model": "shop.Nope", "event": "broken"},  # a static error; its key is still checked
        ],
    )
    messages = database_messages()
    assert [m.id for m in messages] == ["xconversions.W010"] * 4
    for index, key in enumerate(("purchase", "sign_up", "refund", "broken")):
        assert f'SOURCES"][{index}]' in messages[index].msg and f"'{key}'" in messages[index].msg


def test_database_checks_run_only_when_a_database_is_named(settings: Any, db: None) -> None:
    configure(settings, SOURCES=[{"model": "shop.Order", "event": "purchse"}])
    assert [m for m in django_checks.run_checks() if m.id in DATABASE_IDS] == []
    assert [m.id for m in database_messages()] == ["xconversions.W010"]


def test_check_command_with_database_prints_the_key(settings: Any, db: None, capsys: Any) -> None:
    configure(settings, SOURCES=[{"model": "shop.Order", "event": "purchse"}])
    call_command("check", databases=["default"])
    assert "event 'purchse': no event tag has this key" in capsys.readouterr().err


# -- Secrets no configured key opens ------------------------------------------------------------


def test_secrets_under_the_current_keys_give_no_message(account: AdAccount) -> None:
    pixel = Pixel(pixel_id="p1", account=account)
    pixel.set_pixel_token("pixel-token")
    pixel.save()
    assert database_messages({"xconversions.W012"}) == []


def test_each_account_and_pixel_no_key_opens_is_named(settings: Any, db: None) -> None:
    old_key = settings.XCONVERSIONS["ENCRYPTION_KEY"]
    lost = AdAccount(account_id="lost1", name="Lost")
    lost.set_tokens(ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
    lost.save()
    lost_pixel = Pixel(pixel_id="p1", account=lost, name="Old pixel")
    lost_pixel.set_pixel_token("pixel-token")
    lost_pixel.save()
    # The key changes without keeping the old one; one account is reconnected afterwards.
    new_key = Fernet.generate_key().decode()
    configure(settings, ENCRYPTION_KEY=new_key)
    fine = AdAccount(account_id="fine1", name="Fine")
    fine.set_tokens(ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
    fine.save()
    Pixel.objects.create(pixel_id="p2", account=fine)  # no pixel token: nothing to open

    messages = database_messages({"xconversions.W012"})
    cannot = ' cannot be decrypted with any key in XCONVERSIONS["ENCRYPTION_KEY"] (keys tried: #1 '
    assert [m.msg.split(cannot)[0] for m in messages] == [
        "The access token and access token secret of ad account Lost (lost1)",
        "The pixel token of pixel p1 (Old pixel)",
    ]
    assert all(cannot in m.msg for m in messages)
    assert all("add the key they were written with to the list" in m.msg for m in messages[:1])
    assert "reconnect the account with X" in messages[0].msg
    assert "type the pixel token again" in messages[1].msg
    assert all("the rest keeps sending" in m.hint for m in messages)
    for text in (ACCESS_TOKEN, ACCESS_TOKEN_SECRET, "pixel-token", old_key, new_key):
        assert all(text not in f"{m.msg} {m.hint}" for m in messages)

    # The fix the message names: the old key back in the list (after the current one).
    configure(settings, ENCRYPTION_KEY=[new_key, old_key])
    assert database_messages({"xconversions.W012"}) == []


def test_a_secret_not_written_by_this_app_is_named(account: AdAccount) -> None:
    AdAccount.objects.filter(pk=account.pk).update(access_token_encrypted="plain-text")
    [message] = database_messages({"xconversions.W012"})
    assert message.msg.startswith("The access token of ad account Shop (18ce54d4x5t) cannot be")


def test_a_broken_key_setting_is_reported_once_not_per_account(
    settings: Any, account: AdAccount
) -> None:
    for broken in (None, 42, ["not-a-fernet-key"]):
        configure(settings, ENCRYPTION_KEY=broken)
        found = django_checks.run_checks(databases=["default"])
        assert [m.id for m in found if m.id.startswith("xconversions.E0")] in (
            ["xconversions.E010"],
            ["xconversions.E004"],
        )
        assert [m for m in found if m.id == "xconversions.W012"] == []


# -- Before the tables exist --------------------------------------------------------------------


def test_missing_tables_are_skipped_quietly_and_the_transaction_survives(
    settings: Any, db: None
) -> None:
    configure(settings, SOURCES=[{"model": "shop.Order", "event": "purchse"}])
    with connection.cursor() as cursor:
        for table in ("xconversions_eventtag", "xconversions_adaccount", "xconversions_pixel"):
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")
    try:
        assert database_messages() == []
        # On PostgreSQL a failed query poisons the transaction unless it ran in a savepoint.
        assert transaction.get_connection().needs_rollback is False
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        with connection.cursor() as cursor:
            for table in ("xconversions_eventtag", "xconversions_adaccount", "xconversions_pixel"):
                cursor.execute(f"ALTER TABLE {table}_gone RENAME TO {table}")


def test_the_checks_are_registered_for_the_database_tag() -> None:
    database_checks = django_checks.registry.registry.get_checks()
    tagged = {c.__name__ for c in database_checks if django_checks.Tags.database in c.tags}
    assert {"check_source_routes", "check_stored_secrets"} <= tagged
    assert checks.check_source_routes in database_checks
