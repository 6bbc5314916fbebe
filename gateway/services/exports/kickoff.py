"""Research export jobs as their client sees them, over FHIR Bulk Data Access 2.0
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

    kick_off      GET|POST /fhir/Group/{study}/$export: authorise the study's researcher client,
                  decide (gateway.residency.export_policy), audit the decision, queue a job
    status        GET /fhir/$export-status/{job}: progress, or the manifest once released
    cancel        DELETE /fhir/$export-status/{job}

The kick-off's parameters are parsed by `gateway.fhir.bulk_parameters`; the jobs are run in the
background by `gateway.services.exports.workers`; their files are downloaded through
`gateway.services.exports.files`.

Nothing is released before its audit record is committed: the manifest (and so every file URL)
is only served once the job is `done`, which it becomes after the release is audited.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

import orjson

from gateway.errors import Forbidden, GatewayError, NotFound, RateLimited
from gateway.fhir.bulk_parameters import EXPORT_TYPES, ExportRequest
from gateway.logs import event
from gateway.residency.export_policy import (
    POLICY_VERSION,
    Consent,
    ExportDecision,
    Refusal,
    StudyTerms,
    TransferMechanism,
    decide_export,
)
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.services.smart import ClientPrincipal, Permission
from gateway.storage.exports import ExportSubject, StoredJob
from gateway.storage.studies import StoredStudy

log = logging.getLogger("gateway.export")

_PERMISSION: Final = {
    "Patient": Permission.READ_PATIENT,
    "Observation": Permission.READ_OBSERVATION,
    "Device": Permission.READ_DEVICE,
}
# How long a job and its files stay downloadable after kick-off.
RETENTION: Final = timedelta(hours=24)
# Status requests closer together than this are answered 429 (Bulk Data: "servers MAY return
# 429 Too Many Requests ... if the client polls too frequently"); it is also the Retry-After.
POLL_INTERVAL_SECONDS: Final = 1
JOB_ID: Final = re.compile(r"x[0-9a-f]{32}")


# ----------------------------------------------------------------------------------- errors


class ExportRefused(Forbidden):
    """The export policy refused the kick-off; the subclass's code says why."""

    code = "export-refused"


class StudyExpired(ExportRefused):
    code = Refusal.STUDY_EXPIRED.value


class MeasureNotInStudy(ExportRefused):
    code = Refusal.MEASURE_NOT_IN_STUDY.value


class TransferMechanismMissing(ExportRefused):
    code = Refusal.TRANSFER_MECHANISM_MISSING.value


class TransferMechanismExpired(ExportRefused):
    code = Refusal.TRANSFER_MECHANISM_EXPIRED.value


class NoResearchConsent(ExportRefused):
    code = Refusal.NO_RESEARCH_CONSENT.value


class NoCrossBorderConsent(ExportRefused):
    code = Refusal.NO_CROSS_BORDER_CONSENT.value


_REFUSALS: Final[Mapping[Refusal, type[ExportRefused]]] = {
    Refusal.STUDY_EXPIRED: StudyExpired,
    Refusal.MEASURE_NOT_IN_STUDY: MeasureNotInStudy,
    Refusal.TRANSFER_MECHANISM_MISSING: TransferMechanismMissing,
    Refusal.TRANSFER_MECHANISM_EXPIRED: TransferMechanismExpired,
    Refusal.NO_RESEARCH_CONSENT: NoResearchConsent,
    Refusal.NO_CROSS_BORDER_CONSENT: NoCrossBorderConsent,
}
_REFUSAL_TEXT: Final[Mapping[Refusal, str]] = {
    Refusal.STUDY_EXPIRED: "the study has expired",
    Refusal.MEASURE_NOT_IN_STUDY: "the request names a measure the study is not approved for",
    Refusal.TRANSFER_MECHANISM_MISSING: (
        "the recipient is outside the zone and the study has no valid transfer mechanism"
    ),
    Refusal.TRANSFER_MECHANISM_EXPIRED: "the study's transfer mechanism has expired",
    Refusal.NO_RESEARCH_CONSENT: "no subject of the zone has given research consent",
    Refusal.NO_CROSS_BORDER_CONSENT: (
        "the recipient is outside the zone and no consenting subject has given cross-border consent"
    ),
}


class ExportFailed(GatewayError):
    """The job ran and failed (Bulk Data: the status request answers 5xx + OperationOutcome)."""

    status = 500
    code = "export-failed"


# --------------------------------------------------------------------------------- kick-off


def study_terms(study: StoredStudy) -> StudyTerms:
    """The study as the export policy sees it (gateway.residency.export_policy)."""
    transfer = None
    if study.transfer_kind and study.transfer_reference:
        transfer = TransferMechanism(
            kind=study.transfer_kind,
            reference=study.transfer_reference,
            tia=study.transfer_tia,
            # A mechanism never outlives the study it was recorded for.
            expires_on=min(study.transfer_expires_on or study.expires_on, study.expires_on),
        )
    return StudyTerms(
        zone=study.zone,
        recipient_country=study.recipient_country,
        measures=frozenset(study.measures),
        expires_on=study.expires_on,
        transfer=transfer,
    )


def consents_of(subjects: Sequence[ExportSubject]) -> list[Consent]:
    return [Consent(s.research_consent, s.cross_border_consent) for s in subjects]


