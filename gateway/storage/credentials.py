from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gateway.storage.pool import ZonePool

CredentialKind = Literal["vendor", "clinic"]


@dataclass(frozen=True, slots=True)
class StoredCredential:
    key_id: str
    kind: CredentialKind
    owner: str
    secret_hash: bytes
    created_at: datetime
    revoked_at: datetime | None


class CredentialStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def add(self, key_id: str, kind: CredentialKind, owner: str, secret_hash: bytes) -> None:
        await self._pool.execute(
            "credentials.add",
            "INSERT INTO credentials (key_id, kind, owner, secret_hash) VALUES ($1, $2, $3, $4)",
            key_id,
            kind,
            owner,
            secret_hash,
        )

    async def get(self, key_id: str) -> StoredCredential | None:
        row = await self._pool.fetchrow(
            "credentials.get",
            """
            SELECT key_id, kind, owner, secret_hash, created_at, revoked_at
            FROM credentials WHERE key_id = $1
            """,
            key_id,
        )
        return StoredCredential(**dict(row)) if row else None

    async def revoke(self, key_id: str) -> bool:
        status = await self._pool.execute(
            "credentials.revoke",
            "UPDATE credentials SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
            key_id,
        )
        return bool(status == "UPDATE 1")

    async def list(self) -> list[StoredCredential]:
        rows = await self._pool.fetch(
            "credentials.list",
            """
            SELECT key_id, kind, owner, secret_hash, created_at, revoked_at
            FROM credentials ORDER BY created_at
            """,
        )
        return [StoredCredential(**dict(row)) for row in rows]
