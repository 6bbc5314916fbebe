from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import asyncpg

from gateway.models import ObservationRow

# Serialises partition creation across gateway processes (an arbitrary, fixed lock id).
_PARTITION_LOCK_ID = 0x5747_0002

_INSERT = """
INSERT INTO observations (subject, id, code, device, effective_start, effective_end, issued,
                          source_format, resource)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                     $6::timestamptz[], $7::timestamptz[], $8::text[], $9::jsonb[])
ON CONFLICT DO NOTHING
RETURNING id
"""


def _month_start(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def _next_month(month: datetime) -> datetime:
    if month.month == 12:
        return month.replace(year=month.year + 1, month=1)
    return month.replace(month=month.month + 1)


def partition_name(month: datetime) -> str:
    return f"observations_y{month.year:04d}m{month.month:02d}"


class ObservationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._known_partitions: set[datetime] = set()

    async def ensure_partitions(self, moments: Iterable[datetime]) -> None:
        """Create the monthly partitions (UTC months) that these instants fall into."""
        missing = {_month_start(m) for m in moments} - self._known_partitions
        if not missing:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK_ID)
            for month in sorted(missing):
                # Identifiers and bounds come from datetime fields, never from input text.
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(month)} "
                    f"PARTITION OF observations FOR VALUES FROM ('{month.isoformat()}') "
                    f"TO ('{_next_month(month).isoformat()}')"
                )
        self._known_partitions |= missing

    async def insert_many(self, rows: Sequence[ObservationRow]) -> list[bool]:
        """Insert rows idempotently in one statement. Returns, per row, whether it was created
        (False: the same Observation was already stored, or appears earlier in `rows`)."""
        if not rows:
            return []
        await self.ensure_partitions(row.effective_start for row in rows)
        returned = await self._pool.fetch(
            _INSERT,
            [row.subject for row in rows],
            [row.id for row in rows],
            [row.code for row in rows],
            [row.device for row in rows],
            [row.effective_start for row in rows],
            [row.effective_end for row in rows],
            [row.issued for row in rows],
            [row.source_format for row in rows],
            [row.resource for row in rows],
        )
        unclaimed = {record["id"] for record in returned}
        created = []
        for row in rows:
            created.append(row.id in unclaimed)
            unclaimed.discard(row.id)
        return created

    async def get(self, observation_id: str) -> bytes | None:
        resource = await self._pool.fetchval(
            "SELECT resource FROM observations WHERE id = $1", observation_id
        )
        return bytes(resource) if resource is not None else None

    async def for_subject(self, subject: str, limit: int = 100) -> list[bytes]:
        rows = await self._pool.fetch(
            """
            SELECT resource FROM observations WHERE subject = $1
            ORDER BY effective_start DESC LIMIT $2
            """,
            subject,
            limit,
        )
        return [bytes(row["resource"]) for row in rows]

    async def count(self) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM observations"))
