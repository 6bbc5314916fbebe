"""SMART Backend Services clients of one zone, the assertion ids they used and the access tokens
issued to them (migration 0004)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

from gateway.storage.pool import ZonePool

ClientRole = Literal["clinic", "researcher"]


@dataclass(frozen=True, slots=True)
class StoredClient:
    client_id: str
    zone: str
    site: str
    role: ClientRole
    jwks: Mapping[str, Any] = field(repr=False)
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredAccessToken:
    client_id: str
    site: str
    role: ClientRole
    scopes: tuple[str, ...]
    expires_at: datetime
    client_revoked_at: datetime | None


class SmartClientStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def add(
        self,
        client_id: str,
        *,
        zone: str,
        site: str,
        role: ClientRole,
        jwks: Mapping[str, Any],
        scopes: Sequence[str],
    ) -> None:
        await self._pool.execute(
            "smart.add",
            """
            INSERT INTO smart_clients (client_id, zone, site, role, jwks, scopes)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            client_id,
            zone,
            site,
            role,
            orjson.dumps(jwks),
            list(scopes),
        )

    async def get(self, client_id: str) -> StoredClient | None:
        row = await self._pool.fetchrow(
            "smart.get",
            """
            SELECT client_id, zone, site, role, jwks, scopes, created_at, revoked_at
            FROM smart_clients WHERE client_id = $1
            """,
            client_id,
        )
        if row is None:
            return None
        values = dict(row)
        values["jwks"] = orjson.loads(values["jwks"])
        values["scopes"] = tuple(values["scopes"])
        return StoredClient(**values)

    async def revoke(self, client_id: str) -> bool:
        """Revoke the client and, with it, every access token it holds."""
        async with self._pool.acquire("smart.revoke") as conn, conn.transaction():
            status = await conn.execute(
                """
                UPDATE smart_clients SET revoked_at = now()
                WHERE client_id = $1 AND revoked_at IS NULL
                """,
                client_id,
            )
            await conn.execute("DELETE FROM access_tokens WHERE client_id = $1", client_id)
        return bool(status == "UPDATE 1")

    async def use_jti(self, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Record an assertion id; False if the client already used it and that use has not
        expired yet (a replay). An id whose earlier use has expired may be used again."""
        row = await self._pool.fetchrow(
            "smart.use_jti",
            """
            INSERT INTO used_jtis AS used (client_id, jti, expires_at) VALUES ($1, $2, $3)
            ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
                WHERE used.expires_at <= $4
            RETURNING 1
            """,
            client_id,
            jti,
            expires_at,
            now,
        )
        return row is not None

    async def add_access_token(
        self,
        token_hash: bytes,
        client_id: str,
        scopes: Sequence[str],
        expires_at: datetime,
        now: datetime,
    ) -> None:
        """Store a new token and purge what has expired (tokens, and assertion ids that can no
        longer be replayed): issuing is rare enough to carry the clean-up."""
        async with self._pool.acquire("smart.add_access_token") as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO access_tokens (token_hash, client_id, scopes, expires_at)
                VALUES ($1, $2, $3, $4)
                """,
                token_hash,
                client_id,
                list(scopes),
                expires_at,
            )
            await conn.execute("DELETE FROM access_tokens WHERE expires_at <= $1", now)
            await conn.execute("DELETE FROM used_jtis WHERE expires_at <= $1", now)

    async def access_token(self, token_hash: bytes) -> StoredAccessToken | None:
        row = await self._pool.fetchrow(
            "smart.access_token",
            """
            SELECT t.client_id, c.site, c.role, t.scopes, t.expires_at,
                   c.revoked_at AS client_revoked_at
            FROM access_tokens t JOIN smart_clients c USING (client_id)
            WHERE t.token_hash = $1
            """,
            token_hash,
        )
        if row is None:
            return None
        values = dict(row)
        values["scopes"] = tuple(values["scopes"])
        return StoredAccessToken(**values)
