"""Secrets proof: access tokens, token secrets, pixel tokens and the consumer secret are
ciphertext at rest, and never found in logs (every logger at DEBUG, requests, urllib3 and
the OAuth libraries included), in reprs, in exceptions, in admin pages (forms, lists, error
pages on bad input), in stored error messages or in error reports; key rotation works.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from django_xconversions import checks, crypto, delivery, oauth_flow
from django_xconversions.actions import check_access
from django_xconversions.admin.connect_session import SESSION_KEY
from django_xconversions.client import XAdsClient
from django_xconversions.connections import client_for
from django_xconversions.emulator import EmulatorServer
from django_xconversions.errors import Unauthorized, XAdsError
from django_xconversions.models import AdAccount, EventTag, Pixel
from django_xconversions.tags import sync_account_tags
from django_xconversions.tracking import track

from .conftest import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    ACCOUNT_ID,
    CONSUMER_SECRET,
    PIXEL_ID,
    USER_ID,
    configure,
    mirror_tag,
)

pytestmark = pytest.mark.django_db

PIXEL_TOKEN = "pixel-token-Zq8dSECRET"
TYPED_TOKEN = "typed-access-token-Kx91SECRET"
TYPED_SECRET = "typed-access-secret-Pw44SECRET"
SECRETS = (ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_SECRET, PIXEL_TOKEN)
LOGGERS = ("", "requests", "urllib3", "oauthlib", "requests_oauthlib", "django")


def leaked(text: str, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    return [secret for secret in secrets if secret in text]


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()}\n{r.__dict__!r}" for r in caplog.records)


def raw_columns(table: str, columns: str, pk: int) -> tuple[str, ...]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    previous = connection.force_debug_cursor
    connection.force_debug_cursor = True  # SQL parameters are logged too
    try:
        yield caplog
    finally:
        connection.force_debug_cursor = previous


@pytest.fixture
def token_pixel(emulator: EmulatorServer, account: AdAccount) -> Pixel:
    """A second pixel that sends with an X-Pixel-Token instead of OAuth."""
    emulator.add_pixel(ACCOUNT_ID, "t0k3n", pixel_token=PIXEL_TOKEN)
    pixel = Pixel(pixel_id="t0k3n", account=account, name="Token pixel")
    pixel.set_pixel_token(PIXEL_TOKEN)
    pixel.save()
    return pixel


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


# -- at rest -------------------------------------------------------------------------------


def test_tokens_are_ciphertext_in_the_raw_columns(account: AdAccount, token_pixel: Pixel) -> None:
    stored = raw_columns(
        "xconversions_adaccount",
        "access_token_encrypted, access_token_secret_encrypted",
        account.pk,
    ) + raw_columns("xconversions_pixel", "pixel_token_encrypted", token_pixel.pk)
    assert all(value.startswith(crypto.PREFIX) for value in stored)
    assert leaked(" ".join(stored)) == []
    assert [crypto.decrypt(value) for value in stored] == [
        ACCESS_TOKEN,
        ACCESS_TOKEN_SECRET,
        PIXEL_TOKEN,
    ]
    # Fernet: the same token encrypts differently every time (random IV).
    assert crypto.encrypt(ACCESS_TOKEN) != crypto.encrypt(ACCESS_TOKEN)


def test_no_table_holds_a_secret_in_clear(
    emulator: EmulatorServer, account: AdAccount, token_pixel: Pixel, pixel: Pixel
) -> None:
    mirror_tag(emulator, pixel, "purchase", "PURCHASE")
    track("purchase", email="buyer@example.com", conversion_id="1")
    delivery.send_pending()
    check_access(account)
    sync_account_tags(account)
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            assert leaked(repr(cursor.fetchall())) == [], table


# -- logs ----------------------------------------------------------------------------------


def test_send_check_access_and_tag_sync_log_no_secret(
    debug_logs: pytest.LogCaptureFixture,
    emulator: EmulatorServer,
    account: AdAccount,
    pixel: Pixel,
    token_pixel: Pixel,
) -> None:
    oauth_tag = mirror_tag(emulator, pixel, "purchase", "PURCHASE")
    remote = emulator.add_tag(ACCOUNT_ID, name="Lead", type="SIGN_UP")
    EventTag.objects.create(
        account=account,
        pixel=token_pixel,
        remote_id=remote["id"],
        website_tag_id=remote["website_tag_id"],
        key="sign_up",
        name="Lead",
        type="SIGN_UP",
    )
    track("purchase", email="a@example.com", conversion_id="1")
    track("sign_up", email="b@example.com", conversion_id="2")
    summary = delivery.send_pending()
    assert summary.sent == 2 and oauth_tag.pk
    assert check_access(account).ok is True
    assert sync_account_tags(account).updated >= 1
    names = {r.name for r in debug_logs.records}
    # Capture really was on for the HTTP library and our client.
    assert {"urllib3.connectionpool", "django_xconversions.client"} <= names, names
    text = log_text(debug_logs)
    assert leaked(text) == []
    assert "oauth_signature" not in text and "X-Pixel-Token" not in text


def test_connect_with_x_logs_and_shows_no_token(
    debug_logs: pytest.LogCaptureFixture, emulator: EmulatorServer, staff: Client, settings: Any
) -> None:
    callback = "http://testserver" + reverse("admin:xconversions_adaccount_connect_callback")
    emulator.allow_callback("test-consumer-key", callback)
    connect = reverse("admin:xconversions_adaccount_connect")
    answer = staff.post(connect, {"method": "web", "new_account_id": "18ce54d4x5t"})
    assert answer.status_code == 302
    token = answer["Location"].split("oauth_token=")[1]
    (flow,) = staff.session[SESSION_KEY].values()
    request_secret = crypto.decrypt(flow["secret_encrypted"])
    verifier = emulator.authorize(token, USER_ID)
    done = staff.get(callback, {"oauth_token": token, "oauth_verifier": verifier})
    assert done.status_code == 302
    account = AdAccount.objects.get(account_id=ACCOUNT_ID)
    issued = account.credentials()
    secrets = (*SECRETS, issued.access_token, issued.access_token_secret, request_secret)
    assert leaked(log_text(debug_logs), secrets) == []
    page = staff.get(done["Location"])
    assert page.status_code == 200 and leaked(page.content.decode(), secrets) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_data FROM django_session")
        assert leaked(repr(cursor.fetchall()), secrets) == []


# -- reprs and exceptions ------------------------------------------------------------------


def test_reprs_and_strings_hide_secrets(
    emulator: EmulatorServer, account: AdAccount, token_pixel: Pixel
) -> None:
    credentials = account.credentials(token_pixel)
    clients = [
        XAdsClient(
            consumer_secret=CONSUMER_SECRET,
            access_token=ACCESS_TOKEN,
            access_token_secret=ACCESS_TOKEN_SECRET,
        ),
        XAdsClient(pixel_token=PIXEL_TOKEN),
        client_for(account),
    ]
    objects: list[Any] = [
        account,
        token_pixel,
        credentials,
        *clients,
        oauth_flow.RequestToken("public-request-token", ACCESS_TOKEN_SECRET),
        oauth_flow.AccessToken(ACCESS_TOKEN, ACCESS_TOKEN_SECRET, USER_ID, "shop"),
    ]
    for thing in objects:
        assert leaked(repr(thing) + str(thing)) == [], type(thing)
    for client in clients:
        client.close()


def test_a_401_error_and_the_paused_reason_carry_no_secret(
    emulator: EmulatorServer, account: AdAccount, purchase_tag: EventTag
) -> None:
    wrong = "wrong-secret-Hh72SECRET"
    client = XAdsClient(access_token=ACCESS_TOKEN, access_token_secret=wrong)
    with pytest.raises(Unauthorized) as refused:
        client.authenticated_user_access(ACCOUNT_ID)
    error: XAdsError = refused.value
    text = f"{error} {error!r} {error.messages} {error.body}"
    assert error.status == 401 and leaked(text, (*SECRETS, wrong)) == []

    account.set_tokens(ACCESS_TOKEN, wrong)
    account.save()
    track("purchase", email="c@example.com", conversion_id="3")
    summary = delivery.send_pending()
    account.refresh_from_db()
    assert account.status == "paused" and "X refused the credentials" in account.paused_reason
    stored = " ".join([account.paused_reason, *summary.paused.values()])
    assert leaked(stored, (*SECRETS, wrong)) == []
    assert check_access(account).ok is False
    account.refresh_from_db()
    assert account.access_check_message and leaked(account.access_check_message, (wrong,)) == []


# -- the admin -----------------------------------------------------------------------------


def test_admin_pages_never_show_a_token(
    staff: Client, account: AdAccount, token_pixel: Pixel
) -> None:
    pages = [
        reverse("admin:xconversions_adaccount_changelist"),
        reverse("admin:xconversions_adaccount_change", args=[account.pk]),
        reverse("admin:xconversions_adaccount_add"),
        reverse("admin:xconversions_pixel_changelist"),
        reverse("admin:xconversions_pixel_change", args=[token_pixel.pk]),
        reverse("admin:xconversions_adaccount_connect"),
        reverse("admin:xconversions_adaccount_changelist") + "?q=" + ACCESS_TOKEN[:8],
    ]
    for page in pages:
        response = staff.get(page)
        assert response.status_code == 200, page
        assert leaked(response.content.decode()) == [], page
    # The stored state shows as a yes/no only.
    page = staff.get(pages[1]).content.decode()
    assert re.search(r'field-has_tokens_display.*?<img src="[^"]*icon-yes', page, re.S), page


def test_bad_input_pages_do_not_echo_typed_tokens(
    staff: Client, account: AdAccount, token_pixel: Pixel
) -> None:
    typed = (TYPED_TOKEN, TYPED_SECRET)
    # An invalid account id: the form comes back with errors and empty secret fields.
    response = staff.post(
        reverse("admin:xconversions_adaccount_add"),
        {
            "account_id": "NOT BASE36",
            "access_token": TYPED_TOKEN,
            "access_token_secret": TYPED_SECRET,
        },
    )
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert leaked(response.content.decode(), typed) == []
    # Error reports (ADMINS mail, DEBUG page) list POST data: the tokens are cleansed.
    request = response.wsgi_request
    post = SafeExceptionReporterFilter().get_post_parameters(request)
    assert TYPED_TOKEN not in repr(post) and TYPED_SECRET not in repr(post)
    assert post["account_id"] == "NOT BASE36"

    response = staff.post(
        reverse("admin:xconversions_pixel_change", args=[token_pixel.pk]),
        {"pixel_id": "BAD!", "account": str(account.pk), "name": "x", "pixel_token": TYPED_TOKEN},
    )
    assert response.status_code == 200 and leaked(response.content.decode(), typed) == []
    post = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
    assert TYPED_TOKEN not in repr(post)

    # A valid change with new tokens: stored encrypted, never echoed back.
    response = staff.post(
        reverse("admin:xconversions_adaccount_change", args=[account.pk]),
        {"account_id": ACCOUNT_ID, "name": "Shop", "access_token": TYPED_TOKEN},
        follow=True,
    )
    assert response.status_code == 200 and leaked(response.content.decode(), typed) == []
    account.refresh_from_db()
    assert account.credentials().access_token == TYPED_TOKEN
    assert account.credentials().access_token_secret == ACCESS_TOKEN_SECRET  # kept
    assert TYPED_TOKEN not in account.access_token_encrypted
    # The admin's history says which field changed, not to what.
    history = staff.get(reverse("admin:xconversions_adaccount_history", args=[account.pk]))
    assert leaked(history.content.decode(), typed) == []


def test_pin_is_cleansed_from_error_reports(staff: Client) -> None:
    response = staff.post(reverse("admin:xconversions_adaccount_connect_pin"), {"pin": "1234567"})
    assert response.status_code == 302  # unknown flow
    post = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
    assert "1234567" not in repr(post)


# -- key rotation and the system check -------------------------------------------------------


def test_key_rotation_old_values_decrypt_and_resaving_reencrypts(
    settings: Any, account: AdAccount, token_pixel: Pixel
) -> None:
    key_a = settings.XCONVERSIONS["ENCRYPTION_KEY"]
    key_b = Fernet.generate_key().decode()
    columns = "access_token_encrypted, access_token_secret_encrypted"
    before = raw_columns("xconversions_adaccount", columns, account.pk)
    assert all(Fernet(key_a.encode()).decrypt(v[len(crypto.PREFIX) :].encode()) for v in before)

    configure(settings, ENCRYPTION_KEY=[key_b, key_a])
    account = AdAccount.objects.get(pk=account.pk)
    token_pixel = Pixel.objects.get(pk=token_pixel.pk)
    # Old values decrypt with the old key still listed.
    credentials = account.credentials(token_pixel)
    assert (credentials.access_token, credentials.pixel_token) == (ACCESS_TOKEN, PIXEL_TOKEN)
    # Saves that do not write the token columns leave them alone...
    account.resume()
    assert raw_columns("xconversions_adaccount", columns, account.pk) == before
    # ... a full save re-encrypts with B.
    account.save()
    token_pixel.save()
    after = raw_columns("xconversions_adaccount", columns, account.pk) + raw_columns(
        "xconversions_pixel", "pixel_token_encrypted", token_pixel.pk
    )
    assert all(value.startswith(crypto.PREFIX) for value in after)
    assert after[:2] != before
    fernet_b = Fernet(key_b.encode())
    assert [fernet_b.decrypt(v[len(crypto.PREFIX) :].encode()).decode() for v in after] == [
        ACCESS_TOKEN,
        ACCESS_TOKEN_SECRET,
        PIXEL_TOKEN,
    ]
    # A second save keeps the same ciphertext (already current: no needless rewrite).
    account.save()
    assert raw_columns("xconversions_adaccount", columns, account.pk) == after[:2]

    # Key A can now be dropped.
    configure(settings, ENCRYPTION_KEY=[key_b])
    account = AdAccount.objects.get(pk=account.pk)
    assert account.credentials().access_token == ACCESS_TOKEN
    # Without the key a value was written with, the error names the setting, not the value.
    configure(settings, ENCRYPTION_KEY=[Fernet.generate_key().decode()])
    with pytest.raises(ImproperlyConfigured, match=r'XCONVERSIONS\["ENCRYPTION_KEY"\]') as exc:
        account.credentials()
    assert leaked(str(exc.value)) == []


def test_missing_key_is_a_check_error_outside_debug_and_refuses_to_encrypt(
    settings: Any,
) -> None:
    settings.DEBUG = False
    for missing in ("", [], ["", ""]):
        configure(settings, ENCRYPTION_KEY=missing)
        assert [m.id for m in checks.check_encryption_key()] == ["xconversions.E003"]
        with pytest.raises(ImproperlyConfigured, match="ENCRYPTION_KEY"):
            crypto.encrypt(ACCESS_TOKEN)
    configure(settings, ENCRYPTION_KEY=[Fernet.generate_key().decode(), "not-a-key"])
    [error] = checks.check_encryption_key()
    assert error.id == "xconversions.E004" and "entry 1" in error.msg
    settings.DEBUG = True
    configure(settings, ENCRYPTION_KEY="")
    assert [m.id for m in checks.check_encryption_key()] == ["xconversions.W001"]


def test_pixel_with_token_sends_via_header(
    emulator: EmulatorServer, token_pixel: Pixel, account: AdAccount
) -> None:
    # Sanity for the fixtures above: the pixel token is what authenticates that pixel.
    assert token_pixel.pixel_id != PIXEL_ID
    with client_for(account, token_pixel) as client:
        assert client.uses_pixel_token and "pixel token" in repr(client)
