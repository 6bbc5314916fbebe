"""Envelope encryption of identity records (NIST SP 800-57 Pt 1 §6.2.1.3 key wrapping).

Each subject's identity is encrypted with AES-256-GCM (NIST SP 800-38D) under its own random data
key; the data key is wrapped with AES-256-GCM under the zone's active `kek`. Destroying the
wrapped key makes the identity unreadable for good (crypto-shredding), and rotating the kek only
rewraps 32-byte keys, never the records. The associated data binds both layers to the zone and
the subject pseudonym, so a record copied onto another subject or zone does not decrypt.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import orjson

from gateway.errors import ConfigurationError, GatewayError
from gateway.privacy._primitives import Unsealable, aead_open, aead_seal, encode_fields
from gateway.privacy.keys import KEY_BYTES, KeyPurpose, ZoneKeyRing

_LABEL: Final = "wearable-gateway/identity/1"


class IdentityUnreadable(GatewayError):
    """An identity record failed to decrypt: wrong subject or zone, tampering, or a kek version
    this key ring lacks. Carries no detail that could help an attacker or leak data."""

    status = 500
    code = "identity-unreadable"


class KekVersionMissing(IdentityUnreadable):
    """The record's data key is wrapped under a kek version this ring does not hold: the ring
    may be older than the zone's key file (reload it and try again) or the version was lost."""


@dataclass(frozen=True, slots=True)
class SealedIdentity:
    """An encrypted identity record; both byte strings are `nonce(12) || ciphertext || tag`."""

    wrapped_key: bytes = field(repr=False)
    kek_version: int
    ciphertext: bytes = field(repr=False)


class IdentityVault:
    """Seals and opens identity records under one zone's key ring."""

    __slots__ = ("_keyring",)

    def __init__(self, keyring: ZoneKeyRing) -> None:
        self._keyring = keyring

    def seal(self, subject: str, identity: Mapping[str, object]) -> SealedIdentity:
        """Encrypt `identity` (JSON-serialisable) for `subject` under a fresh data key."""
        data_key = secrets.token_bytes(KEY_BYTES)
        ciphertext = aead_seal(
            data_key, orjson.dumps(dict(identity)), self._aad(subject, "identity")
        )
        return self._wrap(subject, data_key, ciphertext)

    def open(self, subject: str, sealed: SealedIdentity) -> dict[str, object]:
        """Decrypt a record sealed for `subject` in this zone; raises `IdentityUnreadable`."""
        data_key = self._unwrap(subject, sealed)
        try:
            plaintext = aead_open(data_key, sealed.ciphertext, self._aad(subject, "identity"))
        except Unsealable:
            raise IdentityUnreadable("identity record failed authentication") from None
        # Authenticated, so written by `seal`; only a bug could make it other than a JSON object.
        # The check stays outside the handler: JSONDecodeError.doc would carry the plaintext.
        identity: object = None
        try:
            identity = orjson.loads(plaintext)
        except orjson.JSONDecodeError:
            identity = None
        if not isinstance(identity, dict):
            raise IdentityUnreadable("identity record is not a JSON object")
        return identity

    def rewrap(self, subject: str, sealed: SealedIdentity) -> SealedIdentity:
        """The same record with its data key wrapped under the active kek version; the identity
        ciphertext is untouched."""
        return self._wrap(subject, self._unwrap(subject, sealed), sealed.ciphertext)

    def rewrap_key(self, subject: str, wrapped_key: bytes, kek_version: int) -> tuple[bytes, int]:
        """A stored data key wrapped under the active kek instead: (wrapped key, kek version).
        The data key itself, and so everything encrypted under it, is unchanged (KEK rotation)."""
        sealed = SealedIdentity(wrapped_key=wrapped_key, kek_version=kek_version, ciphertext=b"")
        rewrapped = self._wrap(subject, self._unwrap(subject, sealed), b"")
        return rewrapped.wrapped_key, rewrapped.kek_version

    def _wrap(self, subject: str, data_key: bytes, ciphertext: bytes) -> SealedIdentity:
        version = self._keyring.active_version(KeyPurpose.KEK)
        wrapped = aead_seal(
            self._keyring.key(KeyPurpose.KEK, version), data_key, self._aad(subject, "dek")
        )
        return SealedIdentity(wrapped_key=wrapped, kek_version=version, ciphertext=ciphertext)

    def _unwrap(self, subject: str, sealed: SealedIdentity) -> bytes:
        try:
            kek = self._keyring.key(KeyPurpose.KEK, sealed.kek_version)
        except ConfigurationError:
            raise KekVersionMissing(
                f"identity record is wrapped with kek version {sealed.kek_version}, "
                f"which zone {self._keyring.zone}'s key ring does not hold"
            ) from None
        try:
            data_key = aead_open(kek, sealed.wrapped_key, self._aad(subject, "dek"))
        except Unsealable:
            raise IdentityUnreadable("identity data key failed authentication") from None
        if len(data_key) != KEY_BYTES:
            raise IdentityUnreadable("identity data key has the wrong length")
        return data_key

    def _aad(self, subject: str, part: str) -> bytes:
        return encode_fields(_LABEL, self._keyring.zone, subject, part)
