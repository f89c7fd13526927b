"""A secret no configured key opens (a key dropped too soon, a database copied from another
site, SECRET_KEY changed under DEBUG) is one account's problem, said in plain words: typed
errors that name XCONVERSIONS["ENCRYPTION_KEY"] and the fix, admin pages that render and say
so, Check access that records the refusal. A missing or malformed key setting is a clear
configuration error, never a TypeError.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from django_xconversions import crypto, errors, stored_secrets
from django_xconversions.connections import client_for
from django_xconversions.emulator import EmulatorServer
from django_xconversions.models import AdAccount, Pixel
from tests.browser import log_in_as_superuser, screenshot

from .conftest import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, configure
from .conftest import ACCOUNT_ID as ACCOUNT

pytestmark = pytest.mark.django_db

PIXEL_TOKEN = "pixel-token-Vb30SECRET"
SETTING = 'XCONVERSIONS["ENCRYPTION_KEY"]'


def new_key() -> str:
    return Fernet.generate_key().decode()


def assert_clean(text: str, *keys: str) -> None:
    """Neither a secret nor a key appears in ``text``."""
    for value in (ACCESS_TOKEN, ACCESS_TOKEN_SECRET, PIXEL_TOKEN, *keys):
        assert value not in text


@pytest.fixture
def lost_key(settings: Any) -> str:
    """The key the fixtures' secrets were written with, then dropped from the setting."""
    old = settings.XCONVERSIONS["ENCRYPTION_KEY"]
    assert isinstance(old, str) and old
    return old


@pytest.fixture
def healthy(db: None) -> AdAccount:
    account = AdAccount(account_id="h3alth4y", name="Healthy")
    account.set_tokens("healthy-token", "healthy-secret")
    account.save()
    return account


@pytest.fixture
def broken(account: AdAccount, lost_key: str, settings: Any) -> AdAccount:
    """The fixtures' account and a token pixel, written under a key no longer configured."""
    pixel = Pixel(pixel_id="t0k3n", account=account, name="Token pixel")
    pixel.set_pixel_token(PIXEL_TOKEN)
    pixel.save()
    configure(settings, ENCRYPTION_KEY=[new_key()])
    return account


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:xconversions_{name}", args=args)


def page_messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# -- crypto --------------------------------------------------------------------------------


def test_a_secret_under_a_dropped_key_raises_unreadable_secret_naming_the_fix(
    broken: AdAccount, lost_key: str, settings: Any
) -> None:
    account = AdAccount.objects.get(pk=broken.pk)
    with pytest.raises(errors.UnreadableSecret) as raised:
        account.credentials()
    error = raised.value
    # One account's problem (delivery pauses that account only), and a configuration error.
    assert isinstance(error, errors.ImproperlyConfiguredAccount)
    assert isinstance(error, errors.XConversionsError)
    assert isinstance(error, ImproperlyConfigured)
    message = str(error)
    assert SETTING in message
    assert "add the key" in message and "reconnect" in message and "pixel token" in message
    # The key tried is named by position and fingerprint, never by value.
    current = settings.XCONVERSIONS["ENCRYPTION_KEY"][0]
    assert f"#1 {crypto.fingerprint(current)}" in message
    assert_clean(message, lost_key, current)
    # The same for the client delivery builds from the account and pixel.
    pixel = Pixel.objects.get(pixel_id="t0k3n")
    with pytest.raises(errors.UnreadableSecret):
        client_for(account, pixel)


def test_plain_text_in_a_secret_column_is_an_unreadable_secret(settings: Any) -> None:
    with pytest.raises(errors.UnreadableSecret, match="not encrypted by django-xconversions"):
        crypto.decrypt("plain-token")
    with pytest.raises(errors.UnreadableSecret):
        crypto.rotate("fernet:garbage")


def test_fingerprint_is_short_stable_and_not_the_key() -> None:
    key = new_key()
    print_ = crypto.fingerprint(key)
    assert re.fullmatch(r"[0-9a-f]{8}", print_)
    assert print_ == crypto.fingerprint(key) != crypto.fingerprint(new_key())
    assert print_ not in key


