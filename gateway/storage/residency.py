"""Read-only counts for `wearable-gateway residency report`: what a zone's database
holds, and whether any row in it belongs to a subject the zone does not have."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from gateway.storage.pool import ZonePool
from gateway.storage.subjects import SUBJECT_TABLES


@dataclass(frozen=True, slots=True)
class ReleaseCount:
    country: str
    mechanism: str
    count: int


@dataclass(frozen=True, slots=True)
class ResidencyCounts:
    subjects: int
    readings: int
    extracts: int  # research extracts released (`release` records, success) since `since`
    refused_exports: int  # export requests refused (`export` records, refused) since `since`
    cross_border: list[ReleaseCount]  # cross-border extracts since `since`, by country, mechanism


# Rows that must belong to a subject of this zone's own `subjects` table.
_SUBJECT_ROWS: Final = tuple(entry for entry in SUBJECT_TABLES if entry[0] != "subjects")


class ResidencyStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def counts(self, since: datetime) -> ResidencyCounts:
        """One REPEATABLE READ snapshot, so the numbers describe one moment."""
        async with (
            self._pool.acquire("residency.counts") as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            subjects = await conn.fetchval("SELECT count(*) FROM subjects")
            readings = await conn.fetchval("SELECT count(*) FROM observations")
            # An extract leaves the zone only once its `release` record (outcome success) is
            # committed (services/exports/runner.py); an `export` record is the request, and an
            # accepted request may still be refused at release time, so requests are not counted
            # as exports.
            extracts = await conn.fetchval(
                "SELECT count(*) FROM audit_events "
                "WHERE action = 'release' AND outcome = 'success' AND recorded_at >= $1",
                since,
            )
            refused = await conn.fetchval(
                "SELECT count(*) FROM audit_events "
                "WHERE action = 'export' AND outcome = 'refused' AND recorded_at >= $1",
                since,
            )
            # A release record names the recipient's country and whether it crossed the zone's
            # border; the transfer mechanism (PIPL art. 38, GDPR art. 46) is the study's, kept in
            # `studies`. A study no longer stored counts as mechanism `unknown`.
            rows = await conn.fetch(
                """
                SELECT coalesce(a.detail ->> 'recipient_country', 'unknown') AS country,
                       coalesce(s.transfer_kind, 'unknown') AS mechanism,
                       count(*) AS count
                FROM audit_events a
                LEFT JOIN studies s ON s.id = a.detail ->> 'study'
                WHERE a.action = 'release' AND a.outcome = 'success' AND a.recorded_at >= $1
                  AND a.detail -> 'cross_border' = 'true'::jsonb
                GROUP BY 1, 2 ORDER BY 1, 2
                """,
                since,
            )
        return ResidencyCounts(
            subjects=int(subjects),
            readings=int(readings),
            extracts=int(extracts),
            refused_exports=int(refused),
            cross_border=[
                ReleaseCount(r["country"], r["mechanism"], int(r["count"])) for r in rows
            ],
        )

    async def foreign_rows(self, zone: str) -> dict[str, int]:
        """Rows per table that belong to no subject of this database's `subjects` (or, for
        tables that name their zone, to another zone; for `audit_events`, to no subject this
        zone holds or erased): a copy from another zone's database, or an orphan. Only tables
        with offenders are listed."""
        offenders: dict[str, int] = {}
        async with self._pool.acquire("residency.foreign_rows") as conn:
            for table, column in _SUBJECT_ROWS:
                # Names come from the literal table in gateway/storage/subjects.py.
                found = await conn.fetchval(
                    f"SELECT count(*) FROM {table} t WHERE NOT EXISTS "  # noqa: S608
                    f"(SELECT 1 FROM subjects s WHERE s.pseudonym = t.{column})"
                )
                if found:
                    offenders[table] = int(found)
            # The audit log outlives erasure: a subject no longer in `subjects` is legitimate
            # only if this zone erased it (its `erase` record, partial index of migration 0008).
            # Any other value is a subject this zone never held: another zone's pseudonym, or
            # what a client typed.
            found = await conn.fetchval(
                """
                SELECT count(*) FROM audit_events a
                WHERE a.subject IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM subjects s WHERE s.pseudonym = a.subject)
                  AND NOT EXISTS (
                      SELECT 1 FROM audit_events e
                      WHERE e.action = 'erase' AND e.subject = a.subject
                  )
                """
            )
            if found:
                offenders["audit_events"] = int(found)
            for table in ("smart_clients", "studies"):
                exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
                if not exists:
                    continue
                found = await conn.fetchval(
                    f"SELECT count(*) FROM {table} WHERE zone <> $1",  # noqa: S608
                    zone,
                )
                if found:
                    offenders[table] = int(found)
        return offenders
