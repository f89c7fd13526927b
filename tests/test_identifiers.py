from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import ValidationError

from django_xconversions import identifiers as ids

# Vectors from X's documentation (see XADS_FACTS.md).
EMAIL_VECTOR = (
    "test-email@test.com",
    "e586883b2b4faf78d48300a79e0e15138d664cdf796ffb86e533170a9893eda8",
)
PHONE_VECTOR = ("+11234567890", "1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231")
# X's page says this is test@x.com; it is in fact test@twitter.com.
DOCS_EMAIL_HASH = "d360d510a224510f373931ce2d6215a799f5a9c1cef221b0149b6b6b50cced62"


def field_of(error: ValidationError) -> list[str]:
    return list(error.message_dict)


def test_email_vector_from_x_docs() -> None:
    assert ids.hash_email(EMAIL_VECTOR[0]) == EMAIL_VECTOR[1]


def test_docs_hash_is_of_twitter_address_not_x_address() -> None:
    assert ids.hash_email("test@twitter.com") == DOCS_EMAIL_HASH
    assert ids.hash_email("test@x.com") != DOCS_EMAIL_HASH


def test_email_is_trimmed_and_lowercased_before_hashing() -> None:
    assert ids.normalize_email("  Test-Email@TEST.com \n") == "test-email@test.com"
    assert ids.hash_email("  Test-Email@TEST.com ") == EMAIL_VECTOR[1]


def test_already_hashed_email_passes_through_lowercased_never_rehashed() -> None:
    upper = EMAIL_VECTOR[1].upper()
    assert ids.hash_email(upper) == EMAIL_VECTOR[1]
    assert ids.hash_email(ids.hash_email(EMAIL_VECTOR[0])) == EMAIL_VECTOR[1]


@pytest.mark.parametrize(
    "bad", ["", "   ", "no-at-sign", "a@b", "two@@example.com", "a b@example.com"]
)
def test_invalid_email_names_field_and_rule_without_echoing_value(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        ids.hash_email(bad)
    assert field_of(info.value) == ["email"]
    if bad.strip():
        assert bad.strip() not in str(info.value)


def test_phone_vector_from_x_docs() -> None:
    assert ids.hash_phone(PHONE_VECTOR[0]) == PHONE_VECTOR[1]


def test_us_phone_typed_with_punctuation_hashes_like_e164() -> None:
    assert ids.normalize_phone("(123) 456-7890", "US") == "+11234567890"
    assert ids.hash_phone("(123) 456-7890", "US") == PHONE_VECTOR[1]


def test_phone_region_defaults_to_setting(settings) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "DEFAULT_PHONE_REGION": "GB"}
    assert ids.normalize_phone("020 7946 0958") == "+442079460958"


def test_phone_without_prefix_or_region_names_the_setting(settings) -> None:
    settings.XCONVERSIONS = {**settings.XCONVERSIONS, "DEFAULT_PHONE_REGION": None}
    with pytest.raises(ValidationError) as info:
        ids.normalize_phone("456-7890")
    assert field_of(info.value) == ["phone"]
    assert 'XCONVERSIONS["DEFAULT_PHONE_REGION"]' in str(info.value)


@pytest.mark.parametrize("bad", ["", "abc", "+1 23", "+999 123456789012345"])
def test_invalid_phone_names_field(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        ids.hash_phone(bad, "US")
    assert field_of(info.value) == ["phone"]


def test_already_hashed_phone_passes_through() -> None:
    assert ids.hash_phone(PHONE_VECTOR[1].upper()) == PHONE_VECTOR[1]


def test_twclid_is_kept_verbatim_and_never_hashed() -> None:
    click = "23opevjt88psuo13lu8d020qkn"
    assert ids.normalize_twclid(click) == click


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "<script>", "é", "abc\n"])
def test_invalid_twclid(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        ids.normalize_twclid(bad)
    assert field_of(info.value) == ["twclid"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" 8.25.197.25 ", "8.25.197.25"), ("2001:DB8::0:1", "2001:db8::1"), ("::1", "::1")],
)
def test_ip_addresses_v4_and_v6(raw: str, expected: str) -> None:
    assert ids.normalize_ip(raw) == expected


@pytest.mark.parametrize("bad", ["", "256.1.1.1", "1.2.3", "localhost", "1.2.3.4/24"])
def test_invalid_ip(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        ids.normalize_ip(bad)
    assert field_of(info.value) == ["ip_address"]


def test_user_agent_trimmed_and_bounded() -> None:
    assert ids.normalize_user_agent("  Mozilla/5.0  ") == "Mozilla/5.0"
    assert len(ids.normalize_user_agent("a" * 5000)) == ids.USER_AGENT_MAX_LENGTH


def test_sha256_is_plain_unsalted() -> None:
    assert ids.sha256_hex("abc") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    ("given", "enough"),
    [
        ({"twclid": "abc"}, True),
        ({"hashed_email": "e" * 64}, True),
        ({"hashed_phone": "f" * 64}, True),
        ({"ip_address": "192.0.2.7", "user_agent": "Mozilla/5.0"}, True),
        ({"ip_address": "192.0.2.7"}, False),  # a device needs both
        ({"user_agent": "Mozilla/5.0"}, False),
        ({"twclid": "   ", "hashed_email": "", "ip_address": "192.0.2.7"}, False),
        ({"ip_address": "192.0.2.7", "user_agent": " "}, False),
        ({"twclid": None, "hashed_email": None, "hashed_phone": None}, False),
        ({}, False),
    ],
)
def test_enough_to_match_is_xs_identifier_rule(given: dict[str, str], enough: bool) -> None:
    assert ids.enough_to_match(**given) is enough


def test_a_hash_ending_in_a_newline_is_no_hash() -> None:
    # X refuses it; a pattern ending in "$" took it, and the whole batch came back 400.
    assert ids.is_sha256_hex(PHONE_VECTOR[1])
    assert not ids.is_sha256_hex(PHONE_VECTOR[1] + "\n")
