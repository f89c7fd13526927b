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
