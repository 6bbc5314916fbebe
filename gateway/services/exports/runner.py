"""One run of a research export job, claimed by `gateway.services.exports.workers`
in the process serving the job's zone; an ExportRunner takes it from the queued request to its
manifest:

    consenting subjects --open identity--> (age band, sex, site) --k_anonymity--> kept subjects
      --study pseudonym, date shift--> Patient.ndjson
    observations (server-side cursor) --deidentify_observation--> Observation.ndjson + .csv
    devices the observations reference --deidentify_device--> Device.ndjson
      --> files as bytea chunks in the zone database --> audit RELEASE --> manifest

Nothing is released before its audit record is committed: the job becomes `done`, and its
manifest (and so every file URL) servable, only after the release is audited.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

import orjson

from gateway.deid import (
    DeidPolicy,
    QuasiIdentifiers,
    ResourceExcluded,
    TimestampResolution,
    age_band,
    deidentify_device,
    deidentify_observation,
    deidentify_patient,
    k_anonymity,
)
from gateway.fhir.bulk_parameters import ExportRequest
from gateway.logs import event
from gateway.models import Sex
from gateway.privacy.deid_keys import (
    date_shift,
    date_shift_version,
    study_device_id,
    study_pseudonym,
    study_resource_id,
)
from gateway.privacy.envelope import SealedIdentity
from gateway.residency.export_policy import (
    POLICY_VERSION,
    Consent,
    ExportDecision,
    decide_export,
)
from gateway.runtime.zones import Zone
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.services.exports.files import CSV_COLUMNS, FileWriter, csv_line, csv_row
from gateway.services.exports.kickoff import consents_of, study_terms
from gateway.storage.exports import ExportSubject, StoredFile, StoredJob
from gateway.storage.studies import StoredStudy

log = logging.getLogger("gateway.export")

PROGRESS_EVERY: Final = 5000


class JobStopped(Exception):
    """The job was cancelled (or expired) while running: stop writing."""


def _policy(study: StoredStudy) -> DeidPolicy:
    return DeidPolicy(
        date_shift_bound=timedelta(days=study.shift_days),
        allowed_codes=frozenset(study.measures),
        keep_weekday=study.keep_weekday,
        timestamp_resolution=TimestampResolution(study.resolution),
        k=study.k,
    )


@dataclass
class _Member:
    pseudonym: str
    qi: QuasiIdentifiers
    sex: Sex


async def _members(
    zone: Zone, subjects: Sequence[ExportSubject], decision: ExportDecision, policy: DeidPolicy
) -> tuple[dict[str, _Member], Counter[str]]:
    """The study's members and their quasi-identifiers; counts of who is left out and why."""
    members: dict[str, _Member] = {}
    excluded: Counter[str] = Counter()
    for subject in subjects:
        if not subject.research_consent:
            excluded["no-research-consent"] += 1
            continue
        if not decision.member(Consent(subject.research_consent, subject.cross_border_consent)):
            excluded["no-cross-border-consent"] += 1
            continue
        identity = await zone.keys.open_identity(
            subject.pseudonym,
            SealedIdentity(subject.wrapped_key, subject.kek_version, subject.identity),
        )
        birth_text, sex_text = identity.get("birth_date"), identity.get("sex")
        if not isinstance(birth_text, str) or sex_text not in tuple(Sex):
            # No birth date, no age band: fail closed rather than release an unbanded person.
            excluded["no-birth-date"] += 1
            continue
        sex = Sex(str(sex_text))
        band = age_band(
            date.fromisoformat(birth_text),
            subject.enrolled_at.astimezone(UTC).date(),
            policy.age_band_width,
        )
        members[subject.pseudonym] = _Member(
            subject.pseudonym, QuasiIdentifiers(band, sex.value, subject.site), sex
        )
    return members, excluded


@dataclass
class _Run:
    """One run of a job: what was decided before writing, and what has been written."""

    job: StoredJob
    study: StoredStudy
    request: ExportRequest
    policy: DeidPolicy
    decision: ExportDecision
    members: dict[str, _Member]
    excluded: Counter[str]
    kept: list[str]
    study_ids: dict[str, str]
    k_report: dict[str, object]
    # (zone pseudonym, device pseudonym) -> study device id, for every device an exported
    # Observation referenced (Device in the extract only).
    device_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    resources: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_extensions: Counter[str] = field(default_factory=Counter)
    unknown_extensions: Counter[str] = field(default_factory=Counter)


