"""Connect with X: the 3-legged OAuth 1.0a flow against the emulator over real HTTP.

First the client (oauth_flow.py) and the emulator's endpoints, then the admin views
through Django's test client: session binding, refusals, the PIN variant, encryption.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from requests_oauthlib import OAuth1

from django_xconversions import oauth_flow
from django_xconversions.admin.connect_session import SESSION_KEY
from django_xconversions.client import XAdsClient
from django_xconversions.emulator import EmulatorServer, ManualClock, seed
from django_xconversions.errors import ImproperlyConfiguredAccount
from django_xconversions.models import AdAccount
from django_xconversions.oauth_flow import OAuthFlowError

from .conftest import ACCESS_TOKEN, ACCOUNT_ID, CONSUMER_KEY, CONSUMER_SECRET, USER_ID, configure

CALLBACK = "https://shop.example/x/callback/"
ADMIN = "/admin/xconversions/adaccount/"
CONNECT, CALLBACK_VIEW, PIN_VIEW = (
    f"{ADMIN}connect/",
    f"{ADMIN}connect/callback/",
    f"{ADMIN}connect/pin/",
)
ADMIN_CALLBACK = f"http://testserver{CALLBACK_VIEW}"


@pytest.fixture
def x(emulator: EmulatorServer, settings: Any) -> EmulatorServer:
    """The emulator as OAuth host too, with the callbacks these tests use allowlisted.

    (tests/conftest.py's emulator fixture could set OAUTH_BASE_URL itself.)"""
    configure(settings, OAUTH_BASE_URL=emulator.url)
    emulator.allow_callback(CONSUMER_KEY, CALLBACK)
    emulator.allow_callback(CONSUMER_KEY, ADMIN_CALLBACK)
    return emulator


def works(token: str, secret: str) -> dict[str, Any]:
    client = XAdsClient(access_token=token, access_token_secret=secret)
    with client:
        return client.authenticated_user_access(ACCOUNT_ID)


def authorize_via_page(x: EmulatorServer, token: str, action: str = "authorize") -> Any:
    """Approve (or cancel) on the emulator's authorize page, as a browser would."""
    page = requests.get(x.authorize_url(token), timeout=5)
    assert page.status_code == 200
    fields = dict(re.findall(r"name='(\w+)' value='([^']*)'", page.text))
    return requests.post(
        f"{x.url}/oauth/authorize",
        data={**fields, "user_id": USER_ID, "action": action},
        allow_redirects=False,
        timeout=5,
    )


# -- client and emulator -----------------------------------------------------------------


def test_request_token_authorize_access_token_and_the_token_works(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    verifier = x.authorize(request_token.token, USER_ID)
    access = oauth_flow.fetch_access_token(request_token, verifier)

    assert (access.user_id, access.screen_name) == (USER_ID, "shop")
    assert access.token != ACCESS_TOKEN and access.token.startswith(f"{USER_ID}-")
    assert works(access.token, access.secret) == {
        "user_id": USER_ID,
        "permissions": ["ACCOUNT_ADMIN"],
    }
    # Authorizing the same app again gives the same token, as X does.
    again = oauth_flow.fetch_request_token(CALLBACK)
    same = oauth_flow.fetch_access_token(again, x.authorize(again.token, USER_ID))
    assert (same.token, same.secret) == (access.token, access.secret)


def test_authorize_page_redirects_to_the_callback_keeping_its_query(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(f"{CALLBACK}?source=admin")
    answer = authorize_via_page(x, request_token.token)

    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    params = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    assert params["source"] == ["admin"] and params["oauth_token"] == [request_token.token]
    access = oauth_flow.fetch_access_token(request_token, params["oauth_verifier"][0])
    assert works(access.token, access.secret)["user_id"] == USER_ID


def test_authorize_form_needs_the_page_nonce(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    forged = requests.post(
        f"{x.url}/oauth/authorize",
        data={"oauth_token": request_token.token, "user_id": USER_ID, "action": "authorize"},
        allow_redirects=False,
        timeout=5,
    )
    assert forged.status_code == 403 and "no longer valid" in forged.text


def test_cancel_redirects_with_denied(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    answer = authorize_via_page(x, request_token.token, action="cancel")
    assert parse_qs(urlsplit(answer.headers["Location"]).query) == {"denied": [request_token.token]}
    with pytest.raises(OAuthFlowError, match="Invalid or expired token"):
        oauth_flow.fetch_access_token(request_token, "anything")


def test_pin_flow(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(oauth_flow.OOB)
    page = authorize_via_page(x, request_token.token)
    pin = re.search(r"id='oauth_pin'[^>]*>(\d+)<", page.text)
    assert page.status_code == 200 and pin is not None and len(pin.group(1)) == 7
    access = oauth_flow.fetch_access_token(request_token, pin.group(1))
    assert works(access.token, access.secret)["permissions"] == ["ACCOUNT_ADMIN"]


def test_callback_must_be_allowlisted(x: EmulatorServer) -> None:
    with pytest.raises(OAuthFlowError, match="Callback URL not approved") as refused:
        oauth_flow.fetch_request_token("https://elsewhere.example/x/callback/")
    assert refused.value.status == 403
    # Exact match: the trailing slash counts.
    with pytest.raises(OAuthFlowError, match="Callback URL not approved"):
        oauth_flow.fetch_request_token(CALLBACK.rstrip("/"))
    # What X's portal refuses, the emulator's seeding refuses.
    for bad in ("http://localhost:8000/cb/", "https://shop.example/cb/?a=1", "javascript:x"):
        with pytest.raises(ValueError):
            x.allow_callback(CONSUMER_KEY, bad)


def test_seeding_takes_callback_urls() -> None:
    emulator = EmulatorServer()
    app = {"consumer_key": "k", "consumer_secret": "s", "callback_urls": [CALLBACK]}
    seed(emulator, {"apps": [app]})
    assert emulator.api.oauth_flow.callback_urls == {"k": [CALLBACK]}


def test_request_token_without_callback_is_refused(x: EmulatorServer) -> None:
    answer = requests.post(
        f"{x.url}/oauth/request_token", auth=OAuth1(CONSUMER_KEY, CONSUMER_SECRET), timeout=5
    )
    assert answer.status_code == 401
    assert answer.json() == {"errors": [{"code": 32, "message": "Could not authenticate you."}]}


def test_bad_consumer_secret_is_refused(x: EmulatorServer, settings: Any) -> None:
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    verifier = x.authorize(request_token.token, USER_ID)
    configure(settings, CONSUMER_SECRET="not-the-secret")
    with pytest.raises(OAuthFlowError, match="Could not authenticate you") as refused:
        oauth_flow.fetch_request_token(CALLBACK)
    assert refused.value.status == 401
    with pytest.raises(OAuthFlowError, match="Could not authenticate you"):
        oauth_flow.fetch_access_token(request_token, verifier)


@pytest.mark.parametrize("missing", ["", None])
def test_missing_consumer_credentials_name_the_settings_and_call_nobody(
    x: EmulatorServer, settings: Any, missing: Any
) -> None:
    configure(settings, CONSUMER_KEY=missing, CONSUMER_SECRET=missing)
    with pytest.raises(ImproperlyConfiguredAccount) as raised:
        oauth_flow.fetch_request_token(CALLBACK)
    assert str(raised.value) == (
        'XCONVERSIONS["CONSUMER_KEY"] and XCONVERSIONS["CONSUMER_SECRET"] are required to '
        "connect with X"
    )
    with pytest.raises(ImproperlyConfiguredAccount, match="CONSUMER_KEY"):
        oauth_flow.fetch_access_token(oauth_flow.RequestToken("t", "s"), "1234567")
    assert x.requests == []


def test_access_token_signed_with_the_wrong_request_token_secret(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    verifier = x.authorize(request_token.token, USER_ID)
    forged = oauth_flow.RequestToken(request_token.token, "guessed-secret")
    with pytest.raises(OAuthFlowError, match="Could not authenticate you"):
        oauth_flow.fetch_access_token(forged, verifier)
    # The genuine holder can still finish: a forgery does not burn the token.
    assert oauth_flow.fetch_access_token(request_token, verifier).user_id == USER_ID


def test_request_token_is_single_use(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    verifier = x.authorize(request_token.token, USER_ID)
    oauth_flow.fetch_access_token(request_token, verifier)
    with pytest.raises(OAuthFlowError, match="Invalid or expired token") as replay:
        oauth_flow.fetch_access_token(request_token, verifier)
    assert replay.value.status == 401
    assert requests.get(x.authorize_url(request_token.token), timeout=5).status_code == 403


def test_wrong_or_missing_verifier_is_refused_and_burns_the_token(x: EmulatorServer) -> None:
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    verifier = x.authorize(request_token.token, USER_ID)
    with pytest.raises(OAuthFlowError, match="Invalid oauth_verifier parameter") as wrong:
        oauth_flow.fetch_access_token(request_token, verifier + "x")
    assert wrong.value.status == 401
    with pytest.raises(OAuthFlowError, match="Invalid or expired token"):
        oauth_flow.fetch_access_token(request_token, verifier)
    # A token nobody approved has no verifier to match.
    unapproved = oauth_flow.fetch_request_token(CALLBACK)
    with pytest.raises(OAuthFlowError, match="Invalid oauth_verifier parameter"):
        oauth_flow.fetch_access_token(unapproved, "")


def test_request_tokens_expire(x: EmulatorServer) -> None:
    x.clock = clock = ManualClock()
    x.api.oauth_flow.request_token_ttl = 60
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    clock.advance(59.9)
    verifier = x.authorize(request_token.token, USER_ID)  # still live just before its end
    clock.advance(0.1)
    with pytest.raises(OAuthFlowError, match="Invalid or expired token"):
        oauth_flow.fetch_access_token(request_token, verifier)


def test_tokens_are_never_logged_nor_in_reprs(
    x: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request_token = oauth_flow.fetch_request_token(CALLBACK)
    access = oauth_flow.fetch_access_token(request_token, x.authorize(request_token.token, USER_ID))
    logged = caplog.text + repr(request_token) + repr(access)
    for secret in (request_token.secret, access.token, access.secret):
        assert secret not in logged


def test_unreachable_host_is_a_clear_error(settings: Any) -> None:
    configure(settings, OAUTH_BASE_URL="http://127.0.0.1:9", CONNECT_TIMEOUT=1)
    with pytest.raises(OAuthFlowError, match="Could not reach X"):
        oauth_flow.fetch_request_token(CALLBACK)


# -- the admin views ---------------------------------------------------------------------


@pytest.fixture
def bare_account(db: None) -> AdAccount:
    return AdAccount.objects.create(account_id=ACCOUNT_ID, name="Shop")


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def start(client: Client, **form: str) -> Any:
    return client.post(CONNECT, {"method": "web", **form})


def token_of(answer: Any) -> str:
    return parse_qs(urlsplit(answer["Location"]).query)["oauth_token"][0]


def messages_of(client: Client, url: str) -> str:
    return client.get(url).content.decode()


def test_admin_web_flow_stores_tokens_encrypted(
    x: EmulatorServer, staff: Client, bare_account: AdAccount
) -> None:
    page = staff.get(f"{CONNECT}?account={bare_account.pk}")
    assert page.status_code == 200 and ADMIN_CALLBACK in page.content.decode()

    answer = start(staff, account=str(bare_account.pk))
    assert answer.status_code == 302 and answer["Location"].startswith(f"{x.url}/oauth/authorize")
    token = token_of(answer)
    # The session keeps the request token secret encrypted only.
    (flow,) = staff.session[SESSION_KEY].values()
    assert flow["token"] == token and flow["secret_encrypted"].startswith("fernet:")

    verifier = x.authorize(token, USER_ID)
    done = staff.get(CALLBACK_VIEW, {"oauth_token": token, "oauth_verifier": verifier})
    assert done.status_code == 302 and done["Location"] == f"{ADMIN}{bare_account.pk}/change/"
    assert "is connected with X as @shop" in messages_of(staff, done["Location"])
    assert SESSION_KEY not in staff.session

    bare_account.refresh_from_db()
    credentials = bare_account.credentials()
    assert works(credentials.access_token, credentials.access_token_secret)["user_id"] == USER_ID
    assert (bare_account.x_user_id, bare_account.x_screen_name) == (USER_ID, "shop")
    assert bare_account.access_check_ok is True
    # The raw columns hold ciphertext, never the tokens.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token_encrypted, access_token_secret_encrypted "
            "FROM xconversions_adaccount WHERE id = %s",
            [bare_account.pk],
        )
        raw = cursor.fetchone()
    assert raw is not None and all(value.startswith("fernet:") for value in raw)
    joined = "".join(raw)
    assert credentials.access_token not in joined
    assert credentials.access_token_secret not in joined


def test_callback_refuses_a_token_issued_to_another_session(
    x: EmulatorServer, staff: Client, bare_account: AdAccount
) -> None:
    # Someone else (another admin, or an attacker with their own X login) starts a flow...
    other = Client()
    other.force_login(User.objects.create_superuser("other", "o@example.com", "pw"))
    token = token_of(start(other, account=str(bare_account.pk)))
    verifier = x.authorize(token, USER_ID)
    # ...and gets our admin's browser to open the callback: refused, nothing stored.
    refused = staff.get(CALLBACK_VIEW, {"oauth_token": token, "oauth_verifier": verifier})
    assert refused.status_code == 302 and refused["Location"] == CONNECT
    assert "not started from your admin session" in messages_of(staff, CONNECT)
    bare_account.refresh_from_db()
    assert not bare_account.has_tokens
    # The same session but after a logout/login as someone else: refused too.
    other.force_login(User.objects.get(username="admin"))
    other.get(CALLBACK_VIEW, {"oauth_token": token, "oauth_verifier": verifier})
    bare_account.refresh_from_db()
    assert not bare_account.has_tokens


def test_callback_replay_is_refused(
    x: EmulatorServer, staff: Client, bare_account: AdAccount
) -> None:
    token = token_of(start(staff, account=str(bare_account.pk)))
    params = {"oauth_token": token, "oauth_verifier": x.authorize(token, USER_ID)}
    assert staff.get(CALLBACK_VIEW, params)["Location"].endswith("/change/")
    bare_account.refresh_from_db()
    stored = bare_account.access_token_encrypted
    replay = staff.get(CALLBACK_VIEW, params)
    assert replay["Location"] == CONNECT
    bare_account.refresh_from_db()
    assert bare_account.access_token_encrypted == stored


def test_wrong_verifier_stores_nothing(
    x: EmulatorServer, staff: Client, bare_account: AdAccount
) -> None:
    token = token_of(start(staff, account=str(bare_account.pk)))
    x.authorize(token, USER_ID)
    answer = staff.get(CALLBACK_VIEW, {"oauth_token": token, "oauth_verifier": "wrong"})
    assert answer["Location"] == CONNECT
    assert "Invalid oauth_verifier parameter" in messages_of(staff, CONNECT)
    bare_account.refresh_from_db()
    assert not bare_account.has_tokens
    assert SESSION_KEY not in staff.session


def test_bad_consumer_secret_shows_x_message(
    x: EmulatorServer, staff: Client, bare_account: AdAccount, settings: Any
) -> None:
    configure(settings, CONSUMER_SECRET="not-the-secret")
    page = start(staff, account=str(bare_account.pk))
    assert page.status_code == 200
    assert "Could not authenticate you." in page.content.decode()
    assert SESSION_KEY not in staff.session


def test_unapproved_callback_says_which_url_to_allowlist(
    emulator: EmulatorServer, staff: Client, bare_account: AdAccount, settings: Any
) -> None:
    configure(settings, OAUTH_BASE_URL=emulator.url)  # nothing allowlisted
    page = start(staff, account=str(bare_account.pk)).content.decode()
    assert "Callback URL not approved" in page and ADMIN_CALLBACK in page
    # X's message ends without a full stop: the hint starts a sentence of its own.
    assert re.search(r"application settings\. Add http://", page), page


def test_denied_on_x_stores_nothing(
    x: EmulatorServer, staff: Client, bare_account: AdAccount
) -> None:
    token = token_of(start(staff, account=str(bare_account.pk)))
    answer = staff.get(CALLBACK_VIEW, {"denied": token})
    assert answer["Location"] == ADMIN
    assert "cancelled on X" in messages_of(staff, ADMIN)
    bare_account.refresh_from_db()
    assert not bare_account.has_tokens


def test_pin_flow_in_the_admin(x: EmulatorServer, db: None, bare_account: AdAccount) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    form = client.get(CONNECT)
    csrf = form.cookies["csrftoken"].value
    # The state-changing steps are CSRF-protected POSTs.
    assert client.post(CONNECT, {"account": bare_account.pk, "method": "pin"}).status_code == 403
    answer = client.post(
        CONNECT, {"account": bare_account.pk, "method": "pin", "csrfmiddlewaretoken": csrf}
    )
    assert answer.status_code == 302 and answer["Location"].startswith(f"{PIN_VIEW}?flow=")
    flow_id = parse_qs(urlsplit(answer["Location"]).query)["flow"][0]
    page = client.get(answer["Location"]).content.decode()
    (flow,) = client.session[SESSION_KEY].values()
    assert x.authorize_url(flow["token"]).replace("&", "&amp;") in page
    assert flow["secret_encrypted"] not in page

    pin = x.authorize(flow["token"], USER_ID)
    assert client.post(PIN_VIEW, {"flow": flow_id, "pin": pin}).status_code == 403
    done = client.post(PIN_VIEW, {"flow": flow_id, "pin": pin, "csrfmiddlewaretoken": csrf})
    assert done["Location"] == f"{ADMIN}{bare_account.pk}/change/"
    bare_account.refresh_from_db()
    credentials = bare_account.credentials()
    assert works(credentials.access_token, credentials.access_token_secret)["user_id"] == USER_ID
    # The PIN page of a finished flow is gone.
    assert client.get(answer["Location"])["Location"] == CONNECT


def test_wrong_pin_stores_nothing(
    x: EmulatorServer, staff: Client, bare_account: AdAccount
) -> None:
    answer = staff.post(CONNECT, {"account": bare_account.pk, "method": "pin"})
    flow_id = parse_qs(urlsplit(answer["Location"]).query)["flow"][0]
    (flow,) = staff.session[SESSION_KEY].values()
    x.authorize(flow["token"], USER_ID)
    refused = staff.post(PIN_VIEW, {"flow": flow_id, "pin": "0000000x"})
    assert refused["Location"] == CONNECT
    bare_account.refresh_from_db()
    assert not bare_account.has_tokens


def test_connect_creates_a_new_account(x: EmulatorServer, staff: Client) -> None:
    token = token_of(start(staff, new_account_id=ACCOUNT_ID, new_name="New shop"))
    staff.get(CALLBACK_VIEW, {"oauth_token": token, "oauth_verifier": x.authorize(token, USER_ID)})
    account = AdAccount.objects.get(account_id=ACCOUNT_ID)
    assert account.name == "New shop" and account.has_tokens and account.access_check_ok


def test_new_account_id_is_validated(x: EmulatorServer, staff: Client) -> None:
    page = start(staff, new_account_id="Not Base36").content.decode()
    assert "base36" in page
    assert SESSION_KEY not in staff.session


@pytest.mark.parametrize("codename", [None, "view_adaccount"])
def test_needs_the_change_permission(
    x: EmulatorServer, bare_account: AdAccount, codename: str | None
) -> None:
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    if codename:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    for url in (CONNECT, CALLBACK_VIEW, PIN_VIEW):
        assert client.get(url).status_code == 403
    assert start(client, account=str(bare_account.pk)).status_code == 403


def test_anonymous_users_go_to_the_login_page(db: None) -> None:
    answer = Client().get(CONNECT)
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]
