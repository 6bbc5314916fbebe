from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeVar

import asyncpg

from gateway.errors import AlreadyEnrolled, StaleKeyRing
from gateway.models import ZoneSubject
from gateway.storage.pool import ZonePool

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """One subject's wrapped data key, as KEK rotation reads and rewrites it."""

    subject: str
    kek_version: int
    wrapped_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyVersionsInUse:
    """The key versions stored data was made with: a key ring must hold each of them."""

    kek: frozenset[int]
    blind_index: frozenset[int]
    subject_pseudonym: frozenset[int]


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


# Raised by the subject_keys trigger of migration 0010.
STALE_KEK_SQLSTATE: Final = "WGK01"


def raise_if_stale_kek(exc: asyncpg.PostgresError) -> None:
    """`StaleKeyRing` when `exc` is the database refusing a kek version behind the zone's."""
    if getattr(exc, "sqlstate", None) == STALE_KEK_SQLSTATE:
        raise StaleKeyRing(
            "the zone has a newer kek version than this process's key ring; nothing was stored"
        ) from None


class SubjectStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def insert(self, subject: StoredSubject, blind_indexes: Sequence[str]) -> ZoneSubject:
        """Store a subject and its blind-index entries in one transaction; `AlreadyEnrolled`
        when the pseudonym or any identifier is taken (the transaction leaves nothing)."""
        async with self._pool.acquire("subjects.insert") as conn, conn.transaction():
            try:
                await conn.execute(
                    """
                    INSERT INTO subjects (pseudonym, site, research_consent,
                        cross_border_consent, identity)
                    VALUES ($1, $2, $3, $4, $5)
                    """,
                    subject.pseudonym,
                    subject.site,
                    subject.research_consent,
                    subject.cross_border_consent,
                    subject.identity,
                )
                # The data key lives apart from the identity it unlocks (migration 0008): a copy
                # of `subjects` alone never holds a key.
                await conn.execute(
                    "INSERT INTO subject_keys (subject, kek_version, wrapped_key) "
                    "VALUES ($1, $2, $3)",
                    subject.pseudonym,
                    subject.kek_version,
                    subject.wrapped_key,
                )
                await conn.executemany(
                    "INSERT INTO subject_identifiers (blind_index, subject) VALUES ($1, $2)",
                    [(index, subject.pseudonym) for index in blind_indexes],
                )
            except asyncpg.UniqueViolationError as exc:
                raise AlreadyEnrolled(
                    "a subject with one of these identifiers is already enrolled in this zone"
                ) from exc
            except asyncpg.PostgresError as exc:
                raise_if_stale_kek(exc)
                raise
        return ZoneSubject(subject.pseudonym)

    async def resolve(self, blind_indexes: Sequence[str]) -> dict[str, str]:
        """Map each known blind index to its subject pseudonym."""
        if not blind_indexes:
            return {}
        rows = await self._pool.fetch(
            "subjects.resolve",
            "SELECT blind_index, subject FROM subject_identifiers WHERE blind_index = ANY($1)",
            list(set(blind_indexes)),
        )
        return {row["blind_index"]: row["subject"] for row in rows}

    async def get(self, pseudonym: str) -> StoredSubject | None:
        row = await self._pool.fetchrow(
            "subjects.get",
            """
            SELECT s.pseudonym, s.site, s.research_consent, s.cross_border_consent,
                   k.kek_version, k.wrapped_key, s.identity, s.enrolled_at
            FROM subjects s JOIN subject_keys k ON k.subject = s.pseudonym
            WHERE s.pseudonym = $1 AND s.erasure_started_at IS NULL
            """,
            pseudonym,
        )
        return StoredSubject(**dict(row)) if row else None

    async def count(self) -> int:
        return int(await self._pool.fetchval("subjects.count", "SELECT count(*) FROM subjects"))

    # --- key rotation -----------------------------------------------------------------
    # Wrapped data keys live in `subject_keys` (migration 0008). Every statement below
    # is one short transaction on its own, so rotation runs beside a serving gateway.

    async def key_versions_in_use(self) -> KeyVersionsInUse:
        """Every kek, blind-index and subject-pseudonym version that stored rows name. One
        sequential scan of `subjects` and `subject_identifiers` (per-subject tables, far smaller
        than `observations`): run once at start-up, where a complete answer matters more than a
        few hundred milliseconds."""
        row = await self._pool.fetchrow(
            "subjects.key_versions_in_use",
            """
            SELECT
              (SELECT coalesce(array_agg(DISTINCT kek_version), '{}') FROM subject_keys)
                AS kek,
              (SELECT coalesce(array_agg(DISTINCT
                  substring(pseudonym FROM '^s([0-9]+)-')::int), '{}')
                 FROM subjects WHERE pseudonym ~ '^s[0-9]+-') AS subject_pseudonym,
              (SELECT coalesce(array_agg(DISTINCT
                  substring(blind_index FROM '^b([0-9]+)-')::int), '{}')
                 FROM subject_identifiers WHERE blind_index ~ '^b[0-9]+-') AS blind_index
            """,
        )
        assert row is not None  # noqa: S101 — a SELECT without FROM always returns one row
        return KeyVersionsInUse(
            kek=frozenset(row["kek"]),
            blind_index=frozenset(row["blind_index"]),
            subject_pseudonym=frozenset(row["subject_pseudonym"]),
        )

    async def count_wrapped_below(self, kek_version: int) -> int:
        """How many data keys are still wrapped under a kek version older than `kek_version`."""
        return int(
            await self._pool.fetchval(
                "subjects.count_wrapped_below",
                "SELECT count(*) FROM subject_keys WHERE kek_version < $1",
                kek_version,
            )
        )

    async def wrapped_keys_batch(
        self, after: str | None, limit: int, *, below: int
    ) -> list[WrappedKey]:
        """Up to `limit` data keys wrapped under a kek version older than `below`, in pseudonym
        order after `after` (keyset paging on the primary key, so each batch is an index range
        scan however far the rotation has got)."""
        rows = await self._pool.fetch(
            "subjects.wrapped_keys_batch",
            """
            SELECT subject, kek_version, wrapped_key FROM subject_keys
            WHERE ($1::text IS NULL OR subject > $1) AND kek_version < $3
            ORDER BY subject LIMIT $2
            """,
            after,
            limit,
            below,
        )
        return [WrappedKey(r["subject"], r["kek_version"], r["wrapped_key"]) for r in rows]

    async def rewrap(self, old: Sequence[WrappedKey], new: Sequence[WrappedKey]) -> int:
        """Replace each `old` wrapped key by its `new` one, in one transaction, only where the row
        still holds exactly the old version and bytes (compare-and-set): a subject erased or
        rewrapped by someone else meanwhile is left alone. Returns the rows replaced."""
        if len(old) != len(new):
            raise ValueError("old and new wrapped keys must pair up")
        async with self._pool.acquire("subjects.rewrap") as conn, conn.transaction():
            try:
                replaced = await self._rewrap(conn, old, new)
            except asyncpg.PostgresError as exc:
                raise_if_stale_kek(exc)
                raise
        return replaced

    @staticmethod
    async def _rewrap(
        conn: asyncpg.Connection, old: Sequence[WrappedKey], new: Sequence[WrappedKey]
    ) -> int:
        return int(
            await conn.fetchval(
                """
                WITH changed AS (
                    UPDATE subject_keys AS s
                    SET kek_version = n.new_version, wrapped_key = n.new_key
                    FROM unnest($1::text[], $2::int[], $3::bytea[], $4::int[], $5::bytea[])
                         AS n(subject, old_version, old_key, new_version, new_key)
                    WHERE s.subject = n.subject AND s.kek_version = n.old_version
                      AND s.wrapped_key = n.old_key
                    RETURNING 1
                )
                SELECT count(*) FROM changed
                """,
                [o.subject for o in old],
                [o.kek_version for o in old],
                [o.wrapped_key for o in old],
                [n.kek_version for n in new],
                [n.wrapped_key for n in new],
            )
        )

    # --- lifecycle: consent changes and erasure ---------------------------------------

    async def change_consent(
        self,
        pseudonym: str,
        *,
        site: str | None,
        research: bool | None,
        cross_border: bool | None,
        actor: str,
    ) -> ConsentChange | None:
        """Apply a consent change (None: unchanged) and append the resulting state to
        `consent_changes` with `actor`, in one transaction: the history can never miss a change.
        None when no subject of `site` (any site: None) has this pseudonym, or it is being
        erased."""
        async with self._pool.acquire("subjects.change_consent") as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE subjects
                SET research_consent = coalesce($2, research_consent),
                    cross_border_consent = coalesce($3, cross_border_consent)
                WHERE pseudonym = $1 AND ($4::text IS NULL OR site = $4)
                  AND erasure_started_at IS NULL
                RETURNING site, research_consent, cross_border_consent
                """,
                pseudonym,
                research,
                cross_border,
                site,
            )
            if row is None:
                return None
            changed_at = await conn.fetchval(
                """
                INSERT INTO consent_changes (subject, research, cross_border, actor)
                VALUES ($1, $2, $3, $4) RETURNING changed_at
                """,
                pseudonym,
                row["research_consent"],
                row["cross_border_consent"],
                actor,
            )
        return ConsentChange(
            subject=ZoneSubject(pseudonym),
            site=row["site"],
            changed_at=changed_at,
            research=row["research_consent"],
            cross_border=row["cross_border_consent"],
            actor=actor,
        )

    async def erasure_target(self, pseudonym: str) -> ErasureTarget | None:
        """The subject's site and erasure mark, whatever step its erasure has reached (None once
        its row is gone, or if it never existed)."""
        row = await self._pool.fetchrow(
            "subjects.erasure_target",
            "SELECT site, erasure_started_at FROM subjects WHERE pseudonym = $1",
            pseudonym,
        )
        return (
            ErasureTarget(ZoneSubject(pseudonym), row["site"], row["erasure_started_at"])
            if row
            else None
        )

    async def last_erasure_record(
        self, pseudonym: str
    ) -> tuple[ZoneSubject, str | None, str | None] | None:
        """(subject, site, phase) from the latest `erase` audit record of this pseudonym, if any:
        the only trace an erased subject leaves (partial index of migration 0008)."""
        row = await self._pool.fetchrow(
            "subjects.last_erasure_record",
            """
            SELECT detail ->> 'site' AS site, detail ->> 'phase' AS phase FROM audit_events
            WHERE action = 'erase' AND subject = $1 ORDER BY seq DESC LIMIT 1
            """,
            pseudonym,
        )
        return (ZoneSubject(pseudonym), row["site"], row["phase"]) if row else None

    async def mark_erasing(self, pseudonym: str) -> bool:
        """Erasure step 1: mark the subject as being erased and remove its blind-index entries,
        in one transaction, so no new reading resolves to it. Keeps the first mark's time.
        False when the subject row is gone."""
        async with self._pool.acquire("subjects.mark_erasing") as conn, conn.transaction():
            marked = await conn.fetchval(
                """
                UPDATE subjects SET erasure_started_at = coalesce(erasure_started_at, now())
                WHERE pseudonym = $1 RETURNING true
                """,
                pseudonym,
            )
            await conn.execute("DELETE FROM subject_identifiers WHERE subject = $1", pseudonym)
        return bool(marked)

    async def destroy_data_key(self, pseudonym: str) -> bool:
        """Erasure step 2 (crypto-shredding): delete the wrapped data key and blank the identity
        ciphertext, in one transaction. True when a key was still there."""
        async with self._pool.acquire("subjects.destroy_data_key") as conn, conn.transaction():
            status = await conn.execute("DELETE FROM subject_keys WHERE subject = $1", pseudonym)
            await conn.execute(
                "UPDATE subjects SET identity = ''::bytea WHERE pseudonym = $1", pseudonym
            )
        return _affected(status) > 0

    async def delete_subject_rows(self, pseudonym: str) -> dict[str, int]:
        """Erasure step 3: every row of the subject in the zone, the subject row last, in one
        transaction (all or nothing). Returns rows deleted per table (none: already gone)."""
        removed: dict[str, int] = {}
        async with self._pool.acquire("subjects.delete_subject_rows") as conn, conn.transaction():
            for table, column in SUBJECT_TABLES:
                # Table and column names come from the literal table above, never from input.
                status = await conn.execute(
                    f"DELETE FROM {table} WHERE {column} = $1",  # noqa: S608
                    pseudonym,
                )
                removed[table] = _affected(status)
        return removed


# Every table holding rows of one subject, by the column naming it; `subjects` last. Observations
# carry no foreign key (a partitioned table's key would have to include the partition column):
# they are deleted explicitly, as is every other table, so no erasure depends on a cascade.
SUBJECT_TABLES: Final[tuple[tuple[str, str], ...]] = (
    ("observations", "subject"),
    ("observation_versions", "subject"),
    ("devices", "subject"),
    ("withings_notifications", "subject"),
    ("consent_changes", "subject"),
    ("subject_identifiers", "subject"),
    ("subject_keys", "subject"),
    ("subjects", "pseudonym"),
)


def _affected(status: str) -> int:
    """Rows affected, from a command tag such as `DELETE 3` (PostgreSQL protocol §55.7)."""
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True, slots=True)
class ConsentChange:
    subject: ZoneSubject
    site: str
    changed_at: datetime
    research: bool
    cross_border: bool
    actor: str


@dataclass(frozen=True, slots=True)
class ErasureTarget:
    subject: ZoneSubject
    site: str
    erasure_started_at: datetime | None
