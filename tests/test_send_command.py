"""manage.py send_conversions, the tasks and SEND_IMMEDIATELY: all call send_pending."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from django_xconversions import tasks
from django_xconversions.emulator import EmulatorServer
from django_xconversions.management.guidance import RESUME_FIX
from django_xconversions.models import AdAccount, Conversion, EventTag, WorkerHeartbeat
from tests.helpers import wait_until

from .conftest import ACCESS_TOKEN, configure, make_conversions, received_ids

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("send_conversions", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def refused(account: AdAccount, purchase_tag: EventTag) -> AdAccount:
    """An account whose credentials X refuses, with two conversions due."""
    account.set_tokens(ACCESS_TOKEN, "wrong")
    account.save()
    make_conversions(purchase_tag, 2)
    return account


def test_summary_lists_sent_failed_by_reason_and_pending(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 12)
    Conversion.objects.filter(conversion_id="order:3").update(twclid="")
    output = run()
    assert "Sent: 11 in 1 request\n" in output
    assert "Failed: 1 (invalid: 1)" in output
    assert "Pending left: 0" in output


def test_limit_and_json_summary(emulator: EmulatorServer, purchase_tag: EventTag) -> None:
    make_conversions(purchase_tag, 30)
    summary = json.loads(run("--limit", "10", "--json"))
    assert summary["sent"] == 10 and summary["pending_left"] == 20


def test_dry_run_prints_payloads_and_sends_nothing(
    emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 3)
    output = run("--dry-run")
    lines = output.strip().splitlines()
    assert [json.loads(line)["event"]["conversion_id"] for line in lines[:3]] == [
        "order:0",
        "order:1",
        "order:2",
    ]
    assert "Nothing was sent" in lines[-1]
    assert emulator.requests == [] and Conversion.objects.filter(status="pending").count() == 3


def test_unknown_account_is_a_clear_error(emulator: EmulatorServer, purchase_tag: EventTag) -> None:
    with pytest.raises(CommandError, match="--account nope: no ad account has this id"):
        run("--account", "nope")


def test_exit_status_non_zero_when_credentials_are_refused(
    emulator: EmulatorServer, refused: AdAccount
) -> None:
    with pytest.raises(CommandError) as info:
        run()
    assert info.value.returncode == 3


def test_task_function_sends(emulator: EmulatorServer, purchase_tag: EventTag) -> None:
    make_conversions(purchase_tag, 5)
    assert tasks.run_send(pixel_id=purchase_tag.pixel.pixel_id)["sent"] == 5


@pytest.mark.skipif(not tasks.DJANGO_TASKS_AVAILABLE, reason="needs django.tasks (Django >= 6)")
def test_django_task_enqueues_a_send(emulator: EmulatorServer, purchase_tag: EventTag) -> None:
    make_conversions(purchase_tag, 4)
    result = tasks.send_conversions_task.enqueue(pixel_id=purchase_tag.pixel.pixel_id)
    assert result.return_value["sent"] == 4  # the default backend runs it immediately


@pytest.mark.django_db(transaction=True)
def test_send_immediately_sends_after_commit_only(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag
) -> None:
    from django_xconversions import track

    configure(settings, SEND_IMMEDIATELY="inline")
    with transaction.atomic():
        track("purchase", twclid="abc", conversion_id="a")
        track("purchase", twclid="def", conversion_id="b")
        assert emulator.requests == [], "nothing is sent before the transaction commits"
    assert sorted(received_ids(emulator)) == ["a", "b"]
    assert len(emulator.requests) == 1, "one send per pixel per transaction"
    with pytest.raises(RuntimeError), transaction.atomic():
        track("purchase", twclid="ghi", conversion_id="c")
        raise RuntimeError("rolled back")
    assert sorted(received_ids(emulator)) == ["a", "b"]


def command_env(emulator: EmulatorServer) -> dict[str, str]:
    """The environment of a manage.py process on the test's PostgreSQL database."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "XCONVERSIONS_TEST_OVERRIDES": json.dumps(
            {"API_BASE_URL": emulator.url, "LOOP_IDLE_SECONDS": 0.1}
        ),
    }


