from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from gateway.models import ObservationRow, Outcome
from gateway.storage.pool import ZonePool

# Serialises partition creation across gateway processes (an arbitrary, fixed lock id).
_PARTITION_LOCK_ID = 0x5747_0002
# Advisory-lock class of versioned records: pg_advisory_xact_lock(class, hashtext(subject || id)).
# The two-key form is a lock space of its own, so a record's hash can never collide with the
# single-key locks above (PostgreSQL §9.27.10, "Advisory Lock Functions").
_RECORD_LOCK_CLASS = 0x5747_0003

# Rows go in primary-key order: two concurrent batches sharing readings then wait on each other's
# uncommitted keys in the same order and cannot deadlock (40P01), which unordered inserts did
# under sustained ingest with the writer's concurrent batches (tests/faults). The
# ordinality keeps the first copy of a key within a batch the one stored.
_INSERT = """
INSERT INTO observations (subject, id, code, device, effective_start, effective_end, issued,
                          source_format, resource)
SELECT subject, id, code, device, effective_start, effective_end, issued, source_format, resource
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
            $6::timestamptz[], $7::timestamptz[], $8::text[], $9::jsonb[])
     WITH ORDINALITY AS r(subject, id, code, device, effective_start, effective_end, issued,
                          source_format, resource, n)
ORDER BY subject, id, effective_start, n
ON CONFLICT DO NOTHING
RETURNING id
"""


# Locks are taken in ascending order, so two batches sharing records cannot deadlock. The ORDER
# BY sits in a subquery that is not flattened (DISTINCT), so the locks are taken in that order.
_LOCK_RECORDS = """
SELECT pg_advisory_xact_lock($1::int4, key)
FROM (SELECT DISTINCT hashtext(subject || id) AS key
      FROM unnest($2::text[], $3::text[]) AS r(subject, id)
      ORDER BY key) AS keys
"""

# The stored version of each record; an unversioned row counts as version 0 (Health Connect's
# default clientRecordVersion). Uses the (subject, id) prefix of each partition's primary key.
_CURRENT_VERSIONS = """
SELECT o.subject, o.id, max(coalesce(o.version, 0)) AS version
FROM observations o
JOIN unnest($1::text[], $2::text[]) AS r(subject, id) ON o.subject = r.subject AND o.id = r.id
GROUP BY o.subject, o.id
"""

# A stored row being replaced moves to the history. Delete + insert (rather than UPDATE) because
# the new version's effective time may fall in another monthly partition.
_SUPERSEDE = """
WITH superseded AS (
    DELETE FROM observations o
    USING unnest($1::text[], $2::text[]) AS r(subject, id)
    WHERE o.subject = r.subject AND o.id = r.id
    RETURNING o.subject, o.id, o.version, o.resource, o.effective_start
)
INSERT INTO observation_versions (subject, id, version, resource, effective_start)
SELECT subject, id, coalesce(version, 0), resource, effective_start FROM superseded
ON CONFLICT DO NOTHING
"""

_INSERT_HISTORY = """
INSERT INTO observation_versions (subject, id, version, resource, effective_start)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::jsonb[], $5::timestamptz[])
ON CONFLICT DO NOTHING
"""

_INSERT_VERSIONED = """
INSERT INTO observations (subject, id, code, device, effective_start, effective_end, issued,
                          source_format, resource, version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                     $6::timestamptz[], $7::timestamptz[], $8::text[], $9::jsonb[], $10::bigint[])
"""


class _Record:
    """What one batch does to one versioned record (subject, id)."""

    __slots__ = ("current", "history", "replaces_stored", "version")

    def __init__(self, stored_version: int | None) -> None:
        self.version = stored_version  # the highest version seen so far; None: nothing yet
        self.current: ObservationRow | None = None  # the row of this batch that will be stored
        self.replaces_stored = False
        self.history: dict[int, ObservationRow] = {}  # rows of this batch kept as history

    def offer(self, row: ObservationRow, version: int) -> Outcome:
        if self.version is None:
            self.current, self.version = row, version
            return Outcome.CREATED
        if version > self.version:
            if self.current is None:
                self.replaces_stored = True
            else:
                self.history[self.version] = self.current
            self.current, self.version = row, version
            return Outcome.UPDATED
        if version < self.version:
            # A late, older version changes nothing stored, but is kept as history (if not
            # there already), so the history ends up the same whatever order versions arrive in.
            self.history.setdefault(version, row)
        return Outcome.DUPLICATE


