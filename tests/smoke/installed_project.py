"""The installed wheel works in a new project, the way a newcomer uses it.

Run by ``wheel_smoke.sh`` with the Python of a clean virtualenv that holds only the wheel
and its dependencies, in ``python -I`` mode so that the repository is nowhere on sys.path:

1. the package is imported from the virtualenv, its metadata version is ``__version__``,
   and it holds ``py.typed``, every template and every migration of the source tree;
2. ``django-admin startproject``, the app added as README says, ``migrate`` and
   ``check --database default`` (warnings fail too);
3. the emulator started as users start it (``python -m django_xconversions.emulator
   --demo``), its demo account and pixel stored, ``sync_tags``, one ``track()``,
   ``send_conversions``: the conversion is sent and the emulator holds it, hashed;
4. the admin's change lists render with the package's own templates (the health panel
   included) and the REST API's health answers.

Usage: python -I installed_project.py --repo REPOSITORY --work EMPTY_DIRECTORY
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

STARTED = time.monotonic()
EMAIL = "jane@example.com"
CONVERSION_ID = "smoke-order-1"
# The children of this script see neither the caller's PYTHONPATH nor its settings module.
ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith("PYTHON") and key != "DJANGO_SETTINGS_MODULE"
}

SETTINGS = """
# -- added by the wheel smoke test, as README's "Adding it to your project" says --------
INSTALLED_APPS += ["rest_framework", "django_xconversions"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
    "django_xconversions.middleware.TwclidMiddleware",
)
DATABASES["default"]["OPTIONS"] = {{
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}}
XCONVERSIONS = {{
    "API_BASE_URL": {api!r},
    "OAUTH_BASE_URL": {api!r},
    "CONSUMER_KEY": {consumer_key!r},
    "CONSUMER_SECRET": {consumer_secret!r},
    "ENCRYPTION_KEY": {encryption_key!r},
}}
"""

URLS = """
from django.urls import include  # noqa: E402

