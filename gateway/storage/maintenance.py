"""Physical upkeep of the `observations` table: rewriting settled monthly partitions in subject
order (`CLUSTER`), so that one patient's page of a search reads a few heap pages instead of one
page per row.

Readings arrive interleaved across subjects, so a month's rows of one patient are spread over as
many heap pages as there are rows. While the data fits in memory that costs little; once it does
not, a search's page of 50 rows may read 50 heap pages from disk (BENCHMARKS.md). A month
that no longer receives readings can be rewritten once, ordered by the search index
`(subject, code, effective_start DESC, id DESC)`; readings that arrive for it later go to the end
of the table, which is harmless.

`CLUSTER` takes an ACCESS EXCLUSIVE lock on the partition it rewrites: readings for that month and
searches reaching into it wait until it is done (about 15 s per million rows on the benchmark
machine). The lock is requested with a short `lock_timeout`, so a partition that is busy is
skipped and reported, never waited for; run it when the zone is quiet (deploy/README.md:
nightly).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import asyncpg

from gateway.storage.database import admin_connection
from gateway.storage.observations import next_month

# The search index every per-patient Observation search walks (migration 0009).
CLUSTER_INDEX: Final = "observations_subject_code_time_id"
_PARTITION_NAME: Final = re.compile(r"observations_y(\d{4})m(\d{2})")


class ClusterOutcome(StrEnum):
    CLUSTERED = "clustered"
    BUSY = "busy"  # the lock was not granted within the timeout; nothing changed


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    month: datetime  # first instant of the UTC month it holds
    rows_estimate: int  # pg_class.reltuples (-1: never analysed)
    clustered: bool  # rewritten by CLUSTER at least once

    @property
    def ends(self) -> datetime:
        """The first instant after the month it holds (its partition bound)."""
        return next_month(self.month)


@dataclass(frozen=True, slots=True)
class ClusterResult:
    partition: str
    outcome: ClusterOutcome
    seconds: float


class PartitionMaintenance:
    """SQL for partition upkeep on one connection of a zone database (not a pool: `CLUSTER` and
    `VACUUM` run outside transactions, with session settings of their own)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def partitions(self) -> list[Partition]:
        rows = await self._conn.fetch(
            """
            SELECT c.relname AS name, c.reltuples::bigint AS rows_estimate,
                   EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = c.oid AND i.indisclustered) AS clustered
            FROM pg_inherits inh
            JOIN pg_class c ON c.oid = inh.inhrelid
            WHERE inh.inhparent = 'observations'::regclass
            ORDER BY c.relname
            """
        )
        found = []
        for row in rows:
            match = _PARTITION_NAME.fullmatch(row["name"])
            if match is None:
                continue  # not a monthly partition the gateway made
            month = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)
            found.append(Partition(row["name"], month, row["rows_estimate"], row["clustered"]))
        return found

    async def cluster(self, partition: Partition, *, lock_timeout_seconds: float) -> ClusterResult:
        """Rewrite one partition in search-index order, then vacuum it (a rewritten table has no
        visibility map, which index-only scans need) and refresh its statistics."""
        if _PARTITION_NAME.fullmatch(partition.name) is None:
            raise ValueError("not a monthly observations partition")
        index = await self._conn.fetchval(
            """
            SELECT ci.relname
            FROM pg_inherits ii
            JOIN pg_class ci ON ci.oid = ii.inhrelid
            JOIN pg_index x ON x.indexrelid = ci.oid
            WHERE ii.inhparent = $1::regclass AND x.indrelid = $2::regclass
            """,
            CLUSTER_INDEX,
            partition.name,
        )
        if index is None:
            raise LookupError("the partition has no search index to cluster by")
        started = time.perf_counter()
        # Names come from the catalogue and match _PARTITION_NAME (index names are PostgreSQL's
        # own, quoted): no input text reaches this SQL.
        quoted_index = '"' + str(index).replace('"', '""') + '"'
        await self._conn.execute(f"SET lock_timeout = {int(lock_timeout_seconds * 1000)}")
        try:
            await self._conn.execute(f"CLUSTER {partition.name} USING {quoted_index}")
        except asyncpg.LockNotAvailableError:
            return ClusterResult(partition.name, ClusterOutcome.BUSY, time.perf_counter() - started)
        finally:
            await self._conn.execute("RESET lock_timeout")
        await self._conn.execute(f"VACUUM (ANALYZE) {partition.name}")
        return ClusterResult(
            partition.name, ClusterOutcome.CLUSTERED, time.perf_counter() - started
        )


@asynccontextmanager
async def open_maintenance(
    dsn: str, *, zone: str | None = None
) -> AsyncIterator[PartitionMaintenance]:
    """A maintenance session on its own connection to the zone database at `dsn`."""
    async with admin_connection(dsn, zone=zone) as conn:
        yield PartitionMaintenance(conn)
