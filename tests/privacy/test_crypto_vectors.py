"""Known-answer tests: the primitives, through the exact helpers production code calls."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from gateway.privacy._primitives import (
    KeyedHash,
    Unsealable,
    aead_open,
    aead_seal,
    aead_seal_with_nonce,
    encode_fields,
)

# RFC 4231 §4.2 and §4.3 (HMAC-SHA-256).
HMAC_SHA256_VECTORS = [
    pytest.param(
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        id="rfc4231-case-1",
    ),
    pytest.param(
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        id="rfc4231-case-2",
    ),
]

# McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", Appendix B, test cases 14 and 16
# (AES-256); the same vectors appear in NIST's gcmEncryptExtIV256.rsp.
TC16_KEY = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
TC16_PLAINTEXT = (
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
TC16_CIPHERTEXT = (
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
)


class GcmVector(NamedTuple):
    key: str
    nonce: str
    plaintext: str
    aad: str
    ciphertext: str
    tag: str


AES_256_GCM_VECTORS = [
    pytest.param(
        GcmVector(
            key="00" * 32,
            nonce="00" * 12,
            plaintext="00" * 16,
            aad="",
            ciphertext="cea7403d4d606b6e074ec5d3baf39d18",
            tag="d0d1c8a799996bf0265b98b5d48ab919",
        ),
        id="gcm-test-case-14",
    ),
    pytest.param(
        GcmVector(
            key=TC16_KEY,
            nonce="cafebabefacedbaddecaf888",
            plaintext=TC16_PLAINTEXT,
            aad="feedfacedeadbeeffeedfacedeadbeefabaddad2",
            ciphertext=TC16_CIPHERTEXT,
            tag="76fc6ece0f4e1768cddf8853bb2d551b",
        ),
        id="gcm-test-case-16",
    ),
]


@pytest.mark.parametrize(("key", "message", "expected"), HMAC_SHA256_VECTORS)
def test_keyed_hash_matches_rfc_4231(key: bytes, message: bytes, expected: str) -> None:
    assert KeyedHash(key).digest(message).hex() == expected


def test_keyed_hash_gives_the_same_answer_on_every_call() -> None:
    keyed = KeyedHash(b"Jefe")
    first = keyed.digest(b"what do ya want for nothing?")
    keyed.digest(b"something else in between")
    assert keyed.digest(b"what do ya want for nothing?") == first


@pytest.mark.parametrize("vector", AES_256_GCM_VECTORS)
def test_aead_seal_matches_the_gcm_specification(vector: GcmVector) -> None:
    sealed = aead_seal_with_nonce(
        bytes.fromhex(vector.key),
        bytes.fromhex(vector.nonce),
        bytes.fromhex(vector.plaintext),
        bytes.fromhex(vector.aad),
    )
    assert sealed.hex() == vector.nonce + vector.ciphertext + vector.tag


@pytest.mark.parametrize("vector", AES_256_GCM_VECTORS)
def test_aead_open_decrypts_the_gcm_specification_vectors(vector: GcmVector) -> None:
    sealed = bytes.fromhex(vector.nonce + vector.ciphertext + vector.tag)
    opened = aead_open(bytes.fromhex(vector.key), sealed, bytes.fromhex(vector.aad))
    assert opened.hex() == vector.plaintext


def test_aead_open_rejects_a_modified_tag() -> None:
    sealed = bytearray(aead_seal(bytes(32), b"payload", b"aad"))
    sealed[-1] ^= 1
    with pytest.raises(Unsealable):
        aead_open(bytes(32), bytes(sealed), b"aad")


def test_aead_open_rejects_other_associated_data() -> None:
    sealed = aead_seal(bytes(32), b"payload", b"aad")
    with pytest.raises(Unsealable):
        aead_open(bytes(32), sealed, b"aae")


def test_aead_open_rejects_input_shorter_than_nonce_and_tag() -> None:
    with pytest.raises(Unsealable):
        aead_open(bytes(32), bytes(27), b"")


def test_aead_seal_uses_a_fresh_nonce_each_time() -> None:
    assert aead_seal(bytes(32), b"same", b"") != aead_seal(bytes(32), b"same", b"")


def test_encode_fields_is_length_prefixed_big_endian_utf8() -> None:
    assert encode_fields("ab", "", "é") == (
        b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x02\xc3\xa9"
    )


def test_encode_fields_keeps_field_boundaries() -> None:
    assert encode_fields("ab", "c") != encode_fields("a", "bc")
