from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.privacy import (
    IdentityUnreadable,
    IdentityVault,
    KeyPurpose,
    SealedIdentity,
    ZoneKeyRing,
)

RING = ZoneKeyRing.generate("cn")
VAULT = IdentityVault(RING)
SUBJECT = "s1-dsvgg2mfofd2xhv2b55hc4wocayf7s6q"
IDENTITY: dict[str, object] = {
    "identifiers": [{"system": "urn:oid:1.2.156.112604.1.1", "value": "110101199003077777"}],
    "birthDate": "1990-03-07",
    "name": "张伟",
    "phone": None,
}
SEALED = VAULT.seal(SUBJECT, IDENTITY)


def flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index % len(changed)] ^= 0x01
    return bytes(changed)


def test_a_sealed_identity_opens_to_the_same_record() -> None:
    assert VAULT.open(SUBJECT, SEALED) == IDENTITY


def test_seal_uses_the_active_kek_version_and_hides_the_record() -> None:
    assert SEALED.kek_version == 1
    assert b"110101199003077777" not in SEALED.ciphertext
    assert "110101199003077777" not in repr(SEALED)


def test_sealing_twice_gives_different_bytes() -> None:
    again = VAULT.seal(SUBJECT, IDENTITY)
    assert again.ciphertext != SEALED.ciphertext
    assert again.wrapped_key != SEALED.wrapped_key


def test_a_record_does_not_open_for_another_subject() -> None:
    with pytest.raises(IdentityUnreadable):
        VAULT.open("s1-" + "a" * 32, SEALED)


def test_a_record_does_not_open_in_another_zone_even_with_the_same_keys() -> None:
    same_keys_other_zone = ZoneKeyRing(zone="eu", keys=RING.keys, active=RING.active)
    with pytest.raises(IdentityUnreadable):
        IdentityVault(same_keys_other_zone).open(SUBJECT, SEALED)


def test_a_record_does_not_open_under_another_key_ring() -> None:
    with pytest.raises(IdentityUnreadable):
        IdentityVault(ZoneKeyRing.generate("cn")).open(SUBJECT, SEALED)


@given(index=st.integers(min_value=0))
def test_any_changed_ciphertext_bit_is_detected(index: int) -> None:
    tampered = dataclasses.replace(SEALED, ciphertext=flip(SEALED.ciphertext, index))
    with pytest.raises(IdentityUnreadable):
        VAULT.open(SUBJECT, tampered)


@given(index=st.integers(min_value=0))
def test_any_changed_wrapped_key_bit_is_detected(index: int) -> None:
    tampered = dataclasses.replace(SEALED, wrapped_key=flip(SEALED.wrapped_key, index))
    with pytest.raises(IdentityUnreadable):
        VAULT.open(SUBJECT, tampered)


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_key"])
def test_truncated_bytes_are_detected(field: str) -> None:
    for length in (0, 27, 28, len(getattr(SEALED, field)) - 1):
        truncated = dataclasses.replace(SEALED, **{field: getattr(SEALED, field)[:length]})
        with pytest.raises(IdentityUnreadable):
            VAULT.open(SUBJECT, truncated)


def test_records_cannot_be_swapped_between_subjects() -> None:
    other_subject = "s1-" + "b" * 32
    other = VAULT.seal(other_subject, {"name": "李娜"})
    mixed = dataclasses.replace(SEALED, ciphertext=other.ciphertext)
    with pytest.raises(IdentityUnreadable):
        VAULT.open(SUBJECT, mixed)
    with pytest.raises(IdentityUnreadable):
        VAULT.open(other_subject, dataclasses.replace(other, ciphertext=SEALED.ciphertext))


def test_a_kek_version_the_ring_lacks_is_unreadable_and_says_so_without_bytes() -> None:
    with pytest.raises(IdentityUnreadable, match="kek version 7") as raised:
        VAULT.open(SUBJECT, dataclasses.replace(SEALED, kek_version=7))
    message = str(raised.value)
    for data in (SEALED.ciphertext, SEALED.wrapped_key, RING.key(KeyPurpose.KEK)):
        assert data.hex()[:12] not in message


def test_identity_unreadable_is_a_500_with_a_stable_code() -> None:
    assert issubclass(IdentityUnreadable, GatewayError)
    assert IdentityUnreadable.status == 500
    assert IdentityUnreadable.code == "identity-unreadable"


def test_rewrap_moves_the_data_key_to_the_new_kek_and_keeps_the_ciphertext() -> None:
    rotated = RING.with_new_version(KeyPurpose.KEK)
    vault = IdentityVault(rotated)
    rewrapped = vault.rewrap(SUBJECT, SEALED)
    assert rewrapped.kek_version == 2
    assert rewrapped.ciphertext == SEALED.ciphertext
    assert rewrapped.wrapped_key != SEALED.wrapped_key
    assert vault.open(SUBJECT, rewrapped) == IDENTITY
    assert vault.open(SUBJECT, SEALED) == IDENTITY


def test_a_rewrapped_record_needs_the_new_kek() -> None:
    rewrapped = IdentityVault(RING.with_new_version(KeyPurpose.KEK)).rewrap(SUBJECT, SEALED)
    with pytest.raises(IdentityUnreadable):
        VAULT.open(SUBJECT, rewrapped)


def test_rewrap_refuses_a_record_of_another_subject() -> None:
    with pytest.raises(IdentityUnreadable):
        VAULT.rewrap("s1-" + "c" * 32, SEALED)


def test_new_records_use_the_new_kek_after_rotation() -> None:
    vault = IdentityVault(RING.with_new_version(KeyPurpose.KEK))
    assert vault.seal(SUBJECT, IDENTITY).kek_version == 2


def test_sealed_identity_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SEALED.kek_version = 2  # type: ignore[misc]


def test_sealed_identity_repr_shows_no_bytes() -> None:
    assert repr(SEALED) == "SealedIdentity(kek_version=1)"


@given(
    identity=st.dictionaries(
        st.text(),
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
        max_size=5,
    )
)
def test_any_json_object_round_trips(identity: dict[str, object]) -> None:
    assert VAULT.open(SUBJECT, VAULT.seal(SUBJECT, identity)) == identity


def test_sealed_identity_type_is_exported() -> None:
    assert isinstance(SEALED, SealedIdentity)
