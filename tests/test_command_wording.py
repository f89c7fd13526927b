"""Our commands guide: they name the accounts holding conversions and the fix, say what is
not set up yet, stop with one line before ``migrate``, word the same thing the same way
in every command, and count in the right number ("1 request", "2 requests")."""

from __future__ import annotations

import ast
import datetime as dt
import io
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.utils import timezone

from django_xconversions import worker
from django_xconversions.emulator import EmulatorServer
from django_xconversions.management import guidance
from django_xconversions.management.guidance import (
    MIGRATE_FIRST,
    NO_ACCOUNT,
    NO_PIXEL,
    NO_TAG,
    RESUME_FIX,
)
from django_xconversions.models import AdAccount, EventTag, Pixel
from tests.helpers.processes import ROOT, run_python

from .conftest import ACCESS_TOKEN, ACCOUNT_ID, PIXEL_ID, make_conversions

pytestmark = pytest.mark.django_db
OUR_COMMANDS = ["send_conversions", "sync_tags", "purge_conversions", "rotate_encryption_key"]
# As the README recommends (no xconversions.W020 in the output).
SQLITE_OPTIONS = {"transaction_mode": "IMMEDIATE", "timeout": 20}
PAUSED_AT = dt.datetime(2026, 11, 30, 4, 12, 5, tzinfo=dt.timezone.utc)
REASON = "X refused the credentials: Invalid or expired token (HTTP 401, UNAUTHORIZED_ACCESS)"


@dataclass
class Run:
    out: str
    err: str
    returncode: int


