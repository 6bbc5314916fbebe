"""Patient: read and search (`_id`, `identifier`). A Patient is pseudonymous: its id
is the zone pseudonym, its identifiers those its site enrolled, decrypted for the answer."""

from __future__ import annotations

from gateway.errors import NotFound
from gateway.fhir import bundle
from gateway.fhir.search import SearchRequest, Token
from gateway.privacy import SealedIdentity
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services import audit
from gateway.services.fhir.common import (
    ReadResult,
    after_id,
    audit_access,
    authorise,
    identified,
    intersect,
    page_links,
    token_ids,
)
from gateway.services.smart import ClientPrincipal
from gateway.storage.fhir_search import SiteSubject


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


async def patient_resource(zone: Zone, subject: SiteSubject) -> dict[str, object]:
    # Every identifier of the subject was enrolled by its one site, the site reading it.
    return bundle.patient(subject.pseudonym, subject.enrolled_at, await _identifiers(zone, subject))


async def read_patient(
    zones: ZoneDirectory, principal: ClientPrincipal, pseudonym: str
) -> ReadResult:
    zone = authorise(zones, principal, "Patient")
    found = await zone.db.fhir_search.subjects(principal.site, [pseudonym], None, 1)
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.READ,
        resource_type="Patient",
        subject=found[0].audit_subject if found else None,
        found=len(found),
    )
    if not found:
        raise NotFound("no such Patient")
    return ReadResult(await patient_resource(zone, found[0]), 0, found[0].enrolled_at)


async def search_patients(
    zones: ZoneDirectory, principal: ClientPrincipal, request: SearchRequest, *, base: str
) -> dict[str, object]:
    zone = authorise(zones, principal, "Patient")
    sets = token_ids(request, "_id", None)
    for values in request.values_of("identifier"):
        # The clinic's own identifiers, through the keyed blind index.
        sets.append(await identified(zone, (v for v in values if isinstance(v, Token))))
    pseudonyms = intersect(sets)
    after = after_id(zone, request)
    total = (
        await zone.db.fhir_search.count_subjects(principal.site, pseudonyms)
        if request.total
        else None
    )
    found: list[SiteSubject] = []
    next_position: list[object] | None = None
    if not request.summary_count:
        found = await zone.db.fhir_search.subjects(
            principal.site, pseudonyms, after, request.count + 1
        )
        if len(found) > request.count:
            found = found[: request.count]
            next_position = [found[-1].pseudonym]
    await audit_access(
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
        entries=[
            bundle.Entry("Patient", s.pseudonym, await patient_resource(zone, s)) for s in found
        ],
        links=page_links(zone, request, base, next_position),
        total=total,
        elements=request.elements,
    )
