from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.errors import AlreadyEnrolled


@dataclass(frozen=True, slots=True)
class StoredSubject:
    pseudonym: str
    site: str
    research_consent: bool
    cross_border_consent: bool
    kek_version: int
    wrapped_key: bytes
    identity: bytes
    enrolled_at: datetime | None = None


class SubjectStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(self, subject: StoredSubject, blind_indexes: Sequence[str]) -> None:
        """Store a subject and its blind-index entries in one transaction; `AlreadyEnrolled`
        when the pseudonym or any identifier is taken (the transaction leaves nothing)."""
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    """
                    INSERT INTO subjects (pseudonym, site, research_consent,
                        cross_border_consent, kek_version, wrapped_key, identity)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    """,
                    subject.pseudonym,
                    subject.site,
                    subject.research_consent,
                    subject.cross_border_consent,
                    subject.kek_version,
                    subject.wrapped_key,
                    subject.identity,
                )
                await conn.executemany(
                    "INSERT INTO subject_identifiers (blind_index, subject) VALUES ($1, $2)",
                    [(index, subject.pseudonym) for index in blind_indexes],
                )
            except asyncpg.UniqueViolationError as exc:
                raise AlreadyEnrolled(
                    "a subject with one of these identifiers is already enrolled in this zone"
                ) from exc

    async def resolve(self, blind_indexes: Sequence[str]) -> dict[str, str]:
        """Map each known blind index to its subject pseudonym."""
        if not blind_indexes:
            return {}
        rows = await self._pool.fetch(
            "SELECT blind_index, subject FROM subject_identifiers WHERE blind_index = ANY($1)",
            list(set(blind_indexes)),
        )
        return {row["blind_index"]: row["subject"] for row in rows}

    async def get(self, pseudonym: str) -> StoredSubject | None:
        row = await self._pool.fetchrow(
            """
            SELECT pseudonym, site, research_consent, cross_border_consent, kek_version,
                   wrapped_key, identity, enrolled_at
            FROM subjects WHERE pseudonym = $1
            """,
            pseudonym,
        )
        return StoredSubject(**dict(row)) if row else None

    async def count(self) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM subjects"))
