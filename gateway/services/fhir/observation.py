"""The clinic FHIR R4 read API (issue 4): reads and searches of Observation, Patient and Device.

Every use case reads top to bottom as:

    authorise (SMART permission for the resource type; clinic role)
      -> query the token's zone, scoped to the client's enrolling site
      -> build the FHIR answer -> audit (action, client, resource type, parameter names, count)

A clinic sees only the subjects its own site enrolled, only in its zone. Anything else is
indistinguishable from a resource that does not exist: 404 on read, no match in a search.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

import orjson

from gateway.errors import Forbidden, NotFound
from gateway.fhir import bundle
from gateway.fhir.search import (
    CHAINS,
    LASTN_MAX,
    Clause,
    InvalidCursor,
    InvalidSearch,
    SearchRequest,
    Token,
)
from gateway.models import Identifier, ZoneSubject
from gateway.privacy import SealedIdentity
from gateway.privacy.cursors import CursorRejected
from gateway.services import audit
from gateway.services.smart import ClientPrincipal, Permission
from gateway.services.zones import Zone, ZoneDirectory
from gateway.storage.search import SiteSubject, StoredDevice, StoredObservation

_PERMISSION: Final = {
    "Observation": Permission.READ_OBSERVATION,
    "Patient": Permission.READ_PATIENT,
    "Device": Permission.READ_DEVICE,
}


@dataclass(frozen=True, slots=True)
class ReadResult:
    """One resource as read: its JSON, version (ETag) and last change (Last-Modified)."""

    body: bytes | dict[str, object]
    version: int
    last_modified: datetime


# --------------------------------------------------------------------------- authorisation


def _authorise(zones: ZoneDirectory, principal: ClientPrincipal, resource_type: str) -> Zone:
    # Research clients get de-identified extracts only (ARCHITECTURE §6), never clinic reads.
    if principal.role != "clinic" or _PERMISSION[resource_type] not in principal.permissions:
        raise Forbidden(f"the access token does not grant reading {resource_type} resources")
    return zones.require(principal.zone)


async def _audit(
    zone: Zone,
    principal: ClientPrincipal,
    *,
    action: audit.AuditAction,
    resource_type: str,
    subject: ZoneSubject | None,
    found: int,
    parameters: Sequence[str] = (),
) -> None:
    detail: dict[str, object] = {"resource_type": resource_type, "count": found}
    if action is audit.AuditAction.SEARCH:
        detail["parameters"] = list(parameters)
    await audit.record(
        zone,
        action=action,
        actor=principal.client_id,
        subject=subject,
        # A search that matches nothing succeeded; a read of a missing resource did not.
        outcome=audit.AuditOutcome.REFUSED
        if action is audit.AuditAction.READ and not found
        else audit.AuditOutcome.SUCCESS,
        detail=detail,
    )


# ---------------------------------------------------------------------------------- reads


async def read_observation(
    zones: ZoneDirectory, principal: ClientPrincipal, observation_id: str
) -> ReadResult:
    zone = _authorise(zones, principal, "Observation")
    found = await zone.db.search.observation(principal.site, observation_id)
    await _audit(
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
    zone = _authorise(zones, principal, "Observation")
    versions = await zone.db.search.observation_versions(principal.site, observation_id)
    await _audit(
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
    zone = _authorise(zones, principal, "Observation")
    versions = await zone.db.search.observation_versions(principal.site, observation_id)
    found = next((v for v in versions if v.version == version), None)
    await _audit(
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


async def _identifiers(zone: Zone, subject: SiteSubject) -> list[tuple[str, str]]:
    identity = await zone.keys.open_identity(
        subject.pseudonym,
        SealedIdentity(
            wrapped_key=subject.wrapped_key,
            kek_version=subject.kek_version,
            ciphertext=subject.identity,
        ),
    )
    found = identity.get("identifiers")
    identifiers: list[tuple[str, str]] = []
    for item in found if isinstance(found, list) else []:
        if isinstance(item, dict):
            identifiers.append((str(item.get("system")), str(item.get("value"))))
    return identifiers


async def _patient(zone: Zone, subject: SiteSubject) -> dict[str, object]:
    # Every identifier of the subject was enrolled by its one site, the site reading it.
    return bundle.patient(subject.pseudonym, subject.enrolled_at, await _identifiers(zone, subject))


def _device(device: StoredDevice) -> dict[str, object]:
    return bundle.device(
        device.pseudonym,
        subject=device.subject,
        model=device.model,
        manufacturer=device.manufacturer,
    )


async def read_patient(
    zones: ZoneDirectory, principal: ClientPrincipal, pseudonym: str
) -> ReadResult:
    zone = _authorise(zones, principal, "Patient")
    found = await zone.db.search.subjects(principal.site, [pseudonym], None, 1)
    await _audit(
        zone,
        principal,
        action=audit.AuditAction.READ,
        resource_type="Patient",
        subject=found[0].audit_subject if found else None,
        found=len(found),
    )
    if not found:
        raise NotFound("no such Patient")
    return ReadResult(await _patient(zone, found[0]), 0, found[0].enrolled_at)


async def read_device(
    zones: ZoneDirectory, principal: ClientPrincipal, pseudonym: str
) -> ReadResult:
    zone = _authorise(zones, principal, "Device")
    found = await zone.db.search.devices(
        principal.site, pseudonyms=[pseudonym], subjects=None, after=None, limit=1
    )
    await _audit(
        zone,
        principal,
        action=audit.AuditAction.READ,
        resource_type="Device",
        subject=found[0].audit_subject if found else None,
        found=len(found),
    )
    if not found:
        raise NotFound("no such Device")
    return ReadResult(_device(found[0]), 0, found[0].first_seen)


# ------------------------------------------------------------------------------- searches


def _search_key(request: SearchRequest) -> str:
    """What a cursor is bound to: the resource type and every parameter but the cursor."""
    return request.resource_type + "?" + urlencode(sorted(request.echo))


def _position(zone: Zone, request: SearchRequest) -> list[object] | None:
    if request.cursor is None:
        return None
    try:
        return zone.cursors.open(_search_key(request), request.cursor)
    except CursorRejected as exc:
        raise InvalidCursor(f"_cursor refused: {exc}") from None


def _links(
    zone: Zone, request: SearchRequest, base: str, next_position: list[object] | None
) -> list[tuple[str, str]]:
    url = f"{base}/{request.resource_type}"
    self_params = list(request.echo)
    if request.cursor is not None:
        self_params.append(("_cursor", request.cursor))
    links = [("self", f"{url}?{urlencode(self_params)}" if self_params else url)]
    if next_position is not None:
        cursor = zone.cursors.sign(_search_key(request), next_position)
        links.append(("next", f"{url}?{urlencode([*request.echo, ('_cursor', cursor)])}"))
    return links


async def _identified(zone: Zone, tokens: Iterable[Token]) -> set[str]:
    """The pseudonyms (of any site of this zone) enrolled with any of these identifiers. They are
    found through the keyed blind index, which is of system and value together, so a value
    without its system cannot be looked up."""
    tokens = list(tokens)
    if any(not t.system for t in tokens):
        raise InvalidSearch("identifier searches of patients need system|value")
    blind = [
        index
        for t in tokens
        for index in zone.pseudonyms.blind_indexes(Identifier(str(t.system), t.code))
    ]
    return set((await zone.db.subjects.resolve(blind)).values())


async def _resolve_chains(zone: Zone, request: SearchRequest) -> SearchRequest:
    """`patient.identifier=system|value` becomes `patient=<pseudonyms>`. An identifier of nobody
    in this zone names the id "", which matches nothing: an empty result, never a wider one.
    The site scoping of every query keeps another site's subject out."""
    chains = CHAINS[request.resource_type]
    clauses = []
    for clause in request.clauses:
        if clause.name in chains:
            found = await _identified(zone, (v for v in clause.values if isinstance(v, Token)))
            clauses.append(Clause(chains[clause.name], tuple(sorted(found)) or ("",)))
        else:
            clauses.append(clause)
    return replace(request, clauses=tuple(clauses))