async def _study_for(
    zone: Zone, principal: ClientPrincipal, study_id: str, types: Sequence[str]
) -> StoredStudy:
    """The study, if `principal` is one of its researcher clients holding read scopes for every
    exported type; a study the client is not a researcher of is "not found" to it."""
    study = await zone.db.studies.get(study_id)
    if study is None or principal.client_id not in study.researcher_clients:
        raise NotFound("no such study for this client")
    if principal.role != "researcher":
        raise Forbidden("only researcher clients export studies")
    if not types or not all(_PERMISSION[t] in principal.permissions for t in types):
        raise Forbidden("the token's scopes do not cover every exported resource type")
    return study


@dataclass(frozen=True, slots=True)
class KickedOff:
    job_id: str


async def kick_off(
    zones: ZoneDirectory,
    principal: ClientPrincipal,
    study_id: str,
    request: ExportRequest,
    *,
    now: datetime,
) -> KickedOff:
    zone = zones.require(principal.zone)
    if not request.types:
        in_scope = tuple(t for t in EXPORT_TYPES if _PERMISSION[t] in principal.permissions)
        request = replace(request, types=in_scope)
    try:
        study = await _study_for(zone, principal, study_id, request.types)
    except GatewayError as refused:
        await _audit_kick_off(zone, principal, study_id, None, refused.code)
        raise
    subjects = await zone.db.exports.subjects()
    decision = decide_export(
        study_terms(study),
        today=now.date(),
        requested_codes=request.requested_codes,
        consents=consents_of(subjects),
    )
    if decision.refusal is not None:
        # The refusal is committed to the audit log before the client hears of it.
        await _audit_kick_off(zone, principal, study.id, decision, decision.refusal.value)
        raise _REFUSALS[decision.refusal](_REFUSAL_TEXT[decision.refusal])
    job_id = "x" + secrets.token_hex(16)
    await zone.db.exports.create(
        job_id,
        study=study.id,
        client=principal.client_id,
        request=request.as_json(),
        transaction_time=now,
        expires_at=now + RETENTION,
    )
    await _audit_kick_off(zone, principal, study.id, decision, None, job_id=job_id, request=request)
    event(log, "export.queued", zone=zone.name, study=study.id, job=job_id)
    return KickedOff(job_id)


async def _audit_kick_off(
    zone: Zone,
    principal: ClientPrincipal,
    study_id: str,
    decision: ExportDecision | None,
    refusal: str | None,
    *,
    job_id: str | None = None,
    request: ExportRequest | None = None,
) -> None:
    detail: dict[str, object] = {
        "study": study_id,
        "policy_version": POLICY_VERSION,
        "decision": "refused" if refusal else "accepted",
    }
    if refusal:
        detail["reason"] = refusal
    if decision is not None:
        detail["cross_border"] = decision.cross_border
    if job_id is not None:
        detail["job"] = job_id
    if request is not None:
        # The query's shape: types and whether filters were given, not their values.
        detail["types"] = list(request.types)
        detail["since"] = request.since is not None
        detail["type_filters"] = len(request.filters)
    await record(
        zone,
        action=AuditAction.EXPORT,
        actor=principal.client_id,
        subject=None,
        outcome=AuditOutcome.REFUSED if refusal else AuditOutcome.SUCCESS,
        detail=detail,
    )


# ----------------------------------------------------------------------------- status, files


@dataclass(frozen=True, slots=True)
class InProgress:
    progress: str
    retry_after: int = POLL_INTERVAL_SECONDS


async def own_job(zone: Zone, principal: ClientPrincipal, job_id: str, now: datetime) -> StoredJob:
    job = await zone.db.exports.get(job_id, now) if JOB_ID.fullmatch(job_id) else None
    # Another client's job is as unknown as a job that never existed.
    if job is None or job.client != principal.client_id or principal.role != "researcher":
        raise NotFound("no such export job")
    return job


async def status(
    zones: ZoneDirectory, principal: ClientPrincipal, job_id: str, *, now: datetime, base: str
) -> InProgress | dict[str, object]:
    """The job's progress, or its manifest (output URLs under `base`, the public /fhir URL)."""
    zone = zones.require(principal.zone)
    job = await own_job(zone, principal, job_id, now)
    if not await zone.db.exports.poll(job.id, now, POLL_INTERVAL_SECONDS):
        raise RateLimited(
            "status polled faster than Retry-After", retry_after=POLL_INTERVAL_SECONDS
        )
    if job.state == "failed":
        raise ExportFailed(f"the export failed: {job.error or 'internal error'}")
    if job.state != "done" or job.manifest is None:
        return InProgress(job.progress or job.state)
    manifest: dict[str, object] = orjson.loads(job.manifest)
    _with_urls(manifest, base, job.id)
    return manifest


def _with_urls(value: object, base: str, job_id: str) -> None:
    """Manifest entries are stored with file names; URLs are made from the public base now."""
    if isinstance(value, dict):
        name = value.pop("name", None)
        if isinstance(name, str):
            value["url"] = f"{base}/$export-file/{job_id}/{name}"
        for item in value.values():
            _with_urls(item, base, job_id)
    elif isinstance(value, list):
        for item in value:
            _with_urls(item, base, job_id)


async def cancel(
    zones: ZoneDirectory, principal: ClientPrincipal, job_id: str, *, now: datetime
) -> None:
    zone = zones.require(principal.zone)
    job = await own_job(zone, principal, job_id, now)
    if not await zone.db.exports.cancel(job.id, principal.client_id, now):
        raise NotFound("no such export job")
    event(log, "export.cancelled", zone=zone.name, study=job.study, job=job.id)
