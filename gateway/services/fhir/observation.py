"""Observation: read, vread, `_history`, search, `$lastn`; `_include` of the Patient
and Device of the matches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode

import orjson

from gateway.errors import NotFound
from gateway.fhir import bundle
from gateway.fhir.search import CHAINS, LASTN_MAX, InvalidCursor, InvalidSearch, SearchRequest
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services import audit
from gateway.services.fhir.common import (
    ReadResult,
    audit_access,
    audit_subject,
    authorise,
    cursor_position,
    named_subjects,
    page_links,
    resolve_chains,
)
from gateway.services.fhir.device import device_resource
from gateway.services.fhir.patient import patient_resource
from gateway.services.smart import ClientPrincipal
from gateway.storage.fhir_search import StoredObservation


async def read_observation(
    zones: ZoneDirectory, principal: ClientPrincipal, observation_id: str
) -> ReadResult:
    zone = authorise(zones, principal, "Observation")
    found = await zone.db.fhir_search.observation(principal.site, observation_id)
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.READ,
        resource_type="Observation",
        subject=found.audit_subject if found else None,
        found=int(found is not None),
    )
    if found is None:
        raise NotFound("no such Observation")
    return ReadResult(found.resource, found.version, found.issued)


async def observation_history(
    zones: ZoneDirectory, principal: ClientPrincipal, observation_id: str, *, base: str
) -> dict[str, object]:
    """`GET Observation/{id}/_history`: every version, newest first, as a history Bundle."""
    zone = authorise(zones, principal, "Observation")
    versions = await zone.db.fhir_search.observation_versions(principal.site, observation_id)
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.READ,
        resource_type="Observation",
        subject=None,
        found=len(versions),
    )
    if not versions:
        raise NotFound("no such Observation")
    oldest = versions[-1].version
    return bundle.history(
        base=base,
        resource_type="Observation",
        resource_id=observation_id,
        versions=[bundle.Version(v.version, v.resource, v.version == oldest) for v in versions],
    )


async def read_observation_version(
    zones: ZoneDirectory, principal: ClientPrincipal, observation_id: str, version: int
) -> ReadResult:
    """`GET Observation/{id}/_history/{vid}` (vread)."""
    zone = authorise(zones, principal, "Observation")
    versions = await zone.db.fhir_search.observation_versions(principal.site, observation_id)
    found = next((v for v in versions if v.version == version), None)
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.READ,
        resource_type="Observation",
        subject=None,
        found=int(found is not None),
    )
    if found is None:
        raise NotFound("no such Observation version")
    return ReadResult(found.resource, found.version, found.issued or _last_updated(found.resource))


def _last_updated(resource: bytes) -> datetime:
    """meta.lastUpdated of a stored version (every Observation the gateway builds has one)."""
    meta = orjson.loads(resource).get("meta", {})
    return datetime.fromisoformat(str(meta.get("lastUpdated")))


async def search_observations(
    zones: ZoneDirectory, principal: ClientPrincipal, request: SearchRequest, *, base: str
) -> dict[str, object]:
    zone = authorise(zones, principal, "Observation")
    site = principal.site
    position = cursor_position(zone, request)
    parameters = request.names()
    request = await resolve_chains(zone, request)
    after = None
    if position is not None:
        try:
            after = (datetime.fromisoformat(str(position[0])), str(position[1]))
        except (IndexError, ValueError):
            raise InvalidCursor("_cursor refused: malformed position") from None

    total = await zone.db.fhir_search.count_observations(site, request) if request.total else None
    rows: list[StoredObservation] = []
    next_position: list[object] | None = None
    if not request.summary_count:
        rows = await zone.db.fhir_search.search_observations(
            site, request, after, request.count + 1
        )
        if len(rows) > request.count:
            rows = rows[: request.count]
            next_position = [rows[-1].sort_value.isoformat(), rows[-1].id]

    entries = [bundle.Entry("Observation", row.id, row.resource) for row in rows]
    entries += await _observation_includes(zone, site, request, rows)
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.SEARCH,
        resource_type="Observation",
        subject=await audit_subject(zone, site, named_subjects(request, ("patient", "subject"))),
        found=len(rows) if total is None else total,
        parameters=parameters,
    )
    return bundle.searchset(
        base=base,
        entries=entries,
        links=page_links(zone, request, base, next_position),
        total=total,
        elements=request.elements,
    )


async def _observation_includes(
    zone: Zone, site: str, request: SearchRequest, rows: Sequence[StoredObservation]
) -> list[bundle.Entry]:
    included: list[bundle.Entry] = []
    if not rows:
        return included
    if "Observation:patient" in request.includes:
        subjects = sorted({row.subject for row in rows})
        for subject in await zone.db.fhir_search.subjects(site, subjects, None, len(subjects)):
            included.append(
                bundle.Entry(
                    "Patient", subject.pseudonym, await patient_resource(zone, subject), "include"
                )
            )
    if "Observation:device" in request.includes:
        devices = sorted({row.device for row in rows})
        found = await zone.db.fhir_search.devices(
            site,
            pseudonyms=devices,
            subjects=sorted({row.subject for row in rows}),
            after=None,
            limit=len(devices),
        )
        for device in found:
            included.append(
                bundle.Entry("Device", device.pseudonym, device_resource(device), "include")
            )
    return included


async def last_n(
    zones: ZoneDirectory,
    principal: ClientPrincipal,
    request: SearchRequest,
    max_per_code: int,
    *,
    base: str,
) -> dict[str, object]:
    """Observation/$lastn (R4 observation-operation-lastn): the `max` most recent Observations
    of each code for the patient(s) named, newest first within a code; not paged."""
    zone = authorise(zones, principal, "Observation")
    if not 1 <= max_per_code <= LASTN_MAX:
        raise InvalidSearch(f"max is 1 to {LASTN_MAX}")
    parameters = request.names()
    if not any(request.values_of(name) for name in ("patient", "subject", *CHAINS["Observation"])):
        raise InvalidSearch("$lastn needs a patient or subject parameter")
    request = await resolve_chains(zone, request)
    # "" (an identifier of nobody) stays out: it matches nothing, so the result is empty.
    subjects = named_subjects(request, ("patient", "subject"))
    rows = (
        await zone.db.fhir_search.last_n(principal.site, subjects, request, max_per_code)
        if subjects
        else []
    )
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.SEARCH,
        resource_type="Observation",
        subject=await audit_subject(zone, principal.site, subjects),
        found=len(rows),
        parameters=[*parameters, "max"],
    )
    url = f"{base}/Observation/$lastn"
    query = urlencode([*request.echo, ("max", str(max_per_code))])
    return bundle.searchset(
        base=base,
        entries=[bundle.Entry("Observation", row.id, row.resource) for row in rows],
        links=[("self", f"{url}?{query}")],
        total=len(rows),
        elements=request.elements,
    )
