"""The ingest use case (ARCHITECTURE §3), one step per block, top to bottom:

    parsed items -> normalise -> residency -> resolve subject (blind index) -> FHIR Observation
                 -> store (idempotent; a higher record version replaces the stored one)
                 -> per-reading outcomes (+ dead letters for rejections)

Only the resolve and store steps do I/O, and only in the API key's zone. The CPU-bound steps
hand the event loop back every `YIELD_EVERY` readings, so a large request does not hold up the
group-commit writer (which must start the next database batch as soon as one commits) or the
small requests behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from gateway.errors import ZoneUnavailable
from gateway.fhir import build_observation
from gateway.measures.normalise import normalise
from gateway.models import (
    DeadLetter,
    Identifier,
    IngestContext,
    ObservationRow,
    Outcome,
    ParsedItem,
    ParseRejection,
    Reading,
    ReadingOutcome,
    Rejection,
    RejectionCode,
)
from gateway.residency import declared_zone_rejection, found_in_zone
from gateway.runtime.zones import Zone, ZoneDirectory

_UNKNOWN_SUBJECT = Rejection(
    RejectionCode.UNKNOWN_SUBJECT,
    "no subject with this identifier is enrolled in this zone; readings of subjects who are not "
    "enrolled are not stored",
)


# ~2-3 ms of work between two turns of the event loop.
YIELD_EVERY = 100


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcomes: list[ReadingOutcome]
    stored_rows: int

    def count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome is outcome)


async def ingest(
    zones: ZoneDirectory,
    ctx: IngestContext,
    items: Sequence[ParsedItem],
    *,
    max_future_skew: timedelta,
    first_index: int = 0,
) -> IngestResult:
    """`first_index`: the position of items[0] in the whole upload (bulk uploads arrive in
    several batches; dead letters name the reading's position in the upload)."""
    zone = zones.require(ctx.zone)
    rejected: dict[int, Rejection] = {}

    readings: dict[int, Reading] = {}
    for index, item in enumerate(items):
        if index % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        if isinstance(item, ParseRejection):
            rejected[index] = Rejection(item.code, item.message)
            continue
        result = normalise(item, now=ctx.received_at, max_future_skew=max_future_skew)
        if isinstance(result, Rejection):
            rejected[index] = result
            continue
        wrong_zone = declared_zone_rejection(
            key_zone=zone.name, declared_zone=result.declared_zone, served=zones.keys()
        )
        if wrong_zone is not None:
            rejected[index] = wrong_zone
            continue
        readings[index] = result

    subjects = await _resolve_subjects(zone, readings)
    for index in list(readings):
        if index not in subjects:
            rejected[index] = await _why_unresolved(zones, zone, readings.pop(index))

    rows: dict[int, ObservationRow] = {}
    for count, (index, reading) in enumerate(readings.items(), start=1):
        rows[index] = _observation(zone, ctx, reading, subjects[index])
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    stored_outcomes = await zone.db.writer.write(list(rows.values()))
    # Which devices each subject uses, for FHIR Device reads (no serial number: the pseudonym).
    await zone.db.devices.record(
        [
            (
                row.subject,
                row.device,
                readings[i].device.model,
                readings[i].device.manufacturer,
                row.issued,
            )
            for i, row in rows.items()
        ]
    )

    await zone.db.dead_letters.add_many(
        [
            DeadLetter(
                ctx.request_id,
                ctx.vendor,
                ctx.source_format,
                first_index + index,
                r.code,
                r.message,
            )
            for index, r in sorted(rejected.items())
        ]
    )
    stored = dict(zip(rows, stored_outcomes, strict=True))
    outcomes = []
    for index in range(len(items)):
        if index in rejected:
            outcomes.append(ReadingOutcome(index, Outcome.REJECTED, rejection=rejected[index]))
        else:
            outcomes.append(ReadingOutcome(index, stored[index], observation_id=rows[index].id))
    written = sum(1 for o in stored_outcomes if o in (Outcome.CREATED, Outcome.UPDATED))
    return IngestResult(outcomes=outcomes, stored_rows=written)


async def _resolve_subjects(zone: Zone, readings: dict[int, Reading]) -> dict[int, str]:
    # One blind index per key version the ring holds, active first (one in all until a
    # blind-index rotation), so subjects enrolled under an older version still resolve. A cached
    # hit under any version settles a reading without asking the database.
    blind = {index: _blind_indexes(zone, r.subject) for index, r in readings.items()}
    cache = zone.lookups.subjects
    resolved: dict[int, str] = {}
    pending: dict[int, tuple[str, ...]] = {}
    for index, values in blind.items():
        hit = next((s for b in values if (s := cache.get(b)) is not None), None)
        if hit is None:
            pending[index] = values
        else:
            resolved[index] = hit
    if pending:
        fetched = await zone.db.subjects.resolve(list({b for v in pending.values() for b in v}))
        for index_value, subject in fetched.items():
            cache.put(index_value, subject)
        for index, values in pending.items():
            hit = next((fetched[b] for b in values if b in fetched), None)
            if hit is not None:
                resolved[index] = hit
    return resolved


def _blind_indexes(zone: Zone, identifier: Identifier) -> tuple[str, ...]:
    return zone.lookups.blind_indexes.get_or_make(
        (identifier.system, identifier.value),
        lambda: tuple(zone.pseudonyms.blind_indexes(identifier)),
    )


async def _why_unresolved(zones: ZoneDirectory, zone: Zone, reading: Reading) -> Rejection:
    # Not enrolled in the key's zone. If another zone this process serves has the subject, say
    # which zone to use (never which subject); nothing is read from or written to that zone.
    # The hint is best-effort: another zone's outage must not fail this zone's requests.
    for other in zones.others(zone.name):
        try:
            found = await other.db.subjects.resolve(other.pseudonyms.blind_indexes(reading.subject))
        except ZoneUnavailable:
            continue
        if found:
            return found_in_zone(other.name, zones.keys())
    return _UNKNOWN_SUBJECT


def _observation(zone: Zone, ctx: IngestContext, reading: Reading, subject: str) -> ObservationRow:
    observation_id = zone.pseudonyms.dedup_key(
        vendor=ctx.vendor,
        device_id=reading.device.id,
        subject=subject,
        measure=reading.measure.name,
        start=reading.start,
        end=reading.end,
        statistic=reading.statistic,
        record_key=reading.record_key,
    )
    device = zone.lookups.devices.get_or_make(
        (ctx.vendor, reading.device.id),
        lambda: zone.pseudonyms.device_pseudonym(ctx.vendor, reading.device.id),
    )
    return build_observation(
        reading, observation_id=observation_id, subject=subject, device=device, ctx=ctx
    )
