"""Device: read and search (`_id`, `patient`, `identifier`) of the devices the site's
subjects used."""

from __future__ import annotations

from gateway.errors import NotFound
from gateway.fhir import bundle
from gateway.fhir.search import SearchRequest
from gateway.runtime.zones import ZoneDirectory
from gateway.services import audit
from gateway.services.fhir.common import (
    ReadResult,
    after_id,
    audit_access,
    audit_subject,
    authorise,
    intersect,
    page_links,
    resolve_chains,
    token_ids,
)
from gateway.services.smart import ClientPrincipal
from gateway.storage.fhir_search import StoredDevice


def device_resource(device: StoredDevice) -> dict[str, object]:
    return bundle.device(
        device.pseudonym,
        subject=device.subject,
        model=device.model,
        manufacturer=device.manufacturer,
    )


async def read_device(
    zones: ZoneDirectory, principal: ClientPrincipal, pseudonym: str
) -> ReadResult:
    zone = authorise(zones, principal, "Device")
    found = await zone.db.fhir_search.devices(
        principal.site, pseudonyms=[pseudonym], subjects=None, after=None, limit=1
    )
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.READ,
        resource_type="Device",
        subject=found[0].audit_subject if found else None,
        found=len(found),
    )
    if not found:
        raise NotFound("no such Device")
    return ReadResult(device_resource(found[0]), 0, found[0].first_seen)


async def search_devices(
    zones: ZoneDirectory, principal: ClientPrincipal, request: SearchRequest, *, base: str
) -> dict[str, object]:
    zone = authorise(zones, principal, "Device")
    parameters = request.names()
    request = await resolve_chains(zone, request)
    pseudonyms = intersect(
        [
            *token_ids(request, "_id", None),
            *token_ids(request, "identifier", bundle.DEVICE_IDENTIFIER_SYSTEM),
        ]
    )
    subjects = intersect(
        [{v for v in values if isinstance(v, str)} for values in request.values_of("patient")]
    )
    after = after_id(zone, request)
    site = principal.site
    total = (
        await zone.db.fhir_search.count_devices(site, pseudonyms=pseudonyms, subjects=subjects)
        if request.total
        else None
    )
    found: list[StoredDevice] = []
    next_position: list[object] | None = None
    if not request.summary_count:
        found = await zone.db.fhir_search.devices(
            site, pseudonyms=pseudonyms, subjects=subjects, after=after, limit=request.count + 1
        )
        if len(found) > request.count:
            found = found[: request.count]
            next_position = [found[-1].pseudonym]
    await audit_access(
        zone,
        principal,
        action=audit.AuditAction.SEARCH,
        resource_type="Device",
        subject=await audit_subject(zone, site, subjects or []),
        found=len(found) if total is None else total,
        parameters=parameters,
    )
    return bundle.searchset(
        base=base,
        entries=[bundle.Entry("Device", d.pseudonym, device_resource(d)) for d in found],
        links=page_links(zone, request, base, next_position),
        total=total,
        elements=request.elements,
    )
