"""Export jobs and their output files (migration 0007), and the streaming reads an export makes
of subjects and observations. The studies they export are `storage/studies.py`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from gateway.storage.pool import ZonePool

# Rows per round trip of the export's server-side cursor: bounded memory at any table size.
_PREFETCH: Final = 1000


@dataclass(frozen=True, slots=True)
class StoredJob:
    id: str
    study: str
    client: str
    state: str
    request: bytes  # JSON
    transaction_time: datetime
    progress: str
    manifest: bytes | None  # JSON
    error: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StoredFile:
    name: str
    type: str
    sha256: str
    count: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ExportSubject:
    """A subject an export may include: its consent flags and its sealed identity."""

    pseudonym: str
    site: str
    research_consent: bool
    cross_border_consent: bool
    kek_version: int
    wrapped_key: bytes
    identity: bytes
    enrolled_at: datetime


_JOB_COLUMNS: Final = """id, study, client, state, request, transaction_time, progress, manifest,
    error, expires_at"""


def _job(row: asyncpg.Record) -> StoredJob:
    return StoredJob(**dict(row))


class ExportJobStore:
    """Export jobs, their files, and the streaming reads a job makes."""

    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    # --- jobs -----------------------------------------------------------------------------

    async def create(
        self,
        job_id: str,
        *,
        study: str,
        client: str,
        request: bytes,
        transaction_time: datetime,
        expires_at: datetime,
    ) -> None:
        await self._pool.execute(
            "exports.create",
            """
            INSERT INTO export_jobs (id, study, client, state, request, transaction_time,
                                     expires_at)
            VALUES ($1, $2, $3, 'queued', $4, $5, $6)
            """,
            job_id,
            study,
            client,
            request,
            transaction_time,
            expires_at,
        )

    async def get(self, job_id: str, now: datetime) -> StoredJob | None:
        """The job, unless cancelled or expired (both are gone as far as clients can tell)."""
        row = await self._pool.fetchrow(
            "exports.get",
            f"SELECT {_JOB_COLUMNS} FROM export_jobs "  # noqa: S608 - fixed columns
            "WHERE id = $1 AND state <> 'cancelled' AND expires_at > $2",
            job_id,
            now,
        )
        return _job(row) if row else None

    async def poll(self, job_id: str, now: datetime, min_interval_seconds: float) -> bool:
        """Record a status request; False when the previous one was less than
        `min_interval_seconds` ago (the client polls too fast)."""
        updated = await self._pool.fetchval(
            "exports.poll",
            """
            UPDATE export_jobs SET last_polled_at = $2
            WHERE id = $1
              AND (last_polled_at IS NULL
                   OR last_polled_at <= $2::timestamptz - make_interval(secs => $3::float8))
            RETURNING true
            """,
            job_id,
            now,
            min_interval_seconds,
        )
        return bool(updated)

    async def claim(self, lease_seconds: float) -> StoredJob | None:
        """Take the oldest queued job, or a running one whose worker's lease ran out (its
        process died), and lease it to the caller. SKIP LOCKED: concurrent workers of the zone
        (several processes) each get a different job, never wait on each other."""
        row = await self._pool.fetchrow(
            "exports.claim",
            f"""
            UPDATE export_jobs j
            SET state = 'running', lease_until = now() + make_interval(secs => $1::float8),
                updated_at = now()
            FROM (SELECT id FROM export_jobs
                  WHERE state = 'queued' OR (state = 'running' AND lease_until < now())
                  ORDER BY created_at
                  LIMIT 1
                  FOR UPDATE SKIP LOCKED) AS next
            WHERE j.id = next.id
            RETURNING {", ".join("j." + c.strip() for c in _JOB_COLUMNS.split(","))}
            """,  # noqa: S608 - fixed columns
            lease_seconds,
        )
        return _job(row) if row else None

    async def renew(self, job_id: str, progress: str, lease_seconds: float) -> bool:
        """Report progress and extend the lease; False when the job is no longer running here
        (cancelled, expired or deleted): the worker stops."""
        updated = await self._pool.fetchval(
            "exports.renew",
            """
            UPDATE export_jobs
            SET progress = $2, lease_until = now() + make_interval(secs => $3::float8),
                updated_at = now()
            WHERE id = $1 AND state = 'running'
            RETURNING true
            """,
            job_id,
            progress,
            lease_seconds,
        )
        return bool(updated)

    async def requeue(self, job_id: str) -> None:
        """Give a running job back (graceful shutdown): the next worker starts it again."""
        await self._pool.execute(
            "exports.requeue",
            "UPDATE export_jobs SET state = 'queued', lease_until = NULL, updated_at = now() "
            "WHERE id = $1 AND state = 'running'",
            job_id,
        )

    async def finish(self, job_id: str, manifest: bytes) -> bool:
        updated = await self._pool.fetchval(
            "exports.finish",
            """
            UPDATE export_jobs SET state = 'done', manifest = $2, progress = 'done',
                lease_until = NULL, updated_at = now()
            WHERE id = $1 AND state = 'running'
            RETURNING true
            """,
            job_id,
            manifest,
        )
        return bool(updated)

    async def fail(self, job_id: str, error: str) -> None:
        async with self._pool.acquire("exports.fail") as conn, conn.transaction():
            await conn.execute("DELETE FROM export_file_chunks WHERE job = $1", job_id)
            await conn.execute("DELETE FROM export_files WHERE job = $1", job_id)
            await conn.execute(
                "UPDATE export_jobs SET state = 'failed', error = $2, lease_until = NULL, "
                "updated_at = now() WHERE id = $1 AND state = 'running'",
                job_id,
                error,
            )

    async def cancel(self, job_id: str, client: str, now: datetime) -> bool:
        """Cancel a job of `client` and delete its files; False when there is none to cancel."""
        async with self._pool.acquire("exports.cancel") as conn, conn.transaction():
            cancelled = await conn.fetchval(
                """
                UPDATE export_jobs SET state = 'cancelled', lease_until = NULL, updated_at = now()
                WHERE id = $1 AND client = $2 AND state <> 'cancelled' AND expires_at > $3
                RETURNING true
                """,
                job_id,
                client,
                now,
            )
            if cancelled:
                await conn.execute("DELETE FROM export_file_chunks WHERE job = $1", job_id)
                await conn.execute("DELETE FROM export_files WHERE job = $1", job_id)
        return bool(cancelled)

    async def delete_expired(self, now: datetime) -> int:
        """Delete jobs past their expiry, and cancelled ones, with their files."""
        deleted = await self._pool.fetch(
            "exports.delete_expired",
            "DELETE FROM export_jobs WHERE expires_at <= $1 OR state = 'cancelled' RETURNING id",
            now,
        )
        return len(deleted)

    # --- files ----------------------------------------------------------------------------

    async def reset_files(self, job_id: str) -> None:
        """Remove what an interrupted run of the job wrote: a resumed job starts over."""
        async with self._pool.acquire("exports.reset_files") as conn, conn.transaction():
            await conn.execute("DELETE FROM export_file_chunks WHERE job = $1", job_id)
            await conn.execute("DELETE FROM export_files WHERE job = $1", job_id)

    async def write_chunk(self, job_id: str, name: str, seq: int, content: bytes) -> None:
        await self._pool.execute(
            "exports.write_chunk",
            "INSERT INTO export_file_chunks (job, name, seq, content) VALUES ($1, $2, $3, $4)",
            job_id,
            name,
            seq,
            content,
        )

    async def add_file(self, job_id: str, file: StoredFile) -> None:
        await self._pool.execute(
            "exports.add_file",
            "INSERT INTO export_files (job, name, type, sha256, count, bytes) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            job_id,
            file.name,
            file.type,
            file.sha256,
            file.count,
            file.bytes,
        )

    async def file(self, job_id: str, name: str) -> StoredFile | None:
        row = await self._pool.fetchrow(
            "exports.file",
            "SELECT name, type, sha256, count, bytes FROM export_files "
            "WHERE job = $1 AND name = $2",
            job_id,
            name,
        )
        return StoredFile(**dict(row)) if row else None

    async def chunks(self, job_id: str, name: str) -> AsyncGenerator[bytes, None]:
        """A file's content, chunk by chunk, one round trip each (bounded memory)."""
        seq = 0
        while True:
            content = await self._pool.fetchval(
                "exports.chunks",
                "SELECT content FROM export_file_chunks WHERE job = $1 AND name = $2 AND seq = $3",
                job_id,
                name,
                seq,
            )
            if content is None:
                return
            yield bytes(content)
            seq += 1

    # --- what an export reads -------------------------------------------------------------

    async def subjects(self) -> list[ExportSubject]:
        """Every subject of the zone with its consent flags (consent is judged by the caller)."""
        rows = await self._pool.fetch(
            "exports.subjects",
            """
            SELECT pseudonym, site, research_consent, cross_border_consent, k.kek_version,
                   k.wrapped_key, identity, enrolled_at
            -- Data keys live apart (migration 0008); a subject being erased is never exported.
            FROM subjects JOIN subject_keys k ON k.subject = pseudonym
            WHERE erasure_started_at IS NULL
            ORDER BY pseudonym
            """,
        )
        return [ExportSubject(**dict(row)) for row in rows]

    async def devices(self, subjects: Sequence[str]) -> list[tuple[str, str, str | None]]:
        """(subject, device pseudonym, model) of every device linked to one of `subjects`."""
        rows = await self._pool.fetch(
            "exports.devices",
            "SELECT subject, pseudonym, model FROM devices WHERE subject = ANY($1::text[]) "
            "ORDER BY subject, pseudonym",
            list(subjects),
        )
        return [(r["subject"], r["pseudonym"], r["model"]) for r in rows]

    async def observations(
        self,
        subjects: Sequence[str],
        *,
        codes: Sequence[str],
        categories: Sequence[str] | None,
        since: datetime | None,
        until: datetime,
    ) -> AsyncGenerator[tuple[str, str, str | None, bytes], None]:
        """(subject, code, category, resource JSON) of the matching observations stored up to
        `until` (the job's transaction time), through a server-side cursor in one read-only
        REPEATABLE READ transaction: one consistent snapshot, `_PREFETCH` rows in memory at a
        time."""
        async with (
            self._pool.stream("exports.observations") as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            cursor = conn.cursor(
                """
                    SELECT subject, code, category, resource FROM observations
                    WHERE subject = ANY($1::text[]) AND code = ANY($2::text[])
                      AND ($3::text[] IS NULL OR category = ANY($3::text[]))
                      AND ($4::timestamptz IS NULL OR issued > $4) AND issued <= $5
                    ORDER BY subject, effective_start, id
                    """,
                list(subjects),
                list(codes),
                list(categories) if categories is not None else None,
                since,
                until,
                prefetch=_PREFETCH,
            )
            async for row in cursor:
                yield row["subject"], row["code"], row["category"], row["resource"]
