"""The few cryptographic primitives the privacy package builds on, each in one place so the
known-answer tests in tests/privacy pin exactly the code path production uses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# NIST SP 800-38D §8.2: 96-bit nonces; random nonces are safe for far more messages per key than
# a zone will ever seal (each data key seals exactly one record).
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16


class Unsealable(Exception):
    """Authenticated decryption failed; deliberately carries no detail."""


def encode_fields(*fields: str) -> bytes:
    """Encode strings injectively: each as a 4-byte big-endian length followed by its UTF-8 bytes,
    so ("ab", "c") and ("a", "bc") can never produce the same message."""
    parts: list[bytes] = []
    for text in fields:
        data = text.encode("utf-8")
        parts.append(struct.pack(">I", len(data)))
        parts.append(data)
    return b"".join(parts)


def b64url(data: bytes) -> str:
    """RFC 4648 §5 (URL- and filename-safe alphabet) without padding, as JOSE writes it
    (RFC 7515 §2): key files, JWK thumbprints, search cursors."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B32_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
# Every 10-bit group as its two base32 characters: one table lookup per two characters.
_B32_PAIRS: Final = tuple(a + b for a in _B32_ALPHABET for b in _B32_ALPHABET)


def b32_lower(data: bytes) -> str:
    """RFC 4648 base32 in lower case, for inputs of a multiple of 5 bytes (no padding needed):
    `base64.b32encode(data).decode().lower()`, which is pure Python in 3.11 and was an eighth of
    the ingest hot path's time; this is about twice as fast."""
    if len(data) % 5:
        raise ValueError("b32_lower encodes whole 5-byte groups only")
    number = int.from_bytes(data, "big")
    pairs = _B32_PAIRS
    return "".join(
        [pairs[(number >> shift) & 1023] for shift in range(len(data) * 8 - 10, -1, -10)]
    )


class KeyedHash:
    """HMAC-SHA256 (RFC 2104, FIPS 198-1) under one fixed key.

    The keyed inner/outer state is computed once; each call copies it, which saves two
    compression-function calls per value on the ingest hot path."""

    __slots__ = ("_template",)

    def __init__(self, key: bytes) -> None:
        self._template = hmac.new(key, digestmod=hashlib.sha256)

    def digest(self, message: bytes) -> bytes:
        mac = self._template.copy()
        mac.update(message)
        return mac.digest()

    def __repr__(self) -> str:
        return "KeyedHash(HMAC-SHA256)"


def aead_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM encrypt under a fresh random nonce; returns nonce || ciphertext || tag."""
    return aead_seal_with_nonce(key, secrets.token_bytes(NONCE_BYTES), plaintext, aad)


def aead_seal_with_nonce(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Only for known-answer tests and `aead_seal`: a repeated nonce under one key breaks GCM."""
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Inverse of `aead_seal`; raises `Unsealable` on any authentication or format failure."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise Unsealable
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        # ValueError: a key of the wrong length. Raising outside the handler keeps the library's
        # exception from being chained onto ours.
        pass
    raise Unsealable
