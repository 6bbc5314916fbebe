"""Enrolment: a clinic registers a subject in the subject's home zone. No enrolment, no
processing: readings are accepted only for enrolled subjects."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import BadRequest, Forbidden
from gateway.models import Enrolment
from gateway.residency import enrolment_zone_error
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.services.auth import Principal
from gateway.services.zones import ZoneDirectory
from gateway.storage import StoredSubject


@dataclass(frozen=True, slots=True)
class Enrolled:
    zone: str
    pseudonym: str


def _identity(enrolment: Enrolment) -> dict[str, object]:
    return {
        "identifiers": [{"system": i.system, "value": i.value} for i in enrolment.identifiers],
        "birth_date": enrolment.birth_date.isoformat() if enrolment.birth_date else None,
        "sex": str(enrolment.sex),
    }


async def enrol(zones: ZoneDirectory, principal: Principal, enrolment: Enrolment) -> Enrolled:
    error = enrolment_zone_error(
        requested=enrolment.zone, credential_zone=principal.zone, served=zones.keys()
    )
    if error is not None:
        raise error
    if enrolment.site != principal.owner:
        raise Forbidden("a clinic credential can enrol subjects for its own site only")
    if not enrolment.identifiers:
        raise BadRequest("at least one identifier is required")
    zone = zones[enrolment.zone]
    pseudonym = zone.pseudonyms.subject_pseudonym(
        zone.name, enrolment.site, enrolment.identifiers[0]
    )
    blind_indexes = sorted({zone.pseudonyms.blind_index(i) for i in enrolment.identifiers})
    sealed = zone.vault.seal(pseudonym, _identity(enrolment))
    await zone.db.subjects.insert(
        StoredSubject(
            pseudonym=pseudonym,
            site=enrolment.site,
            research_consent=enrolment.consent.research,
            cross_border_consent=enrolment.consent.cross_border,
            kek_version=sealed.kek_version,
            wrapped_key=sealed.wrapped_key,
            identity=sealed.ciphertext,
        ),
        blind_indexes,
    )
    await record(
        zone,
        action=AuditAction.ENROL,
        actor=principal.key_id,
        subject=pseudonym,
        outcome=AuditOutcome.SUCCESS,
        # Counts and flags only: the identifiers themselves never reach the audit log.
        detail={
            "site": enrolment.site,
            "identifiers": len(enrolment.identifiers),
            "consent": {
                "research": enrolment.consent.research,
                "cross_border": enrolment.consent.cross_border,
            },
        },
    )
    return Enrolled(zone=zone.name, pseudonym=pseudonym)
