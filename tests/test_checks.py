from __future__ import annotations

import pytest

from django_xconversions import checks


def ids(messages: list) -> list[str]:
    return [m.id for m in messages]


def with_settings(settings, **values: object) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, **values}


def test_default_test_settings_are_clean() -> None:
    for check in checks.ALL_CHECKS:
        assert check() == []


def test_unknown_key_is_named(settings) -> None:
    with_settings(settings, BATCHSIZE=10)
    [error] = checks.check_settings_shape()
    assert error.id == "xconversions.E002"
    assert 'XCONVERSIONS["BATCHSIZE"]' in error.msg


def test_missing_encryption_key_is_an_error_outside_debug(settings) -> None:
    with_settings(settings, ENCRYPTION_KEY="")
    settings.DEBUG = False
    assert ids(checks.check_encryption_key()) == ["xconversions.E003"]
    settings.DEBUG = True
    assert ids(checks.check_encryption_key()) == ["xconversions.W001"]


def test_invalid_encryption_key(settings) -> None:
    with_settings(settings, ENCRYPTION_KEY="not-a-key")
    [error] = checks.check_encryption_key()
    assert error.id == "xconversions.E004" and 'XCONVERSIONS["ENCRYPTION_KEY"]' in error.msg


def test_missing_consumer_secret_named(settings) -> None:
    with_settings(settings, CONSUMER_SECRET="")
    [warning] = checks.check_credentials()
    assert 'XCONVERSIONS["CONSUMER_SECRET"]' in warning.msg
    assert "CONSUMER_KEY" not in warning.msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_BASE_URL", "ads-api.x.com"),
        ("API_VERSION", "v12"),
        ("READ_TIMEOUT", 0),
        ("DEFAULT_PHONE_REGION", "USA"),
        ("DEFAULT_CURRENCY", "usd"),
    ],
)
def test_bad_values_name_the_setting(settings, name: str, value: object) -> None:
    with_settings(settings, **{name: value})
    [error] = checks.check_values()
    assert f'XCONVERSIONS["{name}"]' in error.msg


def test_checks_are_registered_with_django() -> None:
    from django.core import checks as django_checks

    registered = django_checks.registry.registry.get_checks()
    assert checks.check_encryption_key in registered


def test_api_settings_are_checked_at_start_up(settings) -> None:
    from django_xconversions.checks import check_api_settings

    with_settings(
        settings,
        API_PERMISSION_CLASSES=["rest_framework.permissions.Nope"],
        API_THROTTLE_RATE="lots",
        API_PAGE_SIZE=0,
    )
    messages = [m.msg for m in check_api_settings()]
    assert len(messages) == 3
    assert "API_PERMISSION_CLASSES\"] names 'rest_framework.permissions.Nope'" in messages[0]
    assert "API_THROTTLE_RATE" in messages[1] and "API_PAGE_SIZE" in messages[2]


# -- SOURCES: every problem of every entry, in one run ----------------------------------------


def source_messages(settings, *entries: object) -> list[str]:
    with_settings(settings, SOURCES=list(entries))
    found = checks.check_sources()
    assert {m.id for m in found} <= {"xconversions.E006"}
    return [m.msg for m in found]


def test_when_value_outside_the_fields_choices_is_an_error(settings, monkeypatch) -> None:
    from tests.shop.models import Order

    monkeypatch.setattr(
        Order._meta.get_field("status"), "choices", [("new", "New"), ("paid", "Paid")]
    )
    entry = {
        "model": "shop.Order",
        "event": "purchase",
        "when": {"field": "status", "value": "payed"},
    }
    [message] = source_messages(settings, entry)
    assert message == (
        "XCONVERSIONS[\"SOURCES\"][0] (shop.Order): 'when' value 'payed' is not one of the "
        "choices of shop.Order.status ('new', 'paid')."
    )
    entry["when"] = {"field": "status", "value": "paid"}
    assert source_messages(settings, entry) == []


def test_when_value_of_integer_choices(settings) -> None:
    # LogEntry.action_flag: 1, 2, 3.
    entry = {"model": "admin.LogEntry", "event": "x", "when": {"field": "action_flag", "value": 4}}
    [message] = source_messages(settings, entry)
    assert (
        "'when' value 4 is not one of the choices of admin.LogEntry.action_flag (1, 2, 3)"
        in message
    )
    entry["when"]["value"] = 2
    assert source_messages(settings, entry) == []


def test_when_value_the_field_can_never_hold(settings) -> None:
    # A string for an integer field: the stored value never equals it, so it never fires.
    entry = {
        "model": "shop.Order",
        "event": "purchase",
        "when": {"field": "quantity", "value": "two"},
    }
    [message] = source_messages(settings, entry)
    assert "'when' value 'two' is not a value shop.Order.quantity can hold" in message