def run(command: str, *args: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return Run(out.getvalue(), err.getvalue() + str(exc), exc.returncode)
    return Run(out.getvalue(), err.getvalue(), 0)


def pause(account: AdAccount, reason: str = REASON) -> None:
    AdAccount.objects.filter(pk=account.pk).update(
        status=AdAccount.Status.PAUSED, paused_reason=reason, paused_at=PAUSED_AT
    )


def other_account(paused: bool) -> EventTag:
    """A second account with its pixel and a tag keyed "lead"."""
    account = AdAccount.objects.create(
        account_id="9aa3kq2xyz",
        name="Brand",
        status=AdAccount.Status.PAUSED if paused else AdAccount.Status.ACTIVE,
        paused_reason="Locked out (HTTP 403)" if paused else "",
    )
    pixel = Pixel.objects.create(pixel_id="p2x9k", account=account)
    return EventTag.objects.create(
        account=account, pixel=pixel, remote_id="r2", website_tag_id="w2", key="lead", name="Lead"
    )


# -- accounts holding conversions, and the fix -------------------------------------------


def test_a_run_after_the_pause_names_the_account_the_waiting_rows_and_the_fix(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    """The second run found nothing to send and said so: "Pending left: 2", exit 0, and
    "paused": {} in JSON, with no word of the paused account or of "Resume sending"."""
    account = purchase_tag.account
    account.set_tokens(ACCESS_TOKEN, "wrong")
    account.save()
    make_conversions(purchase_tag, 2)
    first = run("send_conversions")
    assert first.returncode == 3
    assert f"Account {ACCOUNT_ID} (Shop) was paused by this run: X refused" in first.out, first.out
    paused_at = AdAccount.objects.get(pk=account.pk).paused_at
    assert paused_at is not None
    emulator.reset_records()

    again = run("send_conversions")
    assert emulator.requests == []
    assert again.returncode == 3
    assert again.err.endswith(f"1 account paused: {ACCOUNT_ID}.")
    line = next(line for line in again.out.splitlines() if line.startswith("Account "))
    assert line.startswith(
        f"Account {ACCOUNT_ID} (Shop) is paused since {paused_at:%Y-%m-%d %H:%M:%S} UTC: "
    )
    assert line.endswith(f". 2 conversions wait. {RESUME_FIX}")

    summary = json.loads(run("send_conversions", "--json").out)
    assert summary["paused"] == {}  # paused by this run: none
    assert summary["waiting"] == {
        ACCOUNT_ID: {
            "name": "Shop",
            "state": "paused",
            "pending": 2,
            "reason": summary["waiting"][ACCOUNT_ID]["reason"],
            "since": paused_at.isoformat(),
            "until": None,
            "fix": RESUME_FIX,
        }
    }
    assert summary["waiting"][ACCOUNT_ID]["reason"].startswith("X refused")


def test_an_account_paused_before_the_run_is_named_word_for_word(purchase_tag: EventTag) -> None:
    pause(purchase_tag.account, "  Invalid or expired\n token (HTTP 401).  ")
    make_conversions(purchase_tag, 1)
    done = run("send_conversions")
    assert done.out.splitlines() == [
        "Sent: 0 in 0 requests",
        "Failed: 0",
        "Retrying later: 0",
        "Pending left: 1",
        f"Account {ACCOUNT_ID} (Shop) is paused since 2026-11-30 04:12:05 UTC: Invalid or "
        f"expired token (HTTP 401). 1 conversion waits. {RESUME_FIX}",
    ]
    assert done.returncode == 3


def test_a_paused_account_without_pending_rows_is_not_a_problem(purchase_tag: EventTag) -> None:
    pause(purchase_tag.account)
    done = run("send_conversions")
    assert done.returncode == 0 and "Account " not in done.out
    assert json.loads(run("send_conversions", "--json").out)["waiting"] == {}


def test_an_account_waiting_on_xs_rate_limit_is_named_and_exits_0(
    purchase_tag: EventTag,
) -> None:
    until = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=10)
    AdAccount.objects.filter(pk=purchase_tag.account.pk).update(rate_limited_until=until)
    make_conversions(purchase_tag, 3)
    done = run("send_conversions")
    assert done.returncode == 0
    assert (
        f"Account {ACCOUNT_ID} (Shop) waits for X's rate limit until "
        f"{until:%Y-%m-%d %H:%M:%S} UTC: 3 conversions wait. Nothing to do: sending resumes "
        "by itself then."
    ) in done.out.splitlines()
    waiting = json.loads(run("send_conversions", "--json").out)["waiting"][ACCOUNT_ID]
    assert (waiting["state"], waiting["until"], waiting["pending"]) == (
        "rate_limited",
        until.isoformat(),
        3,
    )


def test_a_429_in_this_run_names_the_account_once_with_its_reset_time(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    emulator.faults.rate_limit_reset_seconds = 60
    emulator.faults.script(["429"])
    make_conversions(purchase_tag, 2)
    done = run("send_conversions")
    assert done.returncode == 0
    until = AdAccount.objects.get().rate_limited_until
    assert until is not None
    named = [line for line in done.out.splitlines() if ACCOUNT_ID in line]
    assert named == [
        f"Account {ACCOUNT_ID} (Shop) waits for X's rate limit until "
        f"{until:%Y-%m-%d %H:%M:%S} UTC: 2 conversions wait. Nothing to do: sending resumes "
        "by itself then."
    ]


def test_only_accounts_within_the_runs_scope_are_named(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(other_account(paused=True), 2)
    make_conversions(purchase_tag, 1, start=10)
    scoped = run("send_conversions", "--account", ACCOUNT_ID)
    assert scoped.returncode == 0 and "9aa3kq2xyz" not in scoped.out
    assert "Sent: 1 in 1 request\n" in scoped.out
    by_pixel = run("send_conversions", "--pixel", PIXEL_ID)
    assert by_pixel.returncode == 0 and "9aa3kq2xyz" not in by_pixel.out
    everything = run("send_conversions")
    assert everything.returncode == 3
    assert (
        "Account 9aa3kq2xyz (Brand) is paused: Locked out (HTTP 403). 2 conversions wait. "
        + RESUME_FIX
    ) in everything.out.splitlines()


def test_a_dry_run_names_the_paused_account_too_and_changes_nothing(
    purchase_tag: EventTag,
) -> None:
    pause(purchase_tag.account)
    make_conversions(purchase_tag, 2)
    done = run("send_conversions", "--dry-run")
    assert done.returncode == 0
    assert done.out.splitlines()[-2:] == [
        "Dry run: 2 conversions would be sent (0 invalid, would fail). Nothing was sent.",
        f"Account {ACCOUNT_ID} (Shop) is paused since 2026-11-30 04:12:05 UTC: {REASON}. "
        f"2 conversions wait. {RESUME_FIX}",
    ]
    assert AdAccount.objects.get().status == AdAccount.Status.PAUSED


# -- what is not set up yet --------------------------------------------------------------


def test_no_account_yet_is_a_hint_not_a_silent_zero() -> None:
    done = run("send_conversions")
    assert done.returncode == 0
    assert done.out.splitlines()[-1] == NO_ACCOUNT
    assert json.loads(run("send_conversions", "--json").out)["setup"] == [NO_ACCOUNT]
    assert run("sync_tags").out == NO_ACCOUNT + "\n"


def test_no_pixel_and_no_tag_yet_are_hints(account: AdAccount) -> None:
    assert run("send_conversions").out.splitlines()[-2:] == [NO_PIXEL, NO_TAG]
    Pixel.objects.create(pixel_id=PIXEL_ID, account=account)
    assert run("send_conversions").out.splitlines()[-1] == NO_TAG
    assert json.loads(run("send_conversions", "--json").out)["setup"] == [NO_TAG]


def test_a_set_up_project_gets_no_hints(purchase_tag: EventTag) -> None:
    assert run("send_conversions").out.splitlines() == [
        "Sent: 0 in 0 requests",
        "Failed: 0",
        "Retrying later: 0",
        "Pending left: 0",
    ]
    assert json.loads(run("send_conversions", "--json").out)["setup"] == []


# -- before migrate ----------------------------------------------------------------------


@pytest.mark.parametrize("command", OUR_COMMANDS)
def test_before_migrate_every_command_says_run_migrate(tmp_path: Path, command: str) -> None:
    """A fresh SQLite file never migrated: one line and exit status 1, no traceback, and
    the database is left as it was (no table created)."""
    database = tmp_path / "never_migrated.sqlite3"
    (tmp_path / "never_migrated_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {str(database)!r}, 'OPTIONS': {SQLITE_OPTIONS!r}}}}}\n"
    )
    done = run_python(
        "-m",
        "django",
        command,
        DJANGO_SETTINGS_MODULE="never_migrated_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
    )
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr == f"CommandError: {MIGRATE_FIRST}\n"
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_a_table_missing_after_an_upgrade_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = connection.introspection.table_names

    def without_heartbeats(*args: Any, **kwargs: Any) -> list[str]:
        return [t for t in real(*args, **kwargs) if t != "xconversions_workerheartbeat"]

    monkeypatch.setattr(connection.introspection, "table_names", without_heartbeats)
    for command in OUR_COMMANDS:
        with pytest.raises(CommandError) as info:
            call_command(command, stdout=io.StringIO(), stderr=io.StringIO())
        assert str(info.value) == (
            "Some django-xconversions tables do not exist yet (xconversions_workerheartbeat): "
            "run `manage.py migrate`."
        )
        assert info.value.returncode == 1


# -- the same wording in every command ---------------------------------------------------


@pytest.mark.parametrize("command", ["send_conversions", "sync_tags"])
def test_an_unknown_account_is_worded_alike_in_every_command(
    command: str, account: AdAccount
) -> None:
    with pytest.raises(CommandError) as info:
        run_raising(command, "--account", "nope")
    assert str(info.value) == f"--account nope: no ad account has this id. Known: {ACCOUNT_ID}."


@pytest.mark.parametrize("command", ["send_conversions", "sync_tags"])
def test_an_unknown_account_without_any_account_says_how_to_add_one(command: str) -> None:
    with pytest.raises(CommandError) as info:
        run_raising(command, "--account", "nope")
    assert str(info.value) == f"--account nope: no ad account has this id. {NO_ACCOUNT}"


def test_known_ids_are_listed_up_to_five(account: AdAccount) -> None:
    for n in range(6):
        Pixel.objects.create(pixel_id=f"px{n}", account=account)
    with pytest.raises(CommandError) as info:
        run_raising("send_conversions", "--pixel", "nope")
    assert (
        str(info.value)
        == "--pixel nope: no pixel has this id. Known: px0, px1, px2, px3, px4 and more."
    )


def run_raising(command: str, *args: str) -> None:
    call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_dry_run_and_loop_together_are_refused_naming_both(purchase_tag: EventTag) -> None:
    with pytest.raises(CommandError) as info:
        run_raising("send_conversions", "--dry-run", "--loop")
    assert str(info.value).startswith("--dry-run and --loop cannot be combined")
    assert info.value.returncode == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "--older-than must be a number of days of at least 0, not -1."),
        ("-0.5", "--older-than must be a number of days of at least 0, not -0.5."),
        ("nan", "--older-than must be a number of days of at least 0, not nan."),
        ("inf", "--older-than must be a number of days of at least 0, not inf."),
        ("1e9", "--older-than is too many days: the cutoff would fall before the year 1."),
        ("1e6", "--older-than is too many days: the cutoff would fall before the year 1."),
    ],
)
def test_older_than_is_refused_with_its_dashes(value: str, message: str) -> None:
    with pytest.raises(CommandError) as info:
        run_raising("purge_conversions", "--older-than", value)
    assert str(info.value) == message