def _named_subjects(request: SearchRequest, names: Sequence[str]) -> list[str]:
    return sorted(
        {
            value
            for name in names
            for values in request.values_of(name)
            for value in values
            if isinstance(value, str) and value
        }
    )


async def _audit_subject(zone: Zone, site: str, named: Sequence[str]) -> ZoneSubject | None:
    """The one subject of this site and zone a search named, if it named exactly one that
    exists: what the client typed (an MRN, another zone's pseudonym) never reaches the log."""
    found = await zone.db.search.site_subjects(site, named) if named else []
    return found[0] if len(found) == 1 else None


async def search_observations(
    zones: ZoneDirectory, principal: ClientPrincipal, request: SearchRequest, *, base: str
) -> dict[str, object]:
    zone = _authorise(zones, principal, "Observation")
    site = principal.site
    position = _position(zone, request)
    parameters = request.names()
    request = await _resolve_chains(zone, request)
    after = None
    if position is not None:
        try:
            after = (datetime.fromisoformat(str(position[0])), str(position[1]))
        except (IndexError, ValueError):
            raise InvalidCursor("_cursor refused: malformed position") from None

    total = await zone.db.search.count_observations(site, request) if request.total else None
    rows: list[StoredObservation] = []
    next_position: list[object] | None = None
    if not request.summary_count:
        rows = await zone.db.search.search_observations(site, request, after, request.count + 1)
        if len(rows) > request.count:
            rows = rows[: request.count]
            next_position = [rows[-1].sort_value.isoformat(), rows[-1].id]

    entries = [bundle.Entry("Observation", row.id, row.resource) for row in rows]
    entries += await _observation_includes(zone, site, request, rows)
    await _audit(
        zone,
        principal,
        action=audit.AuditAction.SEARCH,
        resource_type="Observation",
        subject=await _audit_subject(zone, site, _named_subjects(request, ("patient", "subject"))),
        found=len(rows) if total is None else total,
        parameters=parameters,
    )
    return bundle.searchset(
        base=base,
        entries=entries,
        links=_links(zone, request, base, next_position),
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
        for subject in await zone.db.search.subjects(site, subjects, None, len(subjects)):
            included.append(
                bundle.Entry("Patient", subject.pseudonym, await _patient(zone, subject), "include")
            )
    if "Observation:device" in request.includes:
        devices = sorted({row.device for row in rows})
        found = await zone.db.search.devices(
            site,
            pseudonyms=devices,
            subjects=sorted({row.subject for row in rows}),
            after=None,
            limit=len(devices),
        )
        for device in found:
            included.append(bundle.Entry("Device", device.pseudonym, _device(device), "include"))
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
    zone = _authorise(zones, principal, "Observation")
    if not 1 <= max_per_code <= LASTN_MAX:
        raise InvalidSearch(f"max is 1 to {LASTN_MAX}")
    parameters = request.names()
    if not any(request.values_of(name) for name in ("patient", "subject", *CHAINS["Observation"])):
        raise InvalidSearch("$lastn needs a patient or subject parameter")
    request = await _resolve_chains(zone, request)
    # "" (an identifier of nobody) stays out: it matches nothing, so the result is empty.
    subjects = _named_subjects(request, ("patient", "subject"))
    rows = (
        await zone.db.search.last_n(principal.site, subjects, request, max_per_code)
        if subjects
        else []
    )
    await _audit(
        zone,
        principal,
        action=audit.AuditAction.SEARCH,
        resource_type="Observation",
        subject=await _audit_subject(zone, principal.site, subjects),
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


def _token_ids(request: SearchRequest, name: str, system: str | None) -> list[set[str]]:
    """For each occurrence of a token parameter, the ids its values name (AND of ORs)."""
    sets = []
    for values in request.values_of(name):
        ids = set()
        for value in values:
            if isinstance(value, Token) and (system is None or value.system in (None, system)):
                ids.add(value.code)
        sets.append(ids)
    return sets


def _intersect(sets: Iterable[set[str]]) -> list[str] | None:
    result: set[str] | None = None
    for found in sets:
        result = found if result is None else result & found
    return None if result is None else sorted(result)


def _after_id(zone: Zone, request: SearchRequest) -> str | None:
    position = _position(zone, request)
    if position is None:
        return None
    if len(position) != 1 or not isinstance(position[0], str):
        raise InvalidCursor("_cursor refused: malformed position")
    return position[0]


async def search_patients(
    zones: ZoneDirectory, principal: ClientPrincipal, request: SearchRequest, *, base: str
) -> dict[str, object]:
    zone = _authorise(zones, principal, "Patient")
    sets = _token_ids(request, "_id", None)
    for values in request.values_of("identifier"):
        # The clinic's own identifiers, through the keyed blind index.
        sets.append(await _identified(zone, (v for v in values if isinstance(v, Token))))
    pseudonyms = _intersect(sets)
    after = _after_id(zone, request)
    total = (
        await zone.db.search.count_subjects(principal.site, pseudonyms) if request.total else None
    )
    found: list[SiteSubject] = []
    next_position: list[object] | None = None
    if not request.summary_count:
        found = await zone.db.search.subjects(principal.site, pseudonyms, after, request.count + 1)
        if len(found) > request.count:
            found = found[: request.count]
            next_position = [found[-1].pseudonym]
    await _audit(
        zone,
        principal,
        action=audit.AuditAction.SEARCH,
        resource_type="Patient",
        subject=found[0].audit_subject if len(found) == 1 else None,
        found=len(found) if total is None else total,
        parameters=request.names(),
    )
    return bundle.searchset(
        base=base,
        entries=[bundle.Entry("Patient", s.pseudonym, await _patient(zone, s)) for s in found],
        links=_links(zone, request, base, next_position),
        total=total,
        elements=request.elements,
    )


async def search_devices(
    zones: ZoneDirectory, principal: ClientPrincipal, request: SearchRequest, *, base: str
) -> dict[str, object]:
    zone = _authorise(zones, principal, "Device")
    parameters = request.names()
    request = await _resolve_chains(zone, request)
    pseudonyms = _intersect(
        [
            *_token_ids(request, "_id", None),
            *_token_ids(request, "identifier", bundle.DEVICE_IDENTIFIER_SYSTEM),
        ]
    )
    subjects = _intersect(
        [{v for v in values if isinstance(v, str)} for values in request.values_of("patient")]
    )
    after = _after_id(zone, request)
    site = principal.site
    total = (
        await zone.db.search.count_devices(site, pseudonyms=pseudonyms, subjects=subjects)
        if request.total
        else None
    )
    found: list[StoredDevice] = []
    next_position: list[object] | None = None
    if not request.summary_count:
        found = await zone.db.search.devices(
            site, pseudonyms=pseudonyms, subjects=subjects, after=after, limit=request.count + 1
        )
        if len(found) > request.count:
            found = found[: request.count]
            next_position = [found[-1].pseudonym]
    await _audit(
        zone,
        principal,
        action=audit.AuditAction.SEARCH,
        resource_type="Device",
        subject=await _audit_subject(zone, site, subjects or []),
        found=len(found) if total is None else total,
        parameters=parameters,
    )
    return bundle.searchset(
        base=base,
        entries=[bundle.Entry("Device", d.pseudonym, _device(d)) for d in found],
        links=_links(zone, request, base, next_position),
        total=total,
        elements=request.elements,
    )