def test_attribute_path_error_names_the_model_and_the_attribute(settings) -> None:
    entry = {"model": "shop.Order", "event": "purchase", "email": "customer.email"}
    [message] = source_messages(settings, entry)
    assert message == (
        "shop.Order has no attribute 'customer' "
        '(XCONVERSIONS["SOURCES"][0]["email"] = \'customer.email\').'
    )
    assert "No module named" not in message


def test_attribute_paths_are_followed_through_relations(settings) -> None:
    # LogEntry.user is a foreign key to auth.User.
    entry = {"model": "admin.LogEntry", "event": "x", "email": "user.emial", "phone": "user.email"}
    [message] = source_messages(settings, entry)
    assert message == (
        "auth.User has no attribute 'emial' "
        '(XCONVERSIONS["SOURCES"][0]["email"] = \'user.emial\').'
    )


def test_dotted_callables_are_still_accepted_and_a_missing_one_is_named(settings) -> None:
    good = {
        "model": "shop.Order",
        "event": "purchase",
        "contents": "tests.shop.tracking.order_contents",
    }
    assert source_messages(settings, good) == []
    bad = {"model": "shop.Order", "event": "purchase", "contents": "tests.shop.tracking.nope"}
    [message] = source_messages(settings, bad)
    assert "'tests.shop.tracking.nope'" in message and 'SOURCES"][0]["contents"]' in message
    assert "cannot be imported" in message


def test_all_problems_of_all_entries_in_one_run(settings) -> None:
    messages = source_messages(
        settings,
        {
            "model": "shop.Order",
            "event": "",  # 1
            "when": {"field": "state", "value": "paid"},  # 2
            "email": "customer.email",  # 3
            "value": "totl",  # 4
            "contents": "tests.shop.tracking.nope",  # 5
            "colour": "red",  # 6
        },
        "not a dict",  # 7
        {"model": "shop.Nope", "event": 3},  # 8, 9
        {"model": "shop.Member", "event": "sign_up", "email": "email"},  # fine
        {"model": "shop.Order", "event": "purchase", "when": "paid", "phone": ""},  # 10, 11
    )
    assert len(messages) == 11, messages
    assert sum('SOURCES"][0]' in m for m in messages) == 6
    assert not any('SOURCES"][3]' in m for m in messages)
    assert sum('SOURCES"][4]' in m for m in messages) == 2


def test_readme_sources_against_a_project_without_those_models_in_one_run(settings) -> None:
    # The README's snippet in a project whose Order has none of customer/item_count: every
    # mistake shows in the first run.
    messages = source_messages(
        settings,
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
        {"model": "accounts.Customer", "event": "sign_up", "email": "email"},
    )
    assert len(messages) == 5, messages
    joined = "\n".join(messages)
    for fragment in (
        "'customer'",
        "'item_count'",
        "'shop.tracking.order_contents'",
        "accounts.Customer",
    ):
        assert fragment in joined


# -- ENCRYPTION_KEY of the wrong type -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "described"),
    [(None, "None"), (42, "int"), ([1, 2], "int"), (["a", 3.5], "float"), ({"k": "v"}, "dict")],
)
def test_encryption_key_of_the_wrong_type_is_a_clear_error(settings, value, described) -> None:
    with_settings(settings, ENCRYPTION_KEY=value)
    [error] = checks.check_encryption_key()
    assert error.id == "xconversions.E010"
    assert error.msg.startswith('XCONVERSIONS["ENCRYPTION_KEY"] must be a Fernet key')
    assert "str" in error.msg and described in error.msg


def test_blank_and_none_entries_of_a_key_list_are_left_out(settings) -> None:
    # ["new", os.environ.get("OLD_KEY")] with OLD_KEY unset: the list's other keys work.
    from cryptography.fernet import Fernet

    with_settings(settings, ENCRYPTION_KEY=[Fernet.generate_key().decode(), None, ""])
    assert checks.check_encryption_key() == []


def test_encryption_key_none_does_not_crash_the_whole_check_command(settings) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with_settings(settings, ENCRYPTION_KEY=None)
    with pytest.raises(SystemCheckError, match=r'XCONVERSIONS\["ENCRYPTION_KEY"\] must be'):
        call_command("check")


def test_bytes_keys_are_accepted(settings) -> None:
    from cryptography.fernet import Fernet

    with_settings(settings, ENCRYPTION_KEY=Fernet.generate_key())
    assert checks.check_encryption_key() == []
    with_settings(settings, ENCRYPTION_KEY=[Fernet.generate_key(), Fernet.generate_key().decode()])
    assert checks.check_encryption_key() == []