# -- singular and plural -----------------------------------------------------------------


def test_one_request_and_one_conversion_are_singular(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 1)
    assert run("send_conversions", "--dry-run").out.splitlines()[-1] == (
        "Dry run: 1 conversion would be sent (0 invalid, would fail). Nothing was sent."
    )
    assert run("send_conversions").out.splitlines()[0] == "Sent: 1 in 1 request"


def test_purge_counts_in_the_right_number(purchase_tag: EventTag) -> None:
    def old(count: int) -> None:
        rows = make_conversions(purchase_tag, count, start=100 * count)
        for row in rows:
            row.status = "sent"
            row.created_at = timezone.now() - dt.timedelta(days=100)
            row.save(update_fields=["status", "created_at"])

    old(1)
    assert run("purge_conversions", "--dry-run").out.startswith(
        "Would delete 1 conversion and 0 delivery attempts created before "
    )
    old(2)
    assert run("purge_conversions").out.startswith(
        "Deleted 3 conversions and 0 delivery attempts created before "
    )


def test_sync_tags_counts_in_the_right_number(emulator: EmulatorServer, account: AdAccount) -> None:
    emulator.add_tag(ACCOUNT_ID, name="Purchase", type="PURCHASE")
    assert f"{ACCOUNT_ID}: 1 event tag has no pixel: choose one" in run("sync_tags").err
    emulator.add_tag(ACCOUNT_ID, name="Sign up", type="SIGN_UP")
    assert f"{ACCOUNT_ID}: 2 event tags have no pixel: choose one" in run("sync_tags").err
    account.set_tokens(ACCESS_TOKEN, "wrong")
    account.save()
    assert "Tag sync failed for 1 account: " in run("sync_tags").err


