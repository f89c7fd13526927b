"""Typed settings: read once, cached until XCONVERSIONS changes, one rule per key shared by
reading and the system checks."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core import checks as django_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.test import override_settings

from django_xconversions import checks, conf
from django_xconversions.conf import SettingError, xsettings


def configure(settings: Any, **values: Any) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, **values}


def all_check_messages() -> list[django_checks.CheckMessage]:
    return [message for check in checks.ALL_CHECKS for message in check()]


# -- types ---------------------------------------------------------------------------------


def test_values_have_their_types() -> None:
    assert type(xsettings.BATCH_SIZE) is int
    assert isinstance(xsettings.READ_TIMEOUT, float)
    assert type(xsettings.NOTIFY_ON_COMMIT) is bool
    assert isinstance(xsettings.API_VERSION, str)
    assert isinstance(xsettings.SOURCES, list)
    assert all(isinstance(entry, dict) for entry in xsettings.SOURCES)
    assert isinstance(xsettings.ENCRYPTION_KEY, tuple)


def test_every_setting_is_read_into_a_declared_type() -> None:
    # What mypy sees for xsettings.NAME is its reader's return type: never Any or object.
    for name, setting in conf.SETTINGS.items():
        returned = typing.get_type_hints(setting.read)["return"]
        assert returned not in (Any, object), name


def test_an_unknown_name_is_an_attribute_error_with_a_suggestion() -> None:
    with pytest.raises(AttributeError, match=r"did you mean SEND_IMMEDIATELY\?"):
        xsettings.SEND_IMEDIATELY  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError, match=r'XCONVERSIONS\["FROBNICATE"\]') as raised:
        xsettings.FROBNICATE  # type: ignore[attr-defined]  # noqa: B018
    assert "did you mean" not in str(raised.value)
    assert "BATCH_SIZE" not in str(raised.value)  # no list of every key


# -- numbers written as strings, and what is refused -----------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("BATCH_SIZE", "500", 500),
        ("BATCH_SIZE", " 20 ", 20),
        ("READ_TIMEOUT", "2.5", 2.5),
        ("READ_TIMEOUT", 3, 3),
        ("LEASE_SECONDS", "60", 60),
        ("API_VERSION", 12, "12"),
        ("CONSUMER_KEY", None, ""),  # an unset environment variable: not set, never "None"
        ("DEFAULT_PHONE_REGION", "", None),
        ("ENCRYPTION_KEY", None, ()),
        ("API_THROTTLE_RATE", "", None),
    ],
)
def test_unambiguous_values_are_read(settings: Any, name: str, value: object, read: object) -> None:
    configure(settings, **{name: value})
    assert getattr(xsettings, name) == read
    assert conf.problem(name) is None


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BATCH_SIZE", "500.5", "whole number of at least 1 (int), not '500.5' (str)"),
        ("BATCH_SIZE", "five hundred", "(int), not 'five hundred' (str)"),
        ("BATCH_SIZE", True, "(int), not True (bool)"),
        ("BATCH_SIZE", 0, "at least 1 (int), not 0 (int)"),
        ("BATCH_SIZE", "9" * 5000, "(int), not '999"),  # too many digits for int(): no crash
        ("READ_TIMEOUT", "nan", "positive number of seconds (int or float), not 'nan'"),
        ("READ_TIMEOUT", float("inf"), "positive number of seconds"),
        ("LOOP_IDLE_SECONDS", -1, "positive number of seconds"),
        ("NOTIFY_ON_COMMIT", "false", "must be True or False (bool), not 'false' (str)"),
        ("HONOR_GPC", 0, "must be True or False (bool), not 0 (int)"),
        ("SEND_IMMEDIATELY", "yes", '"tasks", "celery" or "inline", not \'yes\' (str)'),
        ("API_PAGE_SIZE", 5000, "from 1 to 1000 (int)"),
        ("SOURCES", {"model": "shop.Order"}, "must be a list of dicts, not {'model'"),
        ("SOURCES", ["shop.Order"], "must be a list of dicts; entry [0] is str"),
        ("CLIENT_IP_HEADER", "x-real-ip", 'request.META key such as "HTTP_X_REAL_IP"'),
        ("API_PERMISSION_CLASSES", "a.b.C", "list of dotted paths to DRF classes, not 'a.b.C'"),
    ],
)
def test_wrong_values_are_refused_naming_the_setting_and_the_type(
    settings: Any, name: str, value: object, expected: str
) -> None:
    configure(settings, **{name: value})
    with pytest.raises(SettingError) as raised:
        getattr(xsettings, name)
    message = str(raised.value)
    assert isinstance(raised.value, ImproperlyConfigured)
    assert message.startswith(f'XCONVERSIONS["{name}"] must be'), message
    assert expected in message, message
    assert len(message) < 300  # a hostile value is cut short


def test_a_secret_of_the_wrong_type_is_not_repeated(settings: Any) -> None:
    configure(settings, CONSUMER_SECRET=918273645546372819)
    with pytest.raises(SettingError) as raised:
        xsettings.CONSUMER_SECRET  # noqa: B018
    assert str(raised.value) == 'XCONVERSIONS["CONSUMER_SECRET"] must be a string (str), not int.'
    [error] = checks.check_values()
    assert "918273645546372819" not in error.msg


# Wrong for every setting: not a number, string, bool, list, callable or None.
NOTHING_VALID = {"not": "valid"}


@pytest.mark.parametrize("name", sorted(conf.SETTINGS))
def test_the_checks_report_what_reading_would_raise(settings: Any, name: str) -> None:
    # One rule per setting: the message at start-up is the one a read raises at run time.
    configure(settings, **{name: NOTHING_VALID})
    with pytest.raises(SettingError) as raised:
        getattr(xsettings, name)
    found = [m for m in all_check_messages() if m.msg == str(raised.value)]
    assert len(found) == 1, [m.msg for m in all_check_messages()]
    assert found[0].is_serious() and found[0].id == conf.SETTINGS[name].check


def test_a_non_list_sources_connects_nothing_at_start_up(settings: Any) -> None:
    from django.apps import apps

    configure(settings, SOURCES="shop.Order")
    try:
        apps.get_app_config("xconversions").ready()  # reported by the check, never raised
        assert [m.id for m in checks.check_sources()] == ["xconversions.E006"]
    finally:
        del settings.XCONVERSIONS
        from django_xconversions import sources

        sources.connect()


# -- cached, and reset when XCONVERSIONS changes ----------------------------------------------


def count_reads(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    setting = conf.SETTINGS[name]
    seen: list[object] = []
    original = setting.read

    def read(value: object) -> Any:
        seen.append(value)
        return original(value)

    monkeypatch.setattr(setting, "read", read)
    xsettings.reset()
    return seen


def test_a_value_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = count_reads(monkeypatch, "BATCH_SIZE")
    assert [xsettings.BATCH_SIZE for _ in range(100)] == [500] * 100
    assert seen == [500]


def test_override_settings_is_seen_and_undone() -> None:
    assert xsettings.BATCH_SIZE == 500  # cached
    with override_settings(XCONVERSIONS={**django_settings.XCONVERSIONS, "BATCH_SIZE": 7}):
        assert xsettings.BATCH_SIZE == 7
        with override_settings(XCONVERSIONS={**django_settings.XCONVERSIONS, "BATCH_SIZE": "8"}):
            assert xsettings.BATCH_SIZE == 8
        assert xsettings.BATCH_SIZE == 7
    assert xsettings.BATCH_SIZE == 500


@override_settings(XCONVERSIONS={"BATCH_SIZE": 3, "ENCRYPTION_KEY": None})
def test_override_settings_as_a_decorator() -> None:
    assert (xsettings.BATCH_SIZE, xsettings.READ_TIMEOUT, xsettings.ENCRYPTION_KEY) == (3, 30.0, ())


def test_pytest_django_settings_fixture_is_seen(settings: Any) -> None:
    assert xsettings.RETENTION_DAYS == 90
    configure(settings, RETENTION_DAYS="7")
    assert xsettings.RETENTION_DAYS == 7


def test_setting_changed_drops_the_cache(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(settings, BATCH_SIZE=10)  # a dict of this test's own, changed in place below
    seen = count_reads(monkeypatch, "BATCH_SIZE")
    assert xsettings.BATCH_SIZE == 10
    django_settings.XCONVERSIONS["BATCH_SIZE"] = 20  # the same dict: the cache holds
    assert xsettings.BATCH_SIZE == 10 and seen == [10]
    setting_changed.send(sender=None, setting="XCONVERSIONS", value=None, enter=True)
    assert xsettings.BATCH_SIZE == 20 and seen == [10, 20]
    setting_changed.send(sender=None, setting="INSTALLED_APPS", value=None, enter=True)
    assert xsettings.BATCH_SIZE == 20 and seen == [10, 20]  # another setting: kept


def test_a_plain_assignment_without_the_signal_is_seen(settings: Any) -> None:
    # What a management command does to point itself at the emulator (no setting_changed).
    assert xsettings.API_BASE_URL == "https://ads-api.x.com"
    configure(settings)  # an override of this test's own, which the fixture undoes
    signals: list[object] = []

    def receiver(**kwargs: object) -> None:
        signals.append(kwargs)

    setting_changed.connect(receiver)
    try:
        django_settings.XCONVERSIONS = {
            **django_settings.XCONVERSIONS,
            "API_BASE_URL": "http://127.0.0.1:9",
        }
    finally:
        setting_changed.disconnect(receiver)
    assert signals == []
    assert xsettings.API_BASE_URL == "http://127.0.0.1:9"


def test_a_broken_value_is_raised_on_every_read_never_cached(settings: Any) -> None:
    configure(settings, MAX_ATTEMPTS="lots")
    for _ in range(2):
        with pytest.raises(SettingError, match=r'XCONVERSIONS\["MAX_ATTEMPTS"\]'):
            xsettings.MAX_ATTEMPTS  # noqa: B018
    configure(settings, MAX_ATTEMPTS=3)
    assert xsettings.MAX_ATTEMPTS == 3
