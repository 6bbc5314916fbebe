"""Credentials: the API keys of vendors and (until every site has moved to SMART tokens) clinics,
added, revoked and authenticated here; `privacy/credentials.py` makes and checks a key,
`storage/credentials.py` keeps its hash. A key belongs to one zone; it is checked against that
zone's credential table only."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import Forbidden, Unauthenticated
from gateway.privacy import issue_api_key, parse_api_key, verify_secret
from gateway.runtime.zones import ZoneDirectory
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.storage import CredentialKind

# Compared against when the key id is unknown, so an unknown id costs the same as a wrong secret.
_NO_SUCH_KEY = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class Principal:
    zone: str
    kind: CredentialKind
    owner: str  # vendor name, or the clinic's site id
    key_id: str


@dataclass(frozen=True, slots=True)
class NewCredential:
    key_id: str
    token: str  # shown once, never stored


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer <API key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be `Bearer <API key>`")
    return token.strip()


async def authenticate(
    zones: ZoneDirectory, authorization: str | None, *, kind: CredentialKind
) -> Principal:
    parsed = parse_api_key(bearer_token(authorization))
    zone = zones.require(parsed.zone)
    stored = zone.lookups.credentials.get(parsed.key_id)
    if stored is None:
        stored = await zone.db.credentials.get(parsed.key_id)
        if stored is not None:
            zone.lookups.credentials.put(parsed.key_id, stored)
    valid = verify_secret(parsed.secret, stored.secret_hash if stored else _NO_SUCH_KEY)
    if stored is None or not valid or stored.revoked_at is not None:
        raise Unauthenticated("API key is not valid")
    if stored.kind != kind:
        raise Forbidden(f"a {stored.kind} API key cannot be used here")
    return Principal(zone=zone.name, kind=stored.kind, owner=stored.owner, key_id=stored.key_id)


# Who runs `wearable-gateway` commands: the audit log names the role, not the person.
OPERATOR = "operator"


async def add_credential(
    zones: ZoneDirectory, *, zone: str, kind: CredentialKind, owner: str, actor: str = OPERATOR
) -> NewCredential:
    target = zones.require(zone)
    issued = issue_api_key(target.name)
    await target.db.credentials.add(issued.key_id, kind, owner, issued.secret_hash)
    await record(
        target,
        action=AuditAction.CREDENTIAL_ISSUE,
        actor=actor,
        subject=None,
        outcome=AuditOutcome.SUCCESS,
        detail={"key_id": issued.key_id, "kind": kind, "owner": owner},
    )
    return NewCredential(key_id=issued.key_id, token=issued.token)


async def revoke_credential(
    zones: ZoneDirectory, *, zone: str, key_id: str, actor: str = OPERATOR
) -> bool:
    target = zones.require(zone)
    revoked = await target.db.credentials.revoke(key_id)
    target.lookups.credentials.invalidate(key_id)
    await record(
        target,
        action=AuditAction.CREDENTIAL_REVOKE,
        actor=actor,
        subject=None,
        outcome=AuditOutcome.SUCCESS if revoked else AuditOutcome.REFUSED,
        detail={"key_id": key_id},
    )
    return revoked