def test_rotate_counts_one_key_in_the_singular() -> None:
    out = run("rotate_encryption_key", "--dry-run").out
    assert 'XCONVERSIONS["ENCRYPTION_KEY"]: 1 key; the first encrypts' in out


def test_the_end_of_a_database_outage_counts_its_attempts_in_the_right_number(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(worker, "close_connections", lambda: None)
    loop = worker.Worker(stop=threading.Event(), backoff=worker.Backoff(first=0.001, cap=0.001))
    with caplog.at_level(logging.WARNING, logger=worker.logger.name):
        for attempts in (1, 2):
            for _ in range(attempts):
                loop._database_away(OperationalError("server closed the connection"))
            loop._database_back()
    back = [r.getMessage() for r in caplog.records if "available again" in r.getMessage()]
    assert [m.rsplit("(", 1)[1] for m in back] == ["1 failed attempt).", "2 failed attempts)."]


def test_no_count_is_written_with_s_in_parentheses() -> None:
    """ "1 account(s)" reads as a prototype: every count picks its number (plural()), in
    the commands, the health problems, the admin and the log lines alike."""
    package = Path(guidance.__file__).parent.parent
    sources = [*package.rglob("*.py"), *package.rglob("*.html")]
    found = []
    for source in sources:
        if source.suffix == ".html":
            texts = [(n, line) for n, line in enumerate(source.read_text().splitlines(), 1)]
            found += [f"{source.name}:{n}: {line.strip()!r}" for n, line in texts if "(s)" in line]
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and "(s)" in text.replace("http(s)", "http"):
                found.append(f"{source.name}:{node.lineno}: {node.value!r}")
    assert found == []


def test_a_database_away_at_start_up_is_not_taken_for_missing_tables(
    monkeypatch: pytest.MonkeyPatch, purchase_tag: EventTag
) -> None:
    """A --loop worker started while the database restarts waits the outage out: the
    table check lets a connection error through to the command rather than say migrate."""

    def away(*args: Any, **kwargs: Any) -> list[str]:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection.introspection, "table_names", away)
    done = run("purge_conversions", "--dry-run")
    assert done.returncode == 0 and done.out.startswith("Would delete 0 conversions")
