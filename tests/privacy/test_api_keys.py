from __future__ import annotations

import hashlib
import re

import pytest

from gateway.errors import Unauthenticated
from gateway.privacy import IssuedKey, issue_api_key, parse_api_key, verify_secret

TOKEN = re.compile(r"wgk_cn_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def issued() -> IssuedKey:
    return issue_api_key("cn")


def test_issued_token_has_the_documented_shape(issued: IssuedKey) -> None:
    assert TOKEN.fullmatch(issued.token)
    assert issued.token.split("_")[2] == issued.key_id


def test_issued_keys_are_unique() -> None:
    first, second = issue_api_key("cn"), issue_api_key("cn")
    assert first.key_id != second.key_id
    assert first.token != second.token
    assert first.secret_hash != second.secret_hash


def test_issue_parse_verify_round_trip(issued: IssuedKey) -> None:
    parsed = parse_api_key(issued.token)
    assert (parsed.zone, parsed.key_id) == ("cn", issued.key_id)
    assert verify_secret(parsed.secret, issued.secret_hash)


def test_the_stored_hash_is_sha256_of_the_secret(issued: IssuedKey) -> None:
    secret = parse_api_key(issued.token).secret
    assert issued.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret not in issued.secret_hash.hex()


def test_a_changed_secret_does_not_verify(issued: IssuedKey) -> None:
    secret = parse_api_key(issued.token).secret
    changed = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert not verify_secret(changed, issued.secret_hash)


def test_a_secret_does_not_verify_against_another_keys_hash(issued: IssuedKey) -> None:
    other = issue_api_key("cn")
    assert not verify_secret(parse_api_key(issued.token).secret, other.secret_hash)


@pytest.mark.parametrize("secret", ["", "é", "\udc80"])
def test_odd_secrets_do_not_verify(issued: IssuedKey, secret: str) -> None:
    assert not verify_secret(secret, issued.secret_hash)


def test_secrets_may_contain_underscores_and_dashes() -> None:
    secret = "_-" + "a" * 39 + "-_"
    parsed = parse_api_key(f"wgk_eu_0123456789ab_{secret}")
    assert (parsed.zone, parsed.key_id, parsed.secret) == ("eu", "0123456789ab", secret)


def test_reprs_show_no_token_or_secret(issued: IssuedKey) -> None:
    parsed = parse_api_key(issued.token)
    for text in (repr(issued), repr(parsed)):
        assert parsed.secret not in text
        assert issued.secret_hash.hex() not in text
    assert issued.key_id in repr(issued)


GOOD = "wgk_cn_0123456789ab_" + "A" * 43


@pytest.mark.parametrize(
    "token",
    [
        "",
        "wgk_",
        GOOD.replace("wgk_", "wgx_"),
        GOOD.replace("wgk_", "WGK_"),
        GOOD.replace("_cn_", "_CN_"),
        GOOD.replace("_cn_", "_c_n_"),
        GOOD.replace("_cn_", "__"),
        GOOD.replace("0123456789ab", "0123456789a"),
        GOOD.replace("0123456789ab", "0123456789AB"),
        GOOD.replace("0123456789ab", "0123456789ag"),
        GOOD[:-1],
        GOOD + "A",
        GOOD[:-1] + "=",
        GOOD[:-1] + "+",
        GOOD + "\n",
        " " + GOOD,
        "Bearer " + GOOD,
        GOOD.replace("A", "Å"),
        GOOD * 10,
    ],
)
def test_malformed_tokens_are_unauthenticated_without_echoing_them(token: str) -> None:
    with pytest.raises(Unauthenticated) as raised:
        parse_api_key(token)
    assert raised.value.status == 401
    assert "A" * 12 not in str(raised.value)
    if token:
        assert token.strip() not in str(raised.value)


def test_a_non_string_token_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        parse_api_key(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", ["", "CN", "c_n", "eu-west", "a" * 17])
def test_issue_refuses_zone_names_that_do_not_fit_the_token(zone: str) -> None:
    with pytest.raises(ValueError, match="zone names"):
        issue_api_key(zone)
