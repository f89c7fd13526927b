"""README's Python snippets work when pasted: its settings (with SOURCES) and its track()
call run in a throwaway project built around the example shop's models, in a fresh
process, the way a newcomer follows the README: settings, migrate, check, then the admin's
step 5 (account, pixel, tags with keys), then an order paid and a track() call."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent> *)```python\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)


def python_snippets() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return [textwrap.dedent(m["body"]) for m in FENCE.finditer(readme)]


# The main track() example (others call track() too).
TRACK = "# the EventTag key"


def the_snippet(marker: str) -> str:
    [snippet] = [s for s in python_snippets() if marker in s]
    return snippet


BASE_SETTINGS = """\
# What startproject gives; README's snippet follows.
SECRET_KEY = "readme-test"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "readme_urls"
STATIC_URL = "/static/"
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": {database!r},
        "OPTIONS": {{
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
        }},
    }}
}}
TEMPLATES = [{{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {{"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]}},
}}]

{snippet}

# The entries README elides with "# ...", and the project's own app.
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    *INSTALLED_APPS, "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    *MIDDLEWARE,
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
"""

URLS = """\
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("x/", include("django_xconversions.api.urls")),
]
"""

RUN = """\
import datetime as dt, json, sys, types
from decimal import Decimal

import django

django.setup()

from django.core import checks
from django.core.management import call_command
from django.test import RequestFactory


def ids():
    return sorted({m.id for m in checks.run_checks(databases=["default"])
                   if m.id.startswith("xconversions.")})


result = {}
# README step 4, on a database with no tables yet: the database checks stay quiet.
result["before_migrate"] = ids()
# As `manage.py migrate` does: the checks (database ones included) run before migrating.
call_command("migrate", verbosity=0, skip_checks=False)
result["after_migrate"] = ids()
call_command("check", databases=["default"])  # raises SystemCheckError on any error

# Step 5, as the admin does it: an account, its pixel, the tags with the keys used.
from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel

account = AdAccount(account_id="18ce54d4x5t", name="Shop")
account.set_tokens("token", "token-secret")
account.save()
pixel = Pixel.objects.create(pixel_id="o8z6j", account=account)
for key, kind in (("purchase", "PURCHASE"), ("sign_up", "SIGN_UP")):
    EventTag.objects.create(account=account, pixel=pixel, remote_id="r" + key.replace("_", ""),
                            website_tag_id="w" + key.replace("_", ""), key=key, name=key,
                            type=kind)
result["after_setup"] = ids()

# A bound order is paid (SOURCES).
from shop.models import Customer, Order, OrderItem, Product

customer = Customer.objects.create(email="Ann@Example.com", phone="212 555 0100")
product = Product.objects.create(sku="sku-1", name="Mug", price=Decimal("12.50"))
order = Order.objects.create(customer=customer)
OrderItem.objects.create(order=order, product=product, name="Mug", price=product.price,
                         quantity=2)
order.status = Order.Status.PAID
order.save()

# README's track() call, with what its names stand for in a view.
request = RequestFactory().post("/checkout/", HTTP_USER_AGENT="Mozilla/5.0",
                                REMOTE_ADDR="192.0.2.7")
paid = types.SimpleNamespace(pk=41, email="bob@example.com", phone="+12125550101",
                             total=Decimal("25.00"),
                             paid_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
exec(sys.argv[1], {"request": request, "order": paid})

result["conversions"] = sorted(
    [row["event_tag__key"], row["conversion_id"], row["status"], str(row["value"]),
     row["hashed_email"] != ""]
    for row in Conversion.objects.values(
        "event_tag__key", "conversion_id", "status", "value", "hashed_email")
)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def readme_project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    project = tmp_path_factory.mktemp("readme_project")
    settings = BASE_SETTINGS.format(
        database=str(project / "db.sqlite3"), snippet=the_snippet("XCONVERSIONS = {")
    )
    (project / "readme_settings.py").write_text(settings)
    (project / "readme_urls.py").write_text(URLS)
    (project / "run.py").write_text(RUN)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO", "XCONVERSIONS", "DATABASE_URL", "X_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="readme_settings",
        PYTHONPATH=os.pathsep.join([str(project), str(ROOT / "example_project"), str(ROOT)]),
        # The variables README's settings read.
        X_CONSUMER_KEY="consumer-key",
        X_CONSUMER_SECRET="consumer-secret",
        XCONVERSIONS_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )
    run = subprocess.run(  # noqa: S603
        [sys.executable, "run.py", the_snippet(TRACK)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_readme_has_one_settings_snippet_and_one_track_snippet() -> None:
    assert "env(" in the_snippet("XCONVERSIONS = {")
    assert "from django_xconversions import track" in the_snippet(TRACK)


def test_settings_snippet_defines_everything_it_uses() -> None:
    # Pasted into an empty module, it runs (once its environment variables are set).
    namespace: dict[str, object] = {}
    variables = ("X_CONSUMER_KEY", "X_CONSUMER_SECRET", "XCONVERSIONS_ENCRYPTION_KEY")
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update({name: "value" for name in variables})
    try:
        exec(the_snippet("XCONVERSIONS = {"), namespace)  # noqa: S102
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert namespace["XCONVERSIONS"]["ENCRYPTION_KEY"] == "value"  # type: ignore[index]


def test_checks_pass_at_every_step_with_the_readme_settings(readme_project: dict) -> None:
    # No tables yet: nothing to say about the database, and nothing crashes.
    assert readme_project["before_migrate"] == []
    # Migrated, before step 5: both SOURCES keys have no tag yet (held until then).
    assert readme_project["after_migrate"] == ["xconversions.W010"]
    # After step 5: clean.
    assert readme_project["after_setup"] == []


def test_the_readme_binding_and_track_call_store_conversions(readme_project: dict) -> None:
    assert readme_project["conversions"] == [
        ["purchase", "order:41", "pending", "25.0000", True],
        ["purchase", "shop.order:1", "pending", "25.0000", True],
        ["sign_up", "shop.customer:1", "pending", "None", True],
    ]
