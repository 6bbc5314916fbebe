"""Shared inputs of the de-identification tests: key rings, a study policy, and stored
Observations built by the real mapping (gateway.fhir.build_observation) with canary strings."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from gateway.deid import DeidPolicy, TimestampResolution
from gateway.fhir import build_observation
from gateway.measures import MEASURES
from gateway.measures.table import LOINC
from gateway.models import (
    DeviceInfo,
    Identifier,
    IngestContext,
    Interpretation,
    Measure,
    MeasuredValue,
    Reading,
)
from gateway.privacy import KeyPurpose, ZoneKeyRing
from gateway.privacy.deid_keys import study_pseudonym, study_resource_id


def fixed_ring(seed: int = 0) -> ZoneKeyRing:
    """A key ring with fixed keys, so statistical tests are deterministic (they cannot flake),
    whatever the order of the purposes."""
    keys = {p: {1: hashlib.sha256(f"test-key/{seed}/{p}".encode()).digest()} for p in KeyPurpose}
    return ZoneKeyRing(zone="cn", keys=keys, active=dict.fromkeys(KeyPurpose, 1))


RING = fixed_ring()
STUDY = "study-hypertension-2026"
RECIPIENT = "uni-research-team"

# Strings that must never reach an extract.
SUBJECT_SYSTEM_CANARY = "urn:oid:1.2.156.112604.1.2.1"
SUBJECT_CANARY = "MRN-CANARY-55501"
DEVICE_CANARY = "SN-CANARY-77702"
RECORD_CANARY = "REC-CANARY-99903"
MODEL_CANARY = "Watch6,2"
MANUFACTURER_CANARY = "Acme-Canary-Inc"
VENDOR_CANARY = "vendor-canary"
REQUEST_CANARY = "req-canary-31337"
OBSERVATION_ID = "o1-abcdefghijklmnopqrstuvwxyz234567"
ZONE_SUBJECT = "s1-77665544332222aabbccddeeffgghhii"
DEVICE_PSEUDONYM = "d1-qqrrsstt223344556677uuvvwwxxyyzz"
CANARIES = (
    SUBJECT_SYSTEM_CANARY,
    SUBJECT_CANARY,
    DEVICE_CANARY,
    RECORD_CANARY,
    MODEL_CANARY,
    MANUFACTURER_CANARY,
    VENDOR_CANARY,
    REQUEST_CANARY,
    OBSERVATION_ID,
    ZONE_SUBJECT,
    DEVICE_PSEUDONYM,
    "+08:00",  # the device's UTC offset (geography)
    "+00:00",
    "2026-11-30",  # the real calendar date of the reading and of its receipt
)

SHANGHAI = timezone(timedelta(hours=8))
TAKEN = datetime(2026, 11, 30, 8, 0, 15, tzinfo=SHANGHAI)
RECEIVED = datetime(2026, 11, 30, 0, 0, 7, 250000, tzinfo=UTC)
CTX = IngestContext(
    zone="cn",
    vendor=VENDOR_CANARY,
    source_format="native",
    format_version="1",
    received_at=RECEIVED,
    request_id=REQUEST_CANARY,
)

POLICY = DeidPolicy(
    date_shift_bound=timedelta(days=365),
    allowed_codes=frozenset(m.loinc for m in MEASURES.values()),
    timestamp_resolution=TimestampResolution.SECOND,
    k=5,
)
STUDY_SUBJECT = study_pseudonym(RING, STUDY, RECIPIENT, ZONE_SUBJECT)
SHIFT = timedelta(days=-123)


def study_id_of(stored_id: str) -> str:
    return study_resource_id(RING, STUDY, RECIPIENT, stored_id)


def reading_of(
    measure: Measure,
    *,
    start: datetime = TAKEN,
    end: datetime | None = None,
    statistic: str | None = None,
    offset_assumed: bool = False,
    record_version: int | None = None,
    flag: Interpretation | None = None,
) -> Reading:
    values = tuple(
        MeasuredValue(spec, round((spec.hard.low + spec.hard.high) / 2, 1), flag)
        for spec in measure.components
    )
    if measure.interval and end is None:
        end = start + timedelta(hours=1)
    return Reading(
        subject=Identifier(SUBJECT_SYSTEM_CANARY, SUBJECT_CANARY),
        device=DeviceInfo(DEVICE_CANARY, MODEL_CANARY, MANUFACTURER_CANARY),
        measure=measure,
        values=values,
        start=start,
        end=end,
        vendor_record_id=RECORD_CANARY,
        offset_assumed=offset_assumed,
        statistic=statistic,
        record_key=RECORD_CANARY,
        record_version=record_version,
    )


def stored(reading: Reading) -> dict[str, Any]:
    """The Observation as the gateway stores it."""
    row = build_observation(
        reading,
        observation_id=OBSERVATION_ID,
        subject=ZONE_SUBJECT,
        device=DEVICE_PSEUDONYM,
        ctx=CTX,
    )
    resource: dict[str, Any] = orjson.loads(row.resource)
    return resource


def every_kind() -> list[tuple[str, dict[str, Any]]]:
    """One stored Observation of each measure, raw and as a period, plus aggregates and versioned,
    offset-assumed and flagged variants."""
    cases: list[tuple[str, dict[str, Any]]] = []
    # Studies are approved for LOINC codes; a measure without one (glucose of unstated specimen)
    # is never released (tests/deid/test_observation.py checks that it is left out).
    for measure in (m for m in MEASURES.values() if m.codings[0].system == LOINC):
        cases.append((f"{measure.name}-instant", stored(reading_of(measure))))
        cases.append(
            (
                f"{measure.name}-period",
                stored(reading_of(measure, end=TAKEN + timedelta(minutes=30))),
            )
        )
    heart_rate = MEASURES["heart-rate"]
    cases.append(
        (
            "heart-rate-maximum-assumed-offset",
            stored(
                reading_of(
                    heart_rate,
                    start=TAKEN.replace(tzinfo=UTC),
                    end=TAKEN.replace(tzinfo=UTC) + timedelta(days=1),
                    statistic="maximum",
                    offset_assumed=True,
                )
            ),
        )
    )
    cases.append(("heart-rate-versioned", stored(reading_of(heart_rate, record_version=3))))
    cases.append(
        (
            "blood-pressure-flagged",
            stored(reading_of(MEASURES["blood-pressure"], flag=Interpretation.HIGH)),
        )
    )
    cases.append(("heart-rate-flagged", stored(reading_of(heart_rate, flag=Interpretation.LOW))))
    return cases
