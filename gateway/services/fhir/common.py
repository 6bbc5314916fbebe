"""What the clinic FHIR R4 read API shares across Observation, Patient and Device.

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

from gateway.errors import Forbidden
from gateway.fhir.search import CHAINS, Clause, InvalidCursor, InvalidSearch, SearchRequest, Token
from gateway.models import Identifier, ZoneSubject
from gateway.privacy.cursors import CursorRejected
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services import audit
from gateway.services.smart import ClientPrincipal, Permission

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


def authorise(zones: ZoneDirectory, principal: ClientPrincipal, resource_type: str) -> Zone:
    # Research clients get de-identified extracts only (ARCHITECTURE §6), never clinic reads.
    if principal.role != "clinic" or _PERMISSION[resource_type] not in principal.permissions:
        raise Forbidden(f"the access token does not grant reading {resource_type} resources")
    return zones.require(principal.zone)


async def audit_access(
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


# ------------------------------------------------------------------------------- searches


def search_key(request: SearchRequest) -> str:
    """What a cursor is bound to: the resource type and every parameter but the cursor."""
    return request.resource_type + "?" + urlencode(sorted(request.echo))


def cursor_position(zone: Zone, request: SearchRequest) -> list[object] | None:
    if request.cursor is None:
        return None
    try:
        return zone.cursors.open(search_key(request), request.cursor)
    except CursorRejected as exc:
        raise InvalidCursor(f"_cursor refused: {exc}") from None


def page_links(
    zone: Zone, request: SearchRequest, base: str, next_position: list[object] | None
) -> list[tuple[str, str]]:
    url = f"{base}/{request.resource_type}"
    self_params = list(request.echo)
    if request.cursor is not None:
        self_params.append(("_cursor", request.cursor))
    links = [("self", f"{url}?{urlencode(self_params)}" if self_params else url)]
    if next_position is not None:
        cursor = zone.cursors.sign(search_key(request), next_position)
        links.append(("next", f"{url}?{urlencode([*request.echo, ('_cursor', cursor)])}"))
    return links


def after_id(zone: Zone, request: SearchRequest) -> str | None:
    position = cursor_position(zone, request)
    if position is None:
        return None
    if len(position) != 1 or not isinstance(position[0], str):
        raise InvalidCursor("_cursor refused: malformed position")
    return position[0]


async def identified(zone: Zone, tokens: Iterable[Token]) -> set[str]:
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


async def resolve_chains(zone: Zone, request: SearchRequest) -> SearchRequest:
    """`patient.identifier=system|value` becomes `patient=<pseudonyms>`. An identifier of nobody
    in this zone names the id "", which matches nothing: an empty result, never a wider one.
    The site scoping of every query keeps another site's subject out."""
    chains = CHAINS[request.resource_type]
    clauses = []
    for clause in request.clauses:
        if clause.name in chains:
            found = await identified(zone, (v for v in clause.values if isinstance(v, Token)))
            clauses.append(Clause(chains[clause.name], tuple(sorted(found)) or ("",)))
        else:
            clauses.append(clause)
    return replace(request, clauses=tuple(clauses))


def named_subjects(request: SearchRequest, names: Sequence[str]) -> list[str]:
    return sorted(
        {
            value
            for name in names
            for values in request.values_of(name)
            for value in values
            if isinstance(value, str) and value
        }
    )


async def audit_subject(zone: Zone, site: str, named: Sequence[str]) -> ZoneSubject | None:
    """The one subject of this site and zone a search named, if it named exactly one that
    exists: what the client typed (an MRN, another zone's pseudonym) never reaches the log."""
    found = await zone.db.fhir_search.site_subjects(site, named) if named else []
    return found[0] if len(found) == 1 else None


def token_ids(request: SearchRequest, name: str, system: str | None) -> list[set[str]]:
    """For each occurrence of a token parameter, the ids its values name (AND of ORs)."""
    sets = []
    for values in request.values_of(name):
        ids = set()
        for value in values:
            if isinstance(value, Token) and (system is None or value.system in (None, system)):
                ids.add(value.code)
        sets.append(ids)
    return sets


def intersect(sets: Iterable[set[str]]) -> list[str] | None:
    result: set[str] | None = None
    for found in sets:
        result = found if result is None else result & found
    return None if result is None else sorted(result)
