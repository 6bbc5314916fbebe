"""Subjects (`web/subjects.py`, `web/subject_lifecycle.py` -> here -> `storage/subjects.py`):

- enrolment: a clinic registers a subject in the subject's home zone. No enrolment, no
  processing: readings are accepted only for enrolled subjects.
- consent changes: a clinic (or an operator) changes a subject's research or
  cross-border consent. Exports read `subjects.research_consent` / `cross_border_consent` at
  export time, so a withdrawal takes effect on the next export; readings keep being accepted for
  clinical use until the subject is erased.

Erasure, a resumable use case of its own, is `services/erase.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import AlreadyEnrolled, BadRequest, Forbidden, NotFound, StaleKeyRing
from gateway.models import Enrolment, ZoneSubject
from gateway.privacy.pseudonyms import new_enrolment_id
from gateway.residency import enrolment_zone_error
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.services.clinics import Clinic
from gateway.storage import StoredSubject
from gateway.storage.subjects import ConsentChange


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
    # enrolled again after erasure cannot be linked to its erased self. Identifiers
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


async def change_consent(
    zones: ZoneDirectory,
    *,
    zone: str,
    site: str | None,
    actor: str,
    pseudonym: str,
    research: bool | None,
    cross_border: bool | None,
) -> ConsentChange:
    """`site`: the acting clinic's site (another site's subject is not found, exactly like a
    missing one); None for an operator. The change and its history row commit together; the
    audit record follows (who, when, the resulting flags)."""
    if research is None and cross_border is None:
        raise BadRequest("give research and/or cross_border")
    target = zones.require(zone)
    changed = await target.db.subjects.change_consent(
        pseudonym, site=site, research=research, cross_border=cross_border, actor=actor
    )
    if changed is None:
        raise NotFound("no such subject")
    await record(
        target,
        action=AuditAction.CONSENT,
        actor=actor,
        subject=changed.subject,
        outcome=AuditOutcome.SUCCESS,
        detail={
            "site": changed.site,
            "consent": {"research": changed.research, "cross_border": changed.cross_border},
            "changed": sorted(
                name
                for name, value in (("research", research), ("cross_border", cross_border))
                if value is not None
            ),
        },
    )
    return changed