def test_opening_key_says_which_configured_key_opens_a_secret(settings: Any) -> None:
    first, second, third = new_key(), new_key(), new_key()
    configure(settings, ENCRYPTION_KEY=[second])
    under_second = crypto.encrypt("value")
    configure(settings, ENCRYPTION_KEY=[first, second])
    assert crypto.opening_key(under_second) == 1
    assert crypto.opening_key(crypto.encrypt("value")) == 0
    configure(settings, ENCRYPTION_KEY=[first, third])
    assert crypto.opening_key(under_second) is None
    assert crypto.opening_key("not ours") is None


def test_saving_an_account_with_an_unreadable_secret_keeps_it_unchanged(
    broken: AdAccount,
) -> None:
    before = (broken.access_token_encrypted, broken.access_token_secret_encrypted)
    account = AdAccount.objects.get(pk=broken.pk)
    account.name = "Renamed"
    account.save()  # re-encryption on save cannot open it: the rest still saves
    account.refresh_from_db()
    assert account.name == "Renamed"
    assert (account.access_token_encrypted, account.access_token_secret_encrypted) == before


@pytest.mark.parametrize("missing", [None, "", [], ["", None]])
def test_no_key_outside_debug_is_a_typed_configuration_error(settings: Any, missing: Any) -> None:
    settings.DEBUG = False
    configure(settings, ENCRYPTION_KEY=missing)
    for call in (lambda: crypto.encrypt("x"), lambda: crypto.decrypt("fernet:x")):
        with pytest.raises(errors.EncryptionKeyMissing, match=re.escape(SETTING)) as raised:
            call()
        assert isinstance(raised.value, errors.XConversionsError)
        assert isinstance(raised.value, ImproperlyConfigured)
        # Not an account's problem: delivery must not pause accounts one by one for it.
        assert not isinstance(raised.value, errors.ImproperlyConfiguredAccount)
    assert crypto.key_setting_error() is None  # missing is the check's E003, not malformed


def test_no_key_under_debug_uses_the_derived_key(settings: Any) -> None:
    settings.DEBUG = True
    configure(settings, ENCRYPTION_KEY=None)
    assert crypto.configured_keys() == ()
    assert crypto.decrypt(crypto.encrypt("value")) == "value"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (12345, "must be a Fernet key (str) or a list of them, not int"),
        ({"key": "x"}, "must be a Fernet key (str) or a list of them, not dict"),
        ([new_key(), 7], "entry #2 is int"),
        ("not-a-fernet-key", "entry #1 (fingerprint "),
    ],
)
def test_a_malformed_key_setting_is_a_clear_error_not_a_type_error(
    settings: Any, value: Any, rule: str
) -> None:
    configure(settings, ENCRYPTION_KEY=value)
    problem = crypto.key_setting_error()
    assert problem is not None and SETTING in problem and rule in problem
    for call in (lambda: crypto.encrypt("x"), lambda: crypto.decrypt("fernet:x")):
        with pytest.raises(errors.EncryptionKeyInvalid) as raised:
            call()
        assert str(raised.value) == problem
        assert isinstance(raised.value, ImproperlyConfigured)
    assert "not-a-fernet-key" not in problem


def test_a_key_given_as_bytes_works(settings: Any) -> None:
    key = Fernet.generate_key()  # what Fernet.generate_key() returns, undecoded
    configure(settings, ENCRYPTION_KEY=key)
    assert crypto.key_setting_error() is None
    stored = crypto.encrypt("value")
    configure(settings, ENCRYPTION_KEY=[new_key(), key])
    assert crypto.decrypt(stored) == "value" and crypto.opening_key(stored) == 1


# -- which secrets no key opens ------------------------------------------------------------


def test_unreadable_lists_each_secret_of_each_account_and_pixel(
    broken: AdAccount, healthy: AdAccount
) -> None:
    found = stored_secrets.unreadable()
    assert sorted(s.describe() for s in found) == [
        "ad account Shop (18ce54d4x5t): access token",
        "ad account Shop (18ce54d4x5t): access token secret",
        "pixel t0k3n (Token pixel): pixel token",
    ]
    assert [s.describe() for s in stored_secrets.unreadable_of_account(healthy)] == []
    assert len(stored_secrets.unreadable_of_account(broken)) == 3  # its pixel's too
    pixel = Pixel.objects.get(pixel_id="t0k3n")
    assert [s.label for s in stored_secrets.unreadable_of_pixel(pixel)] == ["pixel token"]


