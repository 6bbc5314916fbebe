"""Research studies registered in a zone (migration 0007): what an export of each may release,
to whom, under which transfer mechanism."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

import asyncpg

from gateway.storage.pool import ZonePool


class StudyExists(Exception):
    """A study with this id is already registered in the zone."""


@dataclass(frozen=True, slots=True)
class StoredStudy:
    id: str
    zone: str
    title: str
    ethics_ref: str
    recipient_org: str
    recipient_country: str
    measures: tuple[str, ...]
    shift_days: int
    keep_weekday: bool
    resolution: str
    k: int
    expires_on: date
    transfer_kind: str | None
    transfer_reference: str | None
    transfer_tia: str | None
    transfer_expires_on: date | None
    researcher_clients: tuple[str, ...]


_STUDY_COLUMNS: Final = """id, zone, title, ethics_ref, recipient_org, recipient_country, measures,
    shift_days, keep_weekday, resolution, k, expires_on, transfer_kind, transfer_reference,
    transfer_tia, transfer_expires_on, researcher_clients"""


def _study(row: asyncpg.Record) -> StoredStudy:
    values = dict(row)
    values["measures"] = tuple(values["measures"])
    values["researcher_clients"] = tuple(values["researcher_clients"])
    return StoredStudy(**values)


class StudyStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def add(self, study: StoredStudy) -> None:
        try:
            await self._pool.execute(
                "studies.add",
                f"INSERT INTO studies ({_STUDY_COLUMNS}) VALUES "  # noqa: S608 - fixed columns
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                study.id,
                study.zone,
                study.title,
                study.ethics_ref,
                study.recipient_org,
                study.recipient_country,
                list(study.measures),
                study.shift_days,
                study.keep_weekday,
                study.resolution,
                study.k,
                study.expires_on,
                study.transfer_kind,
                study.transfer_reference,
                study.transfer_tia,
                study.transfer_expires_on,
                list(study.researcher_clients),
            )
        except asyncpg.UniqueViolationError as exc:
            raise StudyExists(study.id) from exc

    async def get(self, study_id: str) -> StoredStudy | None:
        row = await self._pool.fetchrow(
            "studies.get",
            f"SELECT {_STUDY_COLUMNS} FROM studies WHERE id = $1",  # noqa: S608 - fixed columns
            study_id,
        )
        return _study(row) if row else None