def _month_start(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    if month.month == 12:
        return month.replace(year=month.year + 1, month=1)
    return month.replace(month=month.month + 1)


class ObservationStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool
        self._known_partitions: set[datetime] = set()

    async def ensure_partitions(self, moments: Iterable[datetime]) -> None:
        """Create the monthly partitions (UTC months) that these instants fall into."""
        moments = list(moments)
        if not moments:
            return
        # Nearly every batch lies within one known month: two conversions instead of one per row.
        first, last = _month_start(min(moments)), _month_start(max(moments))
        if first == last and first in self._known_partitions:
            return
        missing = {_month_start(m) for m in moments} - self._known_partitions
        if not missing:
            return
        async with self._pool.acquire("observations.ensure_partitions") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK_ID)
            for month in sorted(missing):
                # Through the table owner's function (migration 0012): the gateway's own role
                # need not own the tables, and cannot create a partition itself.
                await conn.execute("SELECT observations_ensure_partition($1)", month)
        self._known_partitions |= missing

    async def insert_many(self, rows: Sequence[ObservationRow]) -> list[Outcome]:
        """Store rows idempotently; returns one outcome per row, in order.

        Unversioned rows (`version` None): one bulk statement, first one stored wins: `created`,
        or `duplicate` when the same Observation was already stored or appears earlier in `rows`.
        Versioned rows: the highest version of a record is stored, `created` or `updated`; a
        version not above the stored one is `duplicate`. Replaced versions are kept in
        `observation_versions`."""
        if not rows:
            return []
        await self.ensure_partitions(row.effective_start for row in rows)
        outcomes: dict[int, Outcome] = {}
        plain = [(i, row) for i, row in enumerate(rows) if row.version is None]
        versioned = [(i, row) for i, row in enumerate(rows) if row.version is not None]
        if plain:
            created = await self._insert_unversioned([row for _, row in plain])
            for (index, _), was_created in zip(plain, created, strict=True):
                outcomes[index] = Outcome.CREATED if was_created else Outcome.DUPLICATE
        if versioned:
            found = await self._upsert_versioned([row for _, row in versioned])
            outcomes |= {index: found[n] for n, (index, _) in enumerate(versioned)}
        return [outcomes[index] for index in range(len(rows))]

    async def _insert_unversioned(self, rows: Sequence[ObservationRow]) -> list[bool]:
        returned = await self._pool.fetch(
            "observations.insert_unversioned",
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

    async def _upsert_versioned(self, rows: Sequence[ObservationRow]) -> list[Outcome]:
        """One transaction for the batch, a few statements whatever its size. Each record is
        locked first, so concurrent versions of one record are applied one after the other and
        converge on the highest, with every other version in the history."""
        subjects, ids = [row.subject for row in rows], [row.id for row in rows]
        async with self._pool.acquire("observations.upsert_versioned") as conn, conn.transaction():
            await conn.execute(_LOCK_RECORDS, _RECORD_LOCK_CLASS, subjects, ids)
            # Read after the locks: READ COMMITTED takes a new snapshot per statement, so this
            # sees every version committed by whoever held a lock before us.
            stored = {
                (r["subject"], r["id"]): int(r["version"])
                for r in await conn.fetch(_CURRENT_VERSIONS, subjects, ids)
            }
            records: dict[tuple[str, str], _Record] = {}
            outcomes = []
            for row in rows:
                key = (row.subject, row.id)
                record = records.get(key)
                if record is None:
                    record = records[key] = _Record(stored.get(key))
                outcomes.append(record.offer(row, row.version or 0))

            replaced = [key for key, record in records.items() if record.replaces_stored]
            if replaced:
                await conn.execute(
                    _SUPERSEDE, [key[0] for key in replaced], [key[1] for key in replaced]
                )
            history = [
                (version, row) for r in records.values() for version, row in r.history.items()
            ]
            if history:
                await conn.execute(
                    _INSERT_HISTORY,
                    [row.subject for _, row in history],
                    [row.id for _, row in history],
                    [version for version, _ in history],
                    [row.resource for _, row in history],
                    [row.effective_start for _, row in history],
                )
            current = [r.current for r in records.values() if r.current is not None]
            if current:
                await conn.execute(
                    _INSERT_VERSIONED,
                    [row.subject for row in current],
                    [row.id for row in current],
                    [row.code for row in current],
                    [row.device for row in current],
                    [row.effective_start for row in current],
                    [row.effective_end for row in current],
                    [row.issued for row in current],
                    [row.source_format for row in current],
                    [row.resource for row in current],
                    [row.version for row in current],
                )
        return outcomes

    async def get(self, observation_id: str) -> bytes | None:
        resource = await self._pool.fetchval(
            "observations.get", "SELECT resource FROM observations WHERE id = $1", observation_id
        )
        return bytes(resource) if resource is not None else None

    async def count(self) -> int:
        return int(
            await self._pool.fetchval("observations.count", "SELECT count(*) FROM observations")
        )
