"""The only package that touches key material: zone key rings, keyed pseudonyms, identity
encryption and API-key credentials. Everything else uses the names exported here."""

from __future__ import annotations

from gateway.privacy.credentials import (
    IssuedKey,
    ParsedKey,
    issue_api_key,
    parse_api_key,
    verify_secret,
)
from gateway.privacy.envelope import (
    IdentityUnreadable,
    IdentityVault,
    KekVersionMissing,
    SealedIdentity,
)
from gateway.privacy.keys import KeyPurpose, ZoneKeyRing
from gateway.privacy.pseudonyms import Pseudonymiser, parse_version

__all__ = [
    "IdentityUnreadable",
    "IdentityVault",
    "IssuedKey",
    "KekVersionMissing",
    "KeyPurpose",
    "ParsedKey",
    "Pseudonymiser",
    "SealedIdentity",
    "ZoneKeyRing",
    "issue_api_key",
    "parse_api_key",
    "parse_version",
    "verify_secret",
]