@pytest.mark.parametrize(
    "entry",
    [
        {"model": object, "event": ["purchase"], "when": {"field": ["a"], "value": {}}},
        {"model": "shop.Order", "event": "a\x00b", "when": {"field": "status", "value": [1]}},
        {"model": "shop.Order", "event": "p" * 65, "email": 3, 1: "one"},
        {"model": "shop.Order", "event": "p", "when": {"field": "pk", "value": "x"}, "phone": "."},
        {"model": "shop.Order", "event": "p", "contents": "\ud800.x", "value": "os.path.nope"},
        {"model": "shop.Order", "event": "p", "when": {"field": "status"}, "currency": "..."},
    ],
)
def test_hostile_entries_are_reported_never_raised(settings, entry: dict) -> None:
    found = checks.check_sources()  # the valid default first: nothing
    assert found == []
    with_settings(settings, SOURCES=[entry])
    found = checks.check_sources()
    assert found and {m.id for m in found} == {"xconversions.E006"}
    assert all(m.msg.startswith(("XCONVERSIONS", "shop.Order")) for m in found)


# -- unknown keys: a suggestion, not the list of every key ----------------------------------


@pytest.mark.parametrize(
    ("key", "suggested"),
    [("SEND_IMEDIATELY", "SEND_IMMEDIATELY"), ("batch_size", "BATCH_SIZE"), ("COLOUR", None)],
)
def test_unknown_key_suggests_the_closest_setting(settings, key: str, suggested) -> None:
    with_settings(settings, **{key: True})
    [error] = checks.check_settings_shape()
    assert error.msg == f'Unknown setting XCONVERSIONS["{key}"].'
    if suggested:
        assert error.hint == f"Did you mean {suggested}?"
    else:
        assert "Did you mean" not in error.hint and "README" in error.hint
    assert "API_PAGE_SIZE" not in error.hint  # never the whole list


def test_a_key_that_is_not_a_string_is_reported(settings) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, 1: "one"}
    [error] = checks.check_settings_shape()
    assert error.msg == 'Unknown setting XCONVERSIONS["1"].'


# -- W001 / W002 only where they apply ---------------------------------------------------------


def checks_printed(monkeypatch, capsys, command: str) -> str:
    """What ``manage.py <command>`` prints of the system checks (its own work left out);
    "exit 1" first when they stop it."""
    from django.core.management import load_command_class

    instance = load_command_class("django_xconversions", command)
    monkeypatch.setattr(type(instance), "handle", lambda self, *args, **options: None)
    capsys.readouterr()
    try:
        instance.run_from_argv(["manage.py", command])  # as manage.py runs it
    except SystemExit as exc:
        return f"exit {exc.code}\n" + capsys.readouterr().err
    return capsys.readouterr().err


@pytest.fixture
def no_key_nor_credentials(settings):
    settings.DEBUG = True
    with_settings(settings, ENCRYPTION_KEY="", CONSUMER_KEY="", CONSUMER_SECRET="")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("xads_emulator", set()),  # a separate program: needs neither
        ("purge_conversions", set()),  # deletes rows: needs neither
        ("rotate_encryption_key", {"W001"}),
        ("sync_tags", {"W001", "W002"}),
        ("send_conversions", {"W001", "W002"}),
    ],
)
# Django 6 runs the database checks with every command too: they read the tables.
@pytest.mark.django_db
def test_key_and_credential_warnings_only_for_commands_that_use_them(
    monkeypatch, capsys, no_key_nor_credentials, command: str, shown: set[str]
) -> None:
    printed = checks_printed(monkeypatch, capsys, command)
    assert {w for w in ("W001", "W002") if f"xconversions.{w}" in printed} == shown, printed


def test_check_and_runserver_still_report_both(no_key_nor_credentials) -> None:
    from django.core.checks.registry import registry

    found = {m.id for m in registry.run_checks()}  # what `check` and `runserver` run
    assert {"xconversions.W001", "xconversions.W002"} <= found


# Django 6 runs the database checks with every command too: they read the tables.
@pytest.mark.django_db
def test_the_emulator_starts_without_the_products_key(monkeypatch, capsys, settings) -> None:
    # Outside DEBUG a missing key is an error (E003) that stops the commands that use it.
    settings.DEBUG = False
    with_settings(settings, ENCRYPTION_KEY="")
    assert checks_printed(monkeypatch, capsys, "xads_emulator") == ""
    stopped = checks_printed(monkeypatch, capsys, "send_conversions")
    assert stopped.startswith("exit 1\n") and "xconversions.E003" in stopped


# Django 6 runs the database checks with every command too: they read the tables.
@pytest.mark.django_db
def test_settings_errors_still_stop_every_product_command(monkeypatch, capsys, settings) -> None:
    with_settings(settings, BATCH_SIZE="lots")
    for command in ("purge_conversions", "rotate_encryption_key", "send_conversions", "sync_tags"):
        stopped = checks_printed(monkeypatch, capsys, command)
        assert stopped.startswith("exit 1\n"), command
        assert 'XCONVERSIONS["BATCH_SIZE"] must be a whole number' in stopped
