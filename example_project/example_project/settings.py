"""Settings of the example shop, read from the environment with django-environ.

Defaults: SQLite next to this file, DEBUG on, and the local X emulator as the API host.
"""

from __future__ import annotations

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, True),
    SECRET_KEY=(str, "example-shop-not-secret"),
    DATABASE_URL=(str, f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
    X_API_BASE_URL=(str, "http://127.0.0.1:8765"),
    # Connect with X's host; empty: the same as X_API_BASE_URL (the emulator serves both).
    X_OAUTH_BASE_URL=(str, ""),
    # The emulator's demo app (see django_xconversions.emulator.DEMO_WORLD); set your own
    # X app's values (and X_API_BASE_URL=https://ads-api.x.com,
    # X_OAUTH_BASE_URL=https://api.x.com) to talk to X.
    X_CONSUMER_KEY=(str, "demo-consumer-key"),
    X_CONSUMER_SECRET=(str, "demo-consumer-secret"),
    # A fixed key for local use only; generate your own for anything real.
    XCONVERSIONS_ENCRYPTION_KEY=(str, "ZGVtby1vbmx5LWtleS1kby1ub3QtdXNlLWluLXByb2Q="),
    X_PHONE_REGION=(str, "US"),
    # Empty: the only Pixel in the database (make run creates the demo one).
    X_PIXEL_ID=(str, ""),
)
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
DATABASES = {"default": env.db("DATABASE_URL")}
SQLITE_PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite under a web server and a sender at once (see README, "SQLite"): IMMEDIATE
    # transactions take the write lock at BEGIN, so a transaction that read first never
    # fails with "database is locked" when it then writes; timeout waits up to 20 s for
    # the lock; WAL lets readers run while a writer writes. NORMAL: a WAL commit does not
    # wait for the disk; temp_store: no temporary file for each batch's UPDATEs.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": SQLITE_PRAGMAS,
        **DATABASES["default"].get("OPTIONS", {}),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "example_project.urls"
STATIC_URL = "/static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",  # OpenAPI schema of the REST API under /x/
    "django_xconversions",
    "shop",
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
                "shop.context_processors.shop",
            ]
        },
    }
]

XCONVERSIONS = {
    "API_BASE_URL": env("X_API_BASE_URL"),
    "OAUTH_BASE_URL": env("X_OAUTH_BASE_URL") or env("X_API_BASE_URL"),
    "CONSUMER_KEY": env("X_CONSUMER_KEY"),
    "CONSUMER_SECRET": env("X_CONSUMER_SECRET"),
    "ENCRYPTION_KEY": env("XCONVERSIONS_ENCRYPTION_KEY"),
    "DEFAULT_PHONE_REGION": env("X_PHONE_REGION"),
    "PIXEL_ID": env("X_PIXEL_ID"),
    # The shop's models, bound to X events. The receivers run inside the save's
    # transaction: a rolled-back order leaves no conversion behind.
    "SOURCES": [
        {
            "model": "shop.Customer",
            "event": "sign_up",  # on create (the default "when")
            "email": "email",
            "phone": "phone",
        },
        {
            "model": "shop.Order",
            "event": "purchase",
            "when": {"field": "status", "value": "paid"},
            "email": "customer.email",
            "phone": "customer.phone",
            "value": "total",
            "currency": "currency",
            "number_items": "item_count",
            "contents": "shop.tracking.order_contents",
        },
    ],
}

REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
