"""The files of a research extract: written by a run as bytea chunks in the zone database
(NDJSON per resource type, and the Observations as CSV), downloaded by the job's client.

    FileWriter    one output file, written in CHUNK_BYTES chunks and hashed as it goes
    csv_row       one de-identified Observation as a flat CSV row
    open_file     GET /fhir/$export-file/{job}/{name}
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from gateway.errors import NotFound
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.exports.kickoff import own_job
from gateway.services.smart import ClientPrincipal
from gateway.storage.exports import StoredFile

CHUNK_BYTES: Final = 1 << 20
FILE_NAME: Final = re.compile(r"(Patient|Observation|Device)\.(ndjson|csv)")


class FileWriter:
    """One output file, written as CHUNK_BYTES chunks into the zone database; keeps only the
    current chunk in memory and hashes as it goes."""

    def __init__(self, zone: Zone, job_id: str, name: str, resource_type: str) -> None:
        self._zone = zone
        self._job = job_id
        self.name = name
        self.type = resource_type
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._seq = 0
        self.count = 0
        self.bytes = 0

    async def write(self, line: bytes) -> None:
        self._buffer += line
        self.count += 1
        if len(self._buffer) >= CHUNK_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        content = bytes(self._buffer)
        self._buffer.clear()
        self._hash.update(content)
        self.bytes += len(content)
        await self._zone.db.exports.write_chunk(self._job, self.name, self._seq, content)
        self._seq += 1

    async def close(self, *, count_header: bool = False) -> StoredFile:
        await self._flush()
        stored = StoredFile(
            name=self.name,
            type=self.type,
            sha256=self._hash.hexdigest(),
            count=self.count - (1 if count_header else 0),
            bytes=self.bytes,
        )
        await self._zone.db.exports.add_file(self._job, stored)
        return stored


CSV_COLUMNS: Final = (
    "id", "patient", "status", "category", "code", "display", "effective_start", "effective_end",
    "value", "comparator", "unit", "statistic",
    "component_1_code", "component_1_value", "component_1_unit",
    "component_2_code", "component_2_value", "component_2_unit", "device",
)  # fmt: skip


def _first_coding(concept: object) -> Mapping[str, object]:
    if isinstance(concept, list):
        concept = concept[0] if concept else None
    if isinstance(concept, dict):
        codings = concept.get("coding")
        if isinstance(codings, list) and codings and isinstance(codings[0], dict):
            return codings[0]
    return {}


def _quantity(value: object) -> tuple[object, object, object]:
    if isinstance(value, dict):
        return value.get("value", ""), value.get("comparator", ""), value.get("code", "")
    return "", "", ""


def csv_row(resource: Mapping[str, object]) -> list[object]:
    """One de-identified Observation as a flat CSV row (`CSV_COLUMNS`). Only values from the
    de-identified resource are used: the CSV can carry nothing the NDJSON does not."""
    code = _first_coding(resource.get("code"))
    period = resource.get("effectivePeriod")
    start = resource.get("effectiveDateTime") or resource.get("effectiveInstant") or ""
    end: object = ""
    if isinstance(period, dict):
        start, end = period.get("start", ""), period.get("end", "")
    value, comparator, unit = _quantity(resource.get("valueQuantity"))
    statistic = ""
    for extension in resource.get("extension") or []:  # type: ignore[attr-defined]
        statistic = extension.get("valueCode", "")
    subject = resource.get("subject")
    row: list[object] = [
        resource.get("id", ""),
        subject.get("reference", "").removeprefix("Patient/") if isinstance(subject, dict) else "",
        resource.get("status", ""),
        _first_coding(resource.get("category")).get("code", ""),
        code.get("code", ""),
        code.get("display", ""),
        start,
        end,
        value,
        comparator,
        unit,
        statistic,
    ]
    components = resource.get("component")
    for index in range(2):
        if isinstance(components, list) and index < len(components):
            component = components[index]
            c_value, _, c_unit = _quantity(component.get("valueQuantity"))
            row += [_first_coding(component.get("code")).get("code", ""), c_value, c_unit]
        else:
            row += ["", "", ""]
    device = resource.get("device")
    row.append(
        device.get("reference", "").removeprefix("Device/") if isinstance(device, dict) else ""
    )
    return row


def csv_line(row: Sequence[object]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(row)  # RFC 4180 line ends
    return out.getvalue().encode()


@dataclass(frozen=True, slots=True)
class ExportFile:
    type: str
    media_type: str
    size: int
    chunks: AsyncGenerator[bytes, None] = field(repr=False)


async def open_file(
    zones: ZoneDirectory, principal: ClientPrincipal, job_id: str, name: str, *, now: datetime
) -> ExportFile:
    zone = zones.require(principal.zone)
    job = await own_job(zone, principal, job_id, now)
    stored = (
        await zone.db.exports.file(job.id, name)
        if job.state == "done" and FILE_NAME.fullmatch(name)
        else None
    )
    if stored is None:
        raise NotFound("no such export file")
    media_type = "text/csv" if name.endswith(".csv") else "application/fhir+ndjson"
    return ExportFile(stored.type, media_type, stored.bytes, zone.db.exports.chunks(job.id, name))
