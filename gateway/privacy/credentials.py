"""API keys for vendors and clinics: `wgk_<zone>_<key id>_<secret>`.

The key id is public (it finds the stored hash and appears in logs); only SHA-256 of the secret
is stored, so a database leak yields no usable key, and the hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

from gateway.errors import Unauthenticated
from gateway.privacy.keys import ZONE_PATTERN

_SECRET_BYTES: Final = 32
_KEY_ID_BYTES: Final = 6
# token_urlsafe(32) is always 43 characters (RFC 4648 §5 alphabet, no padding).
_TOKEN_PATTERN: Final = re.compile(
    rf"wgk_(?P<zone>{ZONE_PATTERN.pattern})_(?P<key_id>[0-9a-f]{{12}})_(?P<secret>[A-Za-z0-9_-]{{43}})"
)
_MAX_TOKEN_LENGTH: Final = 128


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new API key: show `token` once to its holder, store `key_id` and `secret_hash`."""

    key_id: str
    token: str = field(repr=False)
    secret_hash: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    zone: str
    key_id: str
    secret: str = field(repr=False)


def issue_api_key(zone: str) -> IssuedKey:
    if not ZONE_PATTERN.fullmatch(zone):
        raise ValueError("zone names are 1-16 lowercase letters and digits, starting with a letter")
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return IssuedKey(
        key_id=key_id, token=f"wgk_{zone}_{key_id}_{secret}", secret_hash=_hash(secret)
    )


def parse_api_key(token: str) -> ParsedKey:
    """Split a presented token; raises `Unauthenticated` (without echoing it) if malformed."""
    match = None
    if isinstance(token, str) and len(token) <= _MAX_TOKEN_LENGTH:
        match = _TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise Unauthenticated("malformed API key")
    return ParsedKey(zone=match["zone"], key_id=match["key_id"], secret=match["secret"])


def verify_secret(secret: str, stored_hash: bytes) -> bool:
    """Whether `secret` matches `stored_hash`, in time independent of where they differ."""
    if not secret.isascii():
        return False
    return hmac.compare_digest(_hash(secret), stored_hash)


def _hash(secret: str) -> bytes:
    # A plain hash suffices: the secret holds 256 random bits, so there is nothing for a slow,
    # salted password KDF (RFC 9106, RFC 8018) to protect against guessing.
    return hashlib.sha256(secret.encode("ascii")).digest()