def manage(emulator: EmulatorServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=command_env(emulator),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(tasks.CELERY_AVAILABLE, reason="needs Celery not installed")
@pytest.mark.django_db(transaction=True)
def test_send_immediately_naming_a_runner_not_installed_keeps_rows_pending(
    settings: Any, emulator: EmulatorServer, purchase_tag: EventTag, caplog: Any
) -> None:
    from django_xconversions import track

    configure(settings, SEND_IMMEDIATELY="celery")
    with caplog.at_level("ERROR", logger="django_xconversions.delivery"):
        track("purchase", twclid="abc", conversion_id="a")
    (record,) = caplog.records
    assert record.getMessage() == (
        "XCONVERSIONS[\"SEND_IMMEDIATELY\"] is 'celery' but that runner is not installed; "
        "conversions stay pending."
    )
    assert emulator.requests == [] and Conversion.objects.get().status == "pending"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_loop_stops_cleanly_on_sigterm(emulator: EmulatorServer, purchase_tag: EventTag) -> None:
    make_conversions(purchase_tag, 20)
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "send_conversions", "--loop"],
        cwd=ROOT,
        env=command_env(emulator),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sent = Conversion.objects.filter(status="sent")
    try:
        wait_until(lambda: sent.count() >= 20, 30, "the looping worker did not send the first 20")
        make_conversions(purchase_tag, 5, start=100)
        wait_until(lambda: sent.count() >= 25, 30, "the looping worker did not send the next 5")
    finally:
        worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "stopping after the current batch" in err
    assert "Sent: 25" in out


def test_dry_run_refuses_loop_naming_both_options(purchase_tag: EventTag) -> None:
    with pytest.raises(CommandError, match="--dry-run and --loop cannot be combined"):
        run("--dry-run", "--loop")


def test_paused_account_is_named_in_the_summary_with_exit_status_3(
    emulator: EmulatorServer, refused: AdAccount
) -> None:
    account = refused
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("send_conversions", stdout=out, stderr=err)
    assert info.value.returncode == 3
    assert str(info.value) == f"1 account paused: {account.account_id}."
    assert f"Account {account.account_id} (Shop) was paused by this run: " in out.getvalue()
    assert f"2 conversions wait. {RESUME_FIX}" in out.getvalue()
    assert f"Account {account.account_id} paused: " in err.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_paused_account_exits_3_from_the_shell(
    emulator: EmulatorServer, refused: AdAccount
) -> None:
    account = refused
    done = manage(emulator, "send_conversions")
    assert done.returncode == 3, done.stderr
    assert f"Account {account.account_id} (Shop) was paused by this run: " in done.stdout
    assert f"2 conversions wait. {RESUME_FIX}" in done.stdout
    assert f"Account {account.account_id} paused: " in done.stderr
    assert f"CommandError: 1 account paused: {account.account_id}." in done.stderr


@pytest.mark.django_db(transaction=True)
def test_loop_stopped_by_sigterm_exits_0_and_still_names_the_paused_account(
    settings: Any, emulator: EmulatorServer, refused: AdAccount
) -> None:
    configure(settings, LOOP_IDLE_SECONDS=0.05)
    account = refused

    def terminate_once_paused() -> None:
        try:
            wait_until(
                AdAccount.objects.filter(pk=account.pk, status="paused").exists,
                20,
                "the account was never paused",
            )
        finally:
            connection.close()
            os.kill(os.getpid(), signal.SIGTERM)  # the command's handler, on the main thread

    watcher = threading.Thread(target=terminate_once_paused)
    watcher.start()
    out, err = io.StringIO(), io.StringIO()
    call_command("send_conversions", "--loop", stdout=out, stderr=err)  # no CommandError
    watcher.join()
    assert f"Account {account.account_id} (Shop) was paused by this run: " in out.getvalue()
    assert "stopping after the current batch" in err.getvalue()


# -- --check: one line for a monitor -------------------------------------------------------


