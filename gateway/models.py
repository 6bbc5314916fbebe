"""Vendor-neutral types that flow along the ingest path.

    adapter.parse   -> CandidateReading | ParseRejection     (one per reading in the payload)
    normalise       -> Reading | Rejection                   (UCUM units, aware times, ranges)
    resolve subject -> SubjectPseudonym via the blind index   (storage + privacy)
    fhir.observation-> ObservationRow                         (JSON built from tables)
    storage         -> ReadingOutcome                         (created / updated / duplicate)

Everything here is value data, never changed after construction (most classes are frozen; the
hot-path ones below say why they are not); no I/O and no key material.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

# _HOT_PATH_MODELS: CandidateReading, Reading, MeasuredValue, Quantity, DeviceInfo and
# ObservationRow are made once or more per reading on the ingest path. A frozen dataclass's
# generated __init__ sets each field through object.__setattr__, about five times the cost of a
# plain one; these six were 7.6 % of the gateway's batch-ingest samples (BENCHMARKS.md). They are
# declared without `frozen` but are values all the same: nothing assigns to their fields after
# construction (`dataclasses.replace` makes a new one), and they hash by value as before.


@dataclass(frozen=True, slots=True)
class Identifier:
    """An identifier as the clinic enrolled it (MRN, a wearable account id, ...)."""

    system: str
    value: str


@dataclass(slots=True, unsafe_hash=True)  # hot path: see _HOT_PATH_MODELS
class DeviceInfo:
    id: str
    model: str | None = None
    manufacturer: str | None = None


@dataclass(slots=True, unsafe_hash=True)  # hot path: see _HOT_PATH_MODELS
class Quantity:
    """A value in the unit the payload used (converted to UCUM by normalise)."""

    value: float
    unit: str


# --- measure table rows (the table itself lives in gateway.measures.table) -------------------


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class ValueRange:
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class UnitConversion:
    """canonical = value * factor + offset."""

    factor: float
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """One measured quantity of a measure: "value" for single-valued measures, or a panel
    component such as "systolic"."""

    name: str
    codings: tuple[Coding, ...]  # LOINC first, then IEEE 11073 MDC where one exists
    ucum: str  # canonical UCUM code emitted in valueQuantity.code
    unit_display: str  # valueQuantity.unit
    conversions: Mapping[str, UnitConversion]  # accepted input unit -> conversion to `ucum`
    hard: ValueRange  # outside: rejected
    soft: ValueRange | None = None  # outside: stored, flagged with an interpretation
    required: bool = True


@dataclass(frozen=True, slots=True)
class Measure:
    name: str  # the gateway's measure type, e.g. "heart-rate"; the `type` of a native reading
    category: str  # observation-category code: "vital-signs", "activity" or "laboratory"
    codings: tuple[Coding, ...]  # Observation.code; LOINC first
    components: tuple[ComponentSpec, ...]
    panel: bool = False  # True: values go to Observation.component, not valueQuantity
    interval: bool = False  # True: needs start and end (effectivePeriod), e.g. steps

    @property
    def loinc(self) -> str:
        return self.codings[0].code


# --- what adapters produce -------------------------------------------------------------------


@dataclass(slots=True, unsafe_hash=True)  # hot path: see _HOT_PATH_MODELS
class CandidateReading:
    """What an adapter makes of one reading in a vendor payload, before any validation."""

    subject: Identifier
    device: DeviceInfo
    measure: str  # measure type name; unknown names are rejected by normalise
    quantities: Mapping[str, Quantity]  # "value", or component names for panels
    start: datetime  # device time; naive when the payload carried no offset
    end: datetime | None = None  # interval measures only
    vendor_record_id: str | None = None
    vendor_time: datetime | None = None  # when the vendor's server recorded it, if given
    offset_assumed: bool = False  # the format defines "no offset" as UTC and none was given
    declared_zone: str | None = None  # the home zone the sender says the subject has
    # An aggregate over [start, end] rather than a raw reading, e.g. "average", "maximum"
    # (Open mHealth descriptive_statistic); mapped to an Observation with effectivePeriod.
    statistic: str | None = None
    # The vendor's identity of the record, stable across edits and unique per reading (HealthKit
    # sample uuid, Withings grpid + meastype, Health Connect clientRecordId). When set it replaces
    # device and time in the dedup key, so an edited record keeps its Observation id.
    record_key: str | None = None
    # The vendor's revision of that record (Health Connect clientRecordVersion): a higher one
    # replaces the stored value, which is kept as history. None: the record is never revised.
    record_version: int | None = None


@dataclass(frozen=True, slots=True)
class ParseRejection:
    """An adapter could read the item but it cannot become a reading."""

    code: RejectionCode
    message: str


ParsedItem = CandidateReading | ParseRejection


# --- validated readings ----------------------------------------------------------------------


class Interpretation(StrEnum):
    """HL7 v3 ObservationInterpretation codes used for soft-range flags."""

    LOW = "L"
    HIGH = "H"


@dataclass(slots=True, unsafe_hash=True)  # hot path: see _HOT_PATH_MODELS
class MeasuredValue:
    spec: ComponentSpec
    value: float  # in spec.ucum
    interpretation: Interpretation | None = None


@dataclass(slots=True, unsafe_hash=True)  # hot path: see _HOT_PATH_MODELS
class Reading:
    """A validated reading: known measure, UCUM units, timezone-aware times."""

    subject: Identifier
    device: DeviceInfo
    measure: Measure
    values: tuple[MeasuredValue, ...]  # in the order of measure.components
    start: datetime  # aware, with the device's own UTC offset
    end: datetime | None
    vendor_record_id: str | None = None
    vendor_time: datetime | None = None
    offset_assumed: bool = False
    declared_zone: str | None = None
    statistic: str | None = None
    record_key: str | None = None  # see CandidateReading
    record_version: int | None = None


class RejectionCode(StrEnum):
    """Stable codes of per-reading rejections; clients may branch on them."""

    INVALID_READING = "invalid-reading"  # the item is not the documented shape
    UNKNOWN_SUBJECT = "unknown-subject"
    UNSUPPORTED_TYPE = "unsupported-type"
    MISSING_COMPONENT = "missing-component"
    UNKNOWN_COMPONENT = "unknown-component"
    UNIT_NOT_CONVERTIBLE = "unit-not-convertible"
    OUT_OF_RANGE = "out-of-range"
    NOT_A_NUMBER = "not-a-number"
    MISSING_OFFSET = "missing-offset"
    FUTURE_TIMESTAMP = "future-timestamp"
    INVALID_INTERVAL = "invalid-interval"
    SYSTOLIC_NOT_ABOVE_DIASTOLIC = "systolic-not-above-diastolic"
    WRONG_ZONE = "wrong-zone"
    AMBIGUOUS_OWNER = "ambiguous-owner"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one reading was not stored. `message` never contains identifiers or values."""

    code: RejectionCode
    message: str


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"  # a higher version of a stored record replaced it; the old one is history
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ReadingOutcome:
    index: int
    outcome: Outcome
    observation_id: str | None = None
    rejection: Rejection | None = None