class ExportRunner:
    """Runs one claimed job of one zone, start to finish."""

    def __init__(self, zone: Zone, lease_seconds: float) -> None:
        self._zone = zone
        self._keyring = zone.keyring
        self._lease = lease_seconds

    async def run(self, job: StoredJob) -> dict[str, int] | None:
        """Run the job to its manifest: the resources released, by type; None when the policy
        refused it at run time (the job is failed and the refusal audited). Raises `JobStopped`
        when the job was cancelled or expired meanwhile."""
        # The zone's ring as this job starts, for all of it: one job's study pseudonyms and date
        # shifts come from one key version even if the key file is rotated meanwhile.
        self._keyring = self._zone.keyring
        run = await self._prepare(job)
        if run is None:
            return None
        await self._zone.db.exports.reset_files(job.id)
        files: list[StoredFile] = []
        csv_file: StoredFile | None = None
        if "Patient" in run.request.types:
            files.append(await self._write_patients(run))
        if "Observation" in run.request.types:
            ndjson, csv_file = await self._write_observations(run)
            files.append(ndjson)
        if "Device" in run.request.types:
            files.append(await self._write_devices(run))
        await self._release(run, files, csv_file)
        return {f.type: f.count for f in files}

    def _device_id(self, run: _Run, subject: str, device: str) -> str:
        found = run.device_ids.get((subject, device))
        if found is None:
            found = run.device_ids[(subject, device)] = study_device_id(
                self._keyring, run.study.id, run.study.recipient_org, subject, device
            )
        return found

    async def _progress(self, run: _Run) -> None:
        renewed = await self._zone.db.exports.renew(
            run.job.id, f"{run.resources} resources", self._lease
        )
        if not renewed:
            raise JobStopped

    async def _prepare(self, job: StoredJob) -> _Run | None:
        """Decide who is in the extract; None (job failed, refusal audited) when nobody may be."""
        zone = self._zone
        study = await zone.db.studies.get(job.study)
        if study is None:
            await zone.db.exports.fail(job.id, "the study no longer exists")
            return None
        request = ExportRequest.from_json(job.request)
        policy = _policy(study)
        subjects = await zone.db.exports.subjects()
        # Consent is judged at export time: re-decide; a withdrawal since kick-off wins.
        decision = decide_export(
            study_terms(study),
            today=datetime.now(UTC).date(),
            requested_codes=request.requested_codes,
            consents=consents_of(subjects),
        )
        if decision.refusal is not None:
            await record(
                zone,
                action=AuditAction.RELEASE,
                actor=job.client,
                subject=None,
                outcome=AuditOutcome.REFUSED,
                detail={
                    "study": study.id,
                    "job": job.id,
                    "reason": decision.refusal.value,
                    "policy_version": POLICY_VERSION,
                },
            )
            await zone.db.exports.fail(job.id, decision.refusal.value)
            return None
        members, excluded = await _members(zone, subjects, decision, policy)
        # k-anonymity over the eligible subjects first: suppressed subjects' rows never leave.
        gate = k_anonymity(
            {s: m.qi for s, m in members.items()}, policy.k, generalise_site=policy.generalise_site
        )
        if gate.suppressed:
            excluded["k-anonymity-suppressed"] += len(gate.suppressed)
        kept = sorted(gate.kept)
        for subject in kept:
            members[subject].qi = gate.released[subject]
        recipient = study.recipient_org
        return _Run(
            job=job,
            study=study,
            request=request,
            policy=policy,
            decision=decision,
            members=members,
            excluded=excluded,
            kept=kept,
            study_ids={s: study_pseudonym(self._keyring, study.id, recipient, s) for s in kept},
            k_report={
                "k": policy.k,
                "eligible": len(members),
                "kept": len(gate.kept),
                "generalised": len(gate.generalised),
                "suppressed": len(gate.suppressed),
                "smallestGroup": min(gate.groups.values(), default=0),
            },
        )

    async def _write_patients(self, run: _Run) -> StoredFile:
        patients = (
            deidentify_patient(
                study_subject=run.study_ids[subject],
                age_band=run.members[subject].qi.age_band,
                sex=run.members[subject].sex,
                site=run.members[subject].qi.site,
            )
            for subject in run.kept
        )
        return await self._write_file(run, "Patient", patients)

    async def _write_devices(self, run: _Run) -> StoredFile:
        """One Device per (subject, device): those the exported Observations reference, or,
        in an extract without Observations, every device of the kept subjects."""
        referenced = set(run.device_ids) if "Observation" in run.request.types else None
        linked = await self._zone.db.exports.devices(run.kept)
        devices = (
            deidentify_device(
                study_device=self._device_id(run, subject, device),
                study_subject=run.study_ids[subject],
                model=model,
                table=run.policy.model_families,
            )
            for subject, device, model in linked
            if referenced is None or (subject, device) in referenced
        )
        return await self._write_file(run, "Device", devices)

    async def _write_file(
        self, run: _Run, resource_type: str, resources: Iterable[dict[str, object]]
    ) -> StoredFile:
        """`<type>.ndjson` of `resources`, made one at a time (a generator stays lazy)."""
        writer = FileWriter(self._zone, run.job.id, f"{resource_type}.ndjson", resource_type)
        for resource in resources:
            await writer.write(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
            run.resources += 1
        stored = await writer.close()
        await self._progress(run)
        return stored

    async def _write_observations(self, run: _Run) -> tuple[StoredFile, StoredFile]:
        job, study, policy, request = run.job, run.study, run.policy, run.request
        ndjson = FileWriter(self._zone, job.id, "Observation.ndjson", "Observation")
        table = FileWriter(self._zone, job.id, "Observation.csv", "Observation")
        await table.write(csv_line(CSV_COLUMNS))
        shifts: dict[str, timedelta] = {}
        categories = request.categories
        with_devices = "Device" in request.types

        def resource_id(stored: str) -> str:
            return study_resource_id(self._keyring, study.id, study.recipient_org, stored)

        rows = self._zone.db.exports.observations(
            run.kept,
            codes=sorted(request.requested_codes or policy.allowed_codes),
            categories=sorted(categories) if categories is not None else None,
            since=request.since,
            until=job.transaction_time,
        )
        async with contextlib.aclosing(rows):
            async for subject, code, category, body in rows:
                if not request.matches(code, category):
                    continue
                shift = shifts.get(subject)
                if shift is None:
                    # One offset per (study, subject), for every timestamp of the subject.
                    shift = shifts[subject] = date_shift(
                        self._keyring,
                        study.id,
                        subject,
                        bound=policy.date_shift_bound,
                        keep_weekday=policy.keep_weekday,
                    )
                try:
                    resource, report = deidentify_observation(
                        orjson.loads(body),
                        study_subject=run.study_ids[subject],
                        shift=shift,
                        policy=policy,
                        resource_id=resource_id,
                        device_id=(
                            functools.partial(self._device_id, run, subject)
                            if with_devices
                            else None
                        ),
                    )
                except ResourceExcluded as excluded:
                    run.left_out[excluded.reason.value] += 1
                    continue
                run.dropped.update(report.dropped_elements)
                run.dropped_extensions.update(report.dropped_extensions)
                run.unknown_extensions.update(report.unknown_extensions)
                await ndjson.write(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
                await table.write(csv_line(csv_row(resource)))
                run.resources += 1
                if run.resources % PROGRESS_EVERY == 0:
                    await self._progress(run)
        return await ndjson.close(), await table.close(count_header=True)

    async def _release(
        self, run: _Run, files: list[StoredFile], csv_file: StoredFile | None
    ) -> None:
        zone, job, study = self._zone, run.job, run.study
        released = [*files, *([csv_file] if csv_file else [])]
        excluded_subjects = dict(sorted(run.excluded.items()))
        excluded_resources = dict(sorted(run.left_out.items()))
        # The release is audited (file hashes, counts, k result, policy version) before the job
        # is marked done: no manifest, and so no file URL, exists before this commit.
        await record(
            zone,
            action=AuditAction.RELEASE,
            actor=job.client,
            subject=None,
            outcome=AuditOutcome.SUCCESS,
            detail={
                "study": study.id,
                "job": job.id,
                "policy_version": POLICY_VERSION,
                "cross_border": run.decision.cross_border,
                "recipient_country": study.recipient_country,
                "date_shift_key_version": date_shift_version(self._keyring),
                "files": [
                    {"name": f.name, "sha256": f.sha256, "count": f.count, "bytes": f.bytes}
                    for f in released
                ],
                "k_anonymity": run.k_report,
                "excluded_subjects": excluded_subjects,
                "excluded_resources": excluded_resources,
            },
        )
        manifest = {
            "transactionTime": job.transaction_time.astimezone(UTC).isoformat(),
            "request": run.request.url,
            "requiresAccessToken": True,
            "output": [{"type": f.type, "name": f.name, "count": f.count} for f in files],
            "error": [],
            # Bulk Data 2.0 reserves `extension` in the manifest for server-specific content.
            "extension": {
                "policyVersion": POLICY_VERSION,
                "study": study.id,
                "kAnonymity": run.k_report,
                "excludedSubjects": excluded_subjects,
                "excludedResources": excluded_resources,
                "deidentification": {
                    "droppedElements": dict(sorted(run.dropped.items())),
                    "droppedExtensions": dict(sorted(run.dropped_extensions.items())),
                    "unknownExtensions": dict(sorted(run.unknown_extensions.items())),
                },
                "files": [{"name": f.name, "sha256": f.sha256} for f in released],
                "csv": (
                    [{"type": "Observation", "name": csv_file.name, "count": csv_file.count}]
                    if csv_file
                    else []
                ),
            },
        }
        if not await zone.db.exports.finish(job.id, orjson.dumps(manifest)):
            raise JobStopped  # cancelled (or expired) while the release was being written
        event(
            log,
            "export.completed",
            zone=zone.name,
            study=study.id,
            job=job.id,
            resources=run.resources,
            suppressed=run.k_report["suppressed"],
        )
