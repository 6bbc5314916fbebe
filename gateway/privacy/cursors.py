"""Signed, stateless paging cursors for FHIR searches.

A cursor is `c<key version>.<base64url payload>.<base64url HMAC-SHA256 tag>`. The payload is
the position after the last entry of a page (its sort value and id) bound to a digest of the
search it belongs to, so a cursor can be neither forged, edited, nor replayed against another
search. The payload is opaque to clients but not secret: it holds only what the page showed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Final

import orjson

from gateway.privacy._primitives import KeyedHash, b64url, encode_fields
from gateway.privacy.keys import KeyPurpose, ZoneKeyRing

_LABEL: Final = "wearable-gateway/fhir-cursor/1"
_TAG_BYTES: Final = 16  # 128-bit tags: forging one is a 2^-128 guess (NIST SP 800-107 §5.3.4)
_CURSOR: Final = re.compile(r"c([1-9][0-9]{0,8})\.([A-Za-z0-9_-]{1,2048})\.([A-Za-z0-9_-]{22})")


class CursorRejected(ValueError):
    """A cursor that this zone did not issue for this search, or that was altered."""


def _unb64(text: str) -> bytes:
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # The last character of unpadded base64 carries unused bits: several spellings decode to
    # the same bytes. Only the one we would have written is accepted, so a cursor has exactly
    # one valid form (no malleability).
    if b64url(data) != text:
        raise ValueError("non-canonical base64")
    return data


class CursorSigner:
    __slots__ = ("_hashes", "_version", "_zone")

    def __init__(self, keyring: ZoneKeyRing) -> None:
        self._zone = keyring.zone
        self._version = keyring.active_version(KeyPurpose.CURSOR)
        # Every version is kept, so cursors issued just before a key rotation still verify.
        self._hashes = {
            version: KeyedHash(key) for version, key in keyring.keys[KeyPurpose.CURSOR].items()
        }

    def _tag(self, version: int, search: str, payload: str) -> bytes:
        message = encode_fields(_LABEL, self._zone, search, payload)
        return self._hashes[version].digest(message)[:_TAG_BYTES]

    def sign(self, search: str, position: list[object]) -> str:
        """A cursor for `position` within the search whose canonical text is `search`."""
        payload = b64url(orjson.dumps(position))
        tag = self._tag(self._version, search, payload)
        return f"c{self._version}.{payload}.{b64url(tag)}"

    def open(self, search: str, cursor: str) -> list[object]:
        """The position a cursor holds; `CursorRejected` unless it was signed here for `search`."""
        match = _CURSOR.fullmatch(cursor)
        if match is None:
            raise CursorRejected("malformed cursor")
        version, payload, tag = int(match[1]), match[2], match[3]
        if version not in self._hashes:
            raise CursorRejected("cursor signed with an unknown key version")
        try:
            given = _unb64(tag)
        except (binascii.Error, ValueError):
            raise CursorRejected("malformed cursor") from None
        if not hmac.compare_digest(given, self._tag(version, search, payload)):
            raise CursorRejected("cursor signature does not verify")
        try:
            position = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            raise CursorRejected("malformed cursor") from None
        if not isinstance(position, list):
            raise CursorRejected("malformed cursor")
        return position