# --- request context and stored rows ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestContext:
    zone: str  # the zone of the vendor's API key
    vendor: str  # the vendor's registered name (never from the payload)
    source_format: str  # "native", "withings", ...
    format_version: str
    received_at: datetime  # aware UTC
    request_id: str


@dataclass(slots=True, unsafe_hash=True)  # hot path: see _HOT_PATH_MODELS
class ObservationRow:
    """One FHIR Observation ready for the subject's zone database."""

    id: str
    dedup_key: str
    subject: str  # zone pseudonym
    device: str  # device pseudonym
    code: str  # primary LOINC code
    effective_start: datetime
    effective_end: datetime | None
    issued: datetime
    source_format: str
    resource: bytes  # FHIR JSON
    version: int | None = None  # the vendor's record version; None: unversioned (first one wins)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected reading as kept for operators: codes and counts, no identifiers or values."""

    request_id: str
    vendor: str
    source_format: str
    item_index: int
    code: RejectionCode
    reason: str


class Sex(StrEnum):
    """FHIR administrative-gender."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Consent:
    research: bool = False
    cross_border: bool = False


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What a clinic supplies to enrol a subject. Identity fields are encrypted at rest."""

    zone: str
    site: str
    identifiers: tuple[Identifier, ...]
    birth_date: date | None
    sex: Sex
    consent: Consent = field(default_factory=Consent)


@dataclass(frozen=True, slots=True)
class ZoneSubject:
    """A subject pseudonym as this zone's own database returned it: a subject the zone holds (or
    held, for an erased one). The audit log's subject field accepts only this type, so
    what a client typed (an MRN, another zone's pseudonym) can never be written there. Only
    gateway/storage makes them (tests/test_leaks.py checks the source)."""

    pseudonym: str