def check() -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("send_conversions", "--check", stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def test_check_is_quiet_when_healthy(purchase_tag: EventTag) -> None:
    make_conversions(purchase_tag, 4)  # due just now: a sender has had no time to be late
    WorkerHeartbeat.objects.create(
        worker_id="w1", host="h", pid=1, started_at=timezone.now(), last_beat_at=timezone.now()
    )
    code, out = check()
    assert code == 0
    assert out.strip() == (
        "OK: 1 live worker, 4 conversions due, none stuck, no paused account holding conversions"
    )


def test_check_flags_rows_sending_past_their_lease(purchase_tag: EventTag) -> None:
    rows = make_conversions(purchase_tag, 3)
    Conversion.objects.filter(pk__in=[r.pk for r in rows]).update(
        status="sending", lease_expires_at=timezone.now() - dt.timedelta(minutes=10)
    )
    code, out = check()
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert out.startswith("PROBLEM: 3 conversions sending past their lease (the oldest by 10 ")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_check_exit_status_from_the_shell(
    emulator: EmulatorServer, shop_tags: dict[str, EventTag]
) -> None:
    # Every key SOURCES binds has its tag: on Django 6 commands also run the database
    # checks, which would warn (W010) about a key no tag carries.
    rows = make_conversions(shop_tags["purchase"], 3)
    healthy = manage(emulator, "send_conversions", "--check")
    assert (healthy.returncode, healthy.stderr) == (0, "")
    assert healthy.stdout.startswith("OK: 0 live workers, 3 conversions due")
    Conversion.objects.filter(pk__in=[r.pk for r in rows]).update(
        status="sending", lease_expires_at=timezone.now() - dt.timedelta(minutes=10)
    )
    stuck = manage(emulator, "send_conversions", "--check")
    assert stuck.returncode == 2, stuck.stderr
    assert stuck.stdout.startswith("PROBLEM: 3 conversions sending past their lease")
    assert len(stuck.stdout.strip().splitlines()) == 1
    assert stuck.stderr == "CommandError: Unhealthy: stuck.\n"


def test_check_ignores_rows_within_their_lease(purchase_tag: EventTag) -> None:
    rows = make_conversions(purchase_tag, 3)
    Conversion.objects.filter(pk__in=[r.pk for r in rows]).update(
        status="sending", lease_expires_at=timezone.now() + dt.timedelta(minutes=10)
    )
    assert check()[0] == 0


def test_check_flags_no_worker_while_conversions_are_due(purchase_tag: EventTag) -> None:
    make_conversions(purchase_tag, 5)
    Conversion.objects.update(next_attempt_at=timezone.now() - dt.timedelta(minutes=20))
    code, out = check()
    assert (code, out.strip()) == (2, "PROBLEM: no worker seen yet while 5 conversions are due")
    beat = timezone.now() - dt.timedelta(minutes=7, seconds=5)
    WorkerHeartbeat.objects.create(
        worker_id="w1", host="h", pid=1, started_at=beat, last_beat_at=beat
    )
    code, out = check()
    assert (code, out.strip()) == (
        2,
        "PROBLEM: no worker seen for 7 minutes while 5 conversions are due",
    )
    WorkerHeartbeat.objects.update(last_beat_at=timezone.now())
    assert check()[0] == 0


def test_check_flags_a_paused_account_holding_pending_rows(
    account: AdAccount, purchase_tag: EventTag
) -> None:
    make_conversions(purchase_tag, 2)
    WorkerHeartbeat.objects.create(
        worker_id="w1", host="h", pid=1, started_at=timezone.now(), last_beat_at=timezone.now()
    )
    AdAccount.objects.filter(pk=account.pk).update(
        status="paused", paused_reason="X refused the credentials (401)."
    )
    code, out = check()
    assert (code, out.strip()) == (
        2,
        f"PROBLEM: account {account.account_id} is paused holding 2 pending conversions "
        "(X refused the credentials (401).)",
    )


def test_check_refuses_other_modes(purchase_tag: EventTag) -> None:
    with pytest.raises(CommandError, match="--check and --loop cannot be combined"):
        run("--check", "--loop")