# -- the admin -----------------------------------------------------------------------------


def test_account_and_pixel_pages_render_and_say_what_to_do(
    staff: Client, broken: AdAccount, healthy: AdAccount, lost_key: str
) -> None:
    page = staff.get(url("adaccount_change", broken.pk))
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert SETTING in text and "cannot be decrypted" in text
    assert "access token" in text and "Connect with X" in text
    assert_clean(text, lost_key)
    # The healthy account's page says nothing of the kind.
    assert (
        "cannot be decrypted" not in staff.get(url("adaccount_change", healthy.pk)).content.decode()
    )

    pixel = Pixel.objects.get(pixel_id="t0k3n")
    page = staff.get(url("pixel_change", pixel.pk))
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert SETTING in text and "cannot be decrypted" in text and "pixel token" in text
    for name in ("adaccount_changelist", "pixel_changelist"):
        listing = staff.get(url(name))
        assert listing.status_code == 200, name
        assert "Shop (18ce54d4x5t)" in listing.content.decode()
    assert any(
        "cannot be decrypted" in m for m in page_messages(staff.get(url("adaccount_changelist")))
    )


def test_check_access_answers_with_the_reason_and_records_it(
    staff: Client, emulator: EmulatorServer, broken: AdAccount, lost_key: str
) -> None:
    answer = staff.post(url("adaccount_check_access", broken.pk), follow=True)
    assert answer.status_code == 200
    shown = " ".join(page_messages(answer))
    assert SETTING in shown and "cannot be decrypted" in shown
    assert_clean(answer.content.decode(), lost_key)
    broken.refresh_from_db()
    assert broken.access_check_ok is False and broken.access_checked_at is not None
    assert SETTING in broken.access_check_message
    assert emulator.requests == []  # nothing left for X without credentials

    # The list action does the same, for every selected account.
    answer = staff.post(
        url("adaccount_changelist"),
        {"action": "check_access_action", "_selected_action": [broken.pk]},
        follow=True,
    )
    assert answer.status_code == 200 and SETTING in " ".join(page_messages(answer))


def test_editing_an_account_whose_secrets_no_key_opens(
    staff: Client, broken: AdAccount, lost_key: str
) -> None:
    # Renaming saves, the unreadable tokens kept as they are.
    answer = staff.post(
        url("adaccount_change", broken.pk), {"account_id": broken.account_id, "name": "Renamed"}
    )
    assert answer.status_code == 302
    broken.refresh_from_db()
    assert broken.name == "Renamed"
    assert stored_secrets.unreadable_of_account(broken)

    # One new token alone cannot be paired with the stored secret no key opens: a form error.
    answer = staff.post(
        url("adaccount_change", broken.pk),
        {"account_id": broken.account_id, "name": "Renamed", "access_token": "new-token"},
    )
    assert answer.status_code == 200
    form_errors = str(answer.context["adminform"].form.errors)
    assert "access token secret" in form_errors and "cannot be decrypted" in form_errors

    # Both typed: stored under the current key, readable again.
    answer = staff.post(
        url("adaccount_change", broken.pk),
        {
            "account_id": broken.account_id,
            "name": "Renamed",
            "access_token": "new-token",
            "access_token_secret": "new-secret",
        },
    )
    assert answer.status_code == 302
    account = AdAccount.objects.get(pk=broken.pk)
    assert account.credentials().access_token == "new-token"
    assert [s.label for s in stored_secrets.unreadable_of_account(account)] == ["pixel token"]

    # A new pixel token fixes the pixel.
    pixel = Pixel.objects.get(pixel_id="t0k3n")
    answer = staff.post(
        url("pixel_change", pixel.pk),
        {"pixel_id": pixel.pixel_id, "account": account.pk, "name": "x", "pixel_token": "new-px"},
    )
    assert answer.status_code == 302
    assert stored_secrets.unreadable_of_account(account) == []