urlpatterns += [path("x/", include("django_xconversions.api.urls"))]
"""


def step(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def fail(message: str) -> NoReturn:
    raise SystemExit(f"wheel smoke test FAILED: {message}")


def run(*args: str | Path, cwd: Path) -> str:
    command = [str(arg) for arg in args]
    result = subprocess.run(  # noqa: S603 (our own commands)
        command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180, check=False
    )
    if result.returncode != 0:
        fail(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def check_package(repo: Path) -> Path:
    """The package comes from the virtualenv and carries its data files."""
    from importlib.metadata import version

    import django_xconversions

    package = Path(django_xconversions.__file__).resolve().parent
    if not package.is_relative_to(Path(sys.prefix).resolve()) or package.is_relative_to(repo):
        fail(f"django_xconversions imported from {package}, not from the virtualenv")
    if version("django-xconversions") != django_xconversions.__version__:
        fail(
            f"metadata version {version('django-xconversions')} is not "
            f"__version__ {django_xconversions.__version__}"
        )
    source = repo / "django_xconversions"
    expected = [Path("py.typed")]
    expected += [p.relative_to(source) for p in (source / "templates").rglob("*.html")]
    expected += [p.relative_to(source) for p in (source / "migrations").glob("[0-9]*.py")]
    missing = sorted(str(name) for name in expected if not (package / name).is_file())
    if missing:
        fail(f"the wheel lacks {', '.join(missing)}")
    step(f"installed package at {package} holds py.typed, templates and migrations")
    return package


def start_emulator(work: Path) -> tuple[subprocess.Popen[str], str]:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "django_xconversions.emulator", "--port", "0", "--demo"],
        cwd=work,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert emulator.stdout is not None
    first_line = emulator.stdout.readline()  # wheel_smoke.sh bounds the whole run in time
    match = re.search(r"listening on (http://\S+)", first_line)
    if match is None:
        emulator.kill()
        fail(f"the emulator did not start: {first_line!r}")
    step(f"emulator listening on {match[1]}")
    return emulator, match[1]


def make_project(work: Path, api: str) -> Path:
    from cryptography.fernet import Fernet

    from django_xconversions.emulator import DEMO_WORLD

    project = work / "project"
    project.mkdir()
    run(Path(sys.executable).parent / "django-admin", "startproject", "smoke", project, cwd=work)
    app = DEMO_WORLD["apps"][0]
    with (project / "smoke" / "settings.py").open("a") as settings:
        settings.write(
            SETTINGS.format(
                api=api,
                consumer_key=app["consumer_key"],
                consumer_secret=app["consumer_secret"],
                encryption_key=Fernet.generate_key().decode(),
            )
        )
    with (project / "smoke" / "urls.py").open("a") as urls:
        urls.write(URLS)
    run(sys.executable, "manage.py", "migrate", "--no-input", cwd=project)
    check = ("check", "--database", "default", "--fail-level", "WARNING")
    run(sys.executable, "manage.py", *check, cwd=project)
    step("startproject, migrate, check --database default: clean")
    return project


def send_one(project: Path, api: str) -> None:
    from django_xconversions import track
    from django_xconversions.emulator import DEMO_WORLD
    from django_xconversions.models import AdAccount, Conversion, EventTag, Pixel

    user, spec = DEMO_WORLD["users"][0], DEMO_WORLD["accounts"][0]
    account = AdAccount(account_id=spec["account_id"], name=spec["name"])
    account.set_tokens(user["access_token"], user["access_token_secret"])
    account.save()
    Pixel.objects.create(account=account, pixel_id=spec["pixels"][0]["pixel_id"])
    run(sys.executable, "manage.py", "sync_tags", cwd=project)
    # The account has one pixel, so the sync gave it to the tags, keyed by type.
    if not EventTag.objects.filter(key="purchase", pixel__isnull=False).exists():
        fail("sync_tags left no 'purchase' tag with a pixel")
    conversion = track(
        "purchase", email=EMAIL, value=Decimal("29.00"), currency="USD", conversion_id=CONVERSION_ID
    )
    summary = run(sys.executable, "manage.py", "send_conversions", "--json", cwd=project)
    conversion.refresh_from_db()
    if conversion.status != Conversion.Status.SENT:
        fail(f"the conversion is {conversion.status} ({conversion.last_error}); {summary}")
    with urllib.request.urlopen(f"{api}/_emulator/received", timeout=10) as answer:  # noqa: S310
        received = json.load(answer)["data"]
    events = [record["conversion"] for record in received]
    if [event.get("conversion_id") for event in events] != [CONVERSION_ID]:
        fail(f"the emulator received {events}, not {CONVERSION_ID} once")
    event = events[0]
    hashed = hashlib.sha256(EMAIL.encode()).hexdigest()
    if EMAIL in json.dumps(received) or hashed not in json.dumps(event):
        fail(f"the emulator did not receive the hashed email: {event}")
    step("sync_tags, track(), send_conversions: sent, and the emulator holds it hashed")


def render_admin(package: Path) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # records the templates each response renders
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "smoke")
    client = Client()
    client.force_login(admin)
    pages: dict[str, set[str]] = {
        "/admin/xconversions/conversion/": {
            "admin/xconversions/conversion/change_list.html",
            "xconversions/health_panel.html",
        },
        "/admin/xconversions/eventtag/": {"admin/xconversions/eventtag/change_list.html"},
        "/admin/xconversions/adaccount/": {"admin/xconversions/adaccount/change_list.html"},
    }
    for url, templates in pages.items():
        response: Any = client.get(url)
        if response.status_code != 200:
            fail(f"GET {url} answered {response.status_code}")
        used = {t.name: t.origin.name for t in response.templates}
        for name in templates:
            if name not in used or not Path(used[name]).resolve().is_relative_to(package):
                fail(f"GET {url} did not render the package's {name} (used: {sorted(used)})")
    if CONVERSION_ID not in client.get("/admin/xconversions/conversion/").content.decode():
        fail("the conversion list does not show the conversion")
    health: Any = client.get("/x/health/")
    if health.status_code != 200 or health.json()["by_status"].get("sent") != 1:
        fail(f"GET /x/health/ answered {health.status_code}: {health.content[:300]!r}")
    step("admin change lists render the package's templates; /x/health/ answers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    repo, work = args.repo.resolve(), args.work.resolve()
    package = check_package(repo)
    emulator, api = start_emulator(work)
    try:
        project = make_project(work, api)
        sys.path.insert(0, str(project))
        os.environ["DJANGO_SETTINGS_MODULE"] = "smoke.settings"
        import django

        django.setup()
        send_one(project, api)
        render_admin(package)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    step("wheel smoke test passed")


if __name__ == "__main__":
    main()
