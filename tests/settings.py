"""Settings for the test suite: SQLite by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import json
import os

SECRET_KEY = "tests-only-secret-key"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_xconversions",
    "tests.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django_xconversions.middleware.TwclidMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("DATABASE_URL", "").startswith("postgres"):
    from urllib.parse import urlparse

    _url = urlparse(os.environ["DATABASE_URL"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/") or "postgres",
            "USER": _url.username or "postgres",
            "PASSWORD": _url.password or "",
            "HOST": _url.hostname or "127.0.0.1",
            "PORT": str(_url.port or 5432),
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

STATIC_URL = "/static/"

XCONVERSIONS = {
    "CONSUMER_KEY": "test-consumer-key",
    "CONSUMER_SECRET": "test-consumer-secret",
    # A fixed Fernet key so encrypted columns are reproducible in tests.
    "ENCRYPTION_KEY": "lVebeetN_I_hAAmQv0ry5nDvepmiCJbs2ibPmS3J8i4=",
    "DEFAULT_PHONE_REGION": "US",
    # The test shop's models, bound the documented way.
    "SOURCES": [
        {
            "model": "shop.Order",
            "event": "purchase",
            "when": {"field": "status", "value": "paid"},
            "email": "email",
            "phone": "phone",
            "value": "total",
            "currency": "currency",
            "number_items": "quantity",
            "contents": "tests.shop.tracking.order_contents",
        },
        {"model": "shop.Member", "event": "sign_up", "email": "email", "phone": "phone"},
    ],
}
# Worker processes started by tests get the test's settings (e.g. the emulator's URL).
XCONVERSIONS.update(json.loads(os.environ.get("XCONVERSIONS_TEST_OVERRIDES", "{}")))