@pytest.mark.parametrize(
    ("value", "debug", "said"),
    [
        (12345, True, "must be a Fernet key (str) or a list of them, not int"),
        (None, False, "is required to store and read tokens"),
    ],
)
def test_admin_pages_render_when_the_key_setting_itself_is_unusable(
    staff: Client,
    emulator: EmulatorServer,
    account: AdAccount,
    settings: Any,
    value: Any,
    debug: bool,
    said: str,
) -> None:
    pixel = Pixel.objects.create(pixel_id="p1x", account=account)
    settings.DEBUG = debug
    configure(settings, ENCRYPTION_KEY=value)
    for page in (
        url("adaccount_changelist"),
        url("adaccount_change", account.pk),
        url("pixel_change", pixel.pk),
        url("adaccount_add"),
    ):
        answer = staff.get(page)
        assert answer.status_code == 200, page
    shown = " ".join(page_messages(staff.get(url("adaccount_change", account.pk))))
    assert SETTING in shown and said in shown

    # Renaming still saves; typed tokens are refused with the reason, nothing stored.
    before = account.access_token_encrypted
    answer = staff.post(url("adaccount_change", account.pk), {"account_id": ACCOUNT, "name": "R"})
    assert answer.status_code == 302
    answer = staff.post(
        url("adaccount_change", account.pk),
        {"account_id": ACCOUNT, "name": "R", "access_token": "a", "access_token_secret": "b"},
    )
    assert answer.status_code == 200
    assert said in " ".join(answer.context["adminform"].form.non_field_errors())
    account.refresh_from_db()
    assert (account.name, account.access_token_encrypted) == ("R", before)
    answer = staff.post(
        url("pixel_change", pixel.pk),
        {"pixel_id": "p1x", "account": account.pk, "name": "", "pixel_token": "t"},
    )
    assert answer.status_code == 200 and not Pixel.objects.get(pk=pixel.pk).has_pixel_token

    # Check access records the reason.
    answer = staff.post(url("adaccount_check_access", account.pk), follow=True)
    assert answer.status_code == 200 and said in " ".join(page_messages(answer))
    account.refresh_from_db()
    assert account.access_check_ok is False and said in account.access_check_message


def test_tag_sync_and_tag_form_say_why_instead_of_failing(
    staff: Client, emulator: EmulatorServer, broken: AdAccount
) -> None:
    answer = staff.post(url("eventtag_sync"), follow=True)
    assert answer.status_code == 200
    assert any("tag sync failed" in m and SETTING in m for m in page_messages(answer))

    pixel = Pixel.objects.get(pixel_id="t0k3n")
    answer = staff.post(
        url("eventtag_add"),
        {
            "account": broken.pk,
            "pixel": pixel.pk,
            "key": "purchase",
            "name": "Purchase",
            "type": "PURCHASE",
            "click_window": 30,
            "view_through_window": 1,
        },
    )
    assert answer.status_code == 200  # the form again, with the reason
    assert SETTING in " ".join(answer.context["adminform"].form.non_field_errors())
    assert emulator.requests == []


def test_connect_flow_started_under_another_key_ends_with_a_message(
    staff: Client, emulator: EmulatorServer, settings: Any
) -> None:
    callback = "http://testserver" + url("adaccount_connect_callback")
    emulator.allow_callback("test-consumer-key", callback)
    answer = staff.post(url("adaccount_connect"), {"method": "web", "new_account_id": "n3wacc"})
    token = answer["Location"].split("oauth_token=")[1]
    configure(settings, ENCRYPTION_KEY=[new_key()])  # the key changed mid-flow
    verifier = emulator.authorize(token, "756201191646691328")
    done = staff.get(callback, {"oauth_token": token, "oauth_verifier": verifier}, follow=True)
    assert done.status_code == 200
    assert any(SETTING in m for m in page_messages(done))
    assert not AdAccount.objects.filter(account_id="n3wacc").exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_account_page_in_chromium(
    page: Any, live_server: Any, emulator: EmulatorServer, broken: AdAccount
) -> None:
    log_in_as_superuser(page, live_server.url)
    page.goto(f"{live_server.url}{url('adaccount_change', broken.pk)}")
    warning = page.inner_text("ul.messagelist")
    assert SETTING in warning and "cannot be decrypted" in warning
    page.click("text=Check access")
    page.wait_for_selector("ul.messagelist li.error, ul.messagelist li.warning")
    assert "cannot be decrypted" in page.inner_text("ul.messagelist")
    screenshot(page, "admin-unreadable-secret")
    assert page.dialogs == []
    broken.refresh_from_db()
    assert broken.access_check_ok is False
