"""Enrolment: a clinic registers a subject in the subject's home zone. No enrolment, no
processing: readings are accepted only for enrolled subjects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import AlreadyEnrolled, BadRequest, Forbidden, StaleKeyRing
from gateway.models import Enrolment, ZoneSubject
from gateway.privacy.pseudonyms import new_enrolment_id
from gateway.residency import enrolment_zone_error
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.services.clinics import Clinic
from gateway.services.zones import Zone, ZoneDirectory
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


async def _store(
    zone: Zone, enrolment: Enrolment, pseudonym: str, blind_indexes: Sequence[str]
) -> ZoneSubject:
    sealed = zone.vault.seal(pseudonym, _identity(enrolment))
    return await zone.db.subjects.insert(
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


async def enrol(zones: ZoneDirectory, clinic: Clinic, enrolment: Enrolment) -> Enrolled:
    error = enrolment_zone_error(
        requested=enrolment.zone, credential_zone=clinic.zone, served=zones.keys()
    )
    if error is not None:
        raise error
    if enrolment.site != clinic.site:
        raise Forbidden("a clinic credential can enrol subjects for its own site only")
    if not enrolment.identifiers:
        raise BadRequest("at least one identifier is required")
    zone = zones[enrolment.zone]
    # From fresh randomness, not from an identifier: each enrolment is a new subject, and one
    # enrolled again after erasure cannot be linked to its erased self (issue 6). Identifiers
    # taken twice are still refused, by the blind index.
    pseudonym = zone.pseudonyms.subject_pseudonym(zone.name, enrolment.site, new_enrolment_id())
    blind_indexes = sorted({zone.pseudonyms.blind_index(i) for i in enrolment.identifiers})
    # The unique index catches identifiers taken under the active blind-index version only; after
    # a blind-index rotation, those enrolled under an older version are looked up here.
    older = [b for i in enrolment.identifiers for b in zone.pseudonyms.blind_indexes(i)[1:]]
    if older and await zone.db.subjects.resolve(older):
        raise AlreadyEnrolled(
            "a subject with one of these identifiers is already enrolled in this zone"
        )
    try:
        stored = await _store(zone, enrolment, pseudonym, blind_indexes)
    except StaleKeyRing:
        # The database refused a data key wrapped under a kek the zone has rotated away from
        # (migration 0010): this ring is behind the key file. Reload it and wrap again, once;
        # a file still behind after that answers 503 rather than wrap under a retiring version.
        await zone.keys.refresh(force=True)
        stored = await _store(zone, enrolment, pseudonym, blind_indexes)
    await record(
        zone,
        action=AuditAction.ENROL,
        actor=clinic.actor,
        subject=stored,
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
