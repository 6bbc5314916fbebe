"""HealthKit samples as JSON, posted by a bridge app on the phone (version 1).

Contract: schemas/healthkit-bridge.schema.json. `application/json`, at most `max_readings`
samples:

    {"samples": [
      {"type": "HKQuantityTypeIdentifierHeartRate",
       "quantity": 72,                    # or "value"; exactly one of the two
       "unit": "count/min",               # HKUnit unit string, as HKUnit.unitString gives it
       "startDate": "2020-09-01T08:01:10+02:00", "endDate": "2020-09-01T08:01:10+02:00",
       "uuid": "…",                       # optional: HKObject.uuid, the record key (dedup)
       "sourceName": "Apple Watch",       # optional: HKSource.name
       "device": {"name", "model", "manufacturer", "hardwareVersion", "localIdentifier",
                  "udiDeviceIdentifier"},  # optional, every field optional: HKDevice
       "subject": {"system": "…", "value": "…"},   # an identifier the clinic enrolled
       "metadata": {…}},                  # optional, ignored
      {"type": "HKCorrelationTypeIdentifierBloodPressure",
       "objects": [{"type": "HKQuantityTypeIdentifierBloodPressureSystolic",
                    "quantity": 125, "unit": "mmHg"},
                   {"type": "HKQuantityTypeIdentifierBloodPressureDiastolic",
                    "quantity": 74, "unit": "mmHg"}],
       "startDate": …, "endDate": …, "uuid": …, "sourceName": …, "device": …, "subject": …}]}

Samples of a type not in `codes.QUANTITY_TYPES`, and blood-pressure members outside a
correlation, are `unsupported-type` outcomes. The sample's `uuid` (a correlation's own uuid for
blood pressure) is the record key: HealthKit objects are immutable and their uuid unique, so two
samples at one instant are two readings and a re-posted uuid is a duplicate. Samples without a
uuid fall back to the gateway's key of (vendor, device, subject, measure, times).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from gateway.adapters.base import check_count
from gateway.adapters.healthkit.codes import (
    BLOOD_PRESSURE_COMPONENTS,
    BLOOD_PRESSURE_CORRELATION,
    BLOOD_PRESSURE_MEASURE,
    BLOOD_PRESSURE_UNITS,
    QUANTITY_TYPES,
    UnitMapping,
)
from gateway.adapters.healthkit.parse import (
    device_id,
    sample_measure,
    to_quantity,
    unit_message,
    unsupported_type_message,
)
from gateway.errors import BadRequest
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    RejectionCode,
)

MAX_ID_LENGTH = 256
DEVICE_FALLBACK = "healthkit-unknown-source"

# ISO 8601 / RFC 3339 date-time; the offset is optional here so that a missing one becomes
# normalise's `missing-offset` outcome rather than a shape error.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)
_SAMPLE_FIELDS = frozenset(
    {
        "type", "quantity", "value", "unit", "startDate", "endDate", "uuid", "sourceName",
        "sourceVersion", "device", "subject", "metadata", "objects",
    }
)  # fmt: skip
_DEVICE_FIELDS = frozenset(
    {
        "name", "model", "manufacturer", "hardwareVersion", "firmwareVersion", "softwareVersion",
        "localIdentifier", "udiDeviceIdentifier",
    }
)  # fmt: skip
_SUBJECT_FIELDS = frozenset({"system", "value"})


def parse_bridge(document: object, *, max_readings: int) -> list[ParsedItem]:
    """`{"samples": [...]}`, decoded, as one item per sample."""
    if not isinstance(document, dict) or "samples" not in document:
        raise BadRequest('body must be a JSON object {"samples": [...]}')
    samples = document["samples"]
    if not isinstance(samples, list) or not samples:
        raise BadRequest("samples must be a non-empty array")
    check_count(len(samples), max_readings, "samples")
    return [_parse_sample(raw, f"samples[{index}]") for index, raw in enumerate(samples)]


class _Invalid(Exception):
    def __init__(self, message: str, code: RejectionCode = RejectionCode.INVALID_READING) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _parse_sample(raw: object, path: str) -> ParsedItem:
    try:
        return _sample(raw, path)
    except _Invalid as invalid:
        return ParseRejection(invalid.code, invalid.message)


def _sample(raw: object, path: str) -> CandidateReading:
    sample = _object(raw, path, _SAMPLE_FIELDS)
    kind = _string(sample.get("type"), f"{path}.type")
    if kind == BLOOD_PRESSURE_CORRELATION:
        measure, quantities = BLOOD_PRESSURE_MEASURE, _blood_pressure(sample, path)
    elif (mapping := QUANTITY_TYPES.get(kind)) is not None:
        if "objects" in sample:
            raise _Invalid(f"{path} is a quantity sample and may not have objects")
        measure, quantities = (
            mapping.measure,
            {"value": _quantity(sample, path, kind, mapping.units)},
        )
    elif kind in BLOOD_PRESSURE_COMPONENTS:
        raise _Invalid(
            f"{path}: blood pressure is accepted only as an {BLOOD_PRESSURE_CORRELATION} "
            "correlation of a systolic and a diastolic sample",
            RejectionCode.UNSUPPORTED_TYPE,
        )
    else:
        raise _Invalid(f"{path}: {unsupported_type_message(kind)}", RejectionCode.UNSUPPORTED_TYPE)

    subject = _object(sample.get("subject"), f"{path}.subject", _SUBJECT_FIELDS)
    start = _timestamp(sample.get("startDate"), f"{path}.startDate")
    end = _timestamp(sample.get("endDate"), f"{path}.endDate")
    source = _optional_string(sample.get("sourceName"), f"{path}.sourceName")
    uuid = _optional_string(sample.get("uuid"), f"{path}.uuid")
    device = _device(sample.get("device"), f"{path}.device", source)
    return CandidateReading(
        subject=Identifier(
            _string(subject.get("system"), f"{path}.subject.system"),
            _string(subject.get("value"), f"{path}.subject.value"),
        ),
        device=device,
        measure=sample_measure(measure, device),
        quantities=quantities,
        start=start,
        # A point sample has endDate == startDate; the measure table decides what needs a period.
        end=None if end == start else end,
        vendor_record_id=uuid,
        # https://developer.apple.com/documentation/healthkit/hkobject/uuid
        record_key=uuid,
    )


def _blood_pressure(sample: Mapping[str, object], path: str) -> dict[str, Quantity]:
    objects = sample.get("objects")
    if not isinstance(objects, list) or not objects:
        raise _Invalid(f"{path}.objects must be a non-empty array of samples")
    if "quantity" in sample or "value" in sample or "unit" in sample:
        raise _Invalid(f"{path} is a correlation: its values belong in objects")
    quantities: dict[str, Quantity] = {}
    for index, raw in enumerate(objects):
        member_path = f"{path}.objects[{index}]"
        member = _object(raw, member_path, _SAMPLE_FIELDS - {"objects"})
        kind = _string(member.get("type"), f"{member_path}.type")
        component = BLOOD_PRESSURE_COMPONENTS.get(kind)
        if component is None:
            raise _Invalid(
                f"{member_path}: a blood-pressure correlation holds only systolic and diastolic "
                "samples",
                RejectionCode.UNKNOWN_COMPONENT,
            )
        if component in quantities:
            raise _Invalid(f"{member_path}: the correlation has more than one {component} sample")
        quantities[component] = _quantity(member, member_path, kind, BLOOD_PRESSURE_UNITS)
    return quantities


def _quantity(
    sample: Mapping[str, object], path: str, kind: str, units: Mapping[str, UnitMapping]
) -> Quantity:
    if ("quantity" in sample) == ("value" in sample):
        raise _Invalid(f"{path} must have exactly one of quantity and value")
    key = "quantity" if "quantity" in sample else "value"
    value = sample[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{path}.{key} must be a JSON number")
    unit = _string(sample.get("unit"), f"{path}.unit")
    quantity = to_quantity(float(value), unit, units)
    if quantity is None:
        raise _Invalid(f"{path}: {unit_message(kind, units)}", RejectionCode.UNIT_NOT_CONVERTIBLE)
    return quantity


def _device(raw: object, path: str, source: str | None) -> DeviceInfo:
    device = {} if raw is None else _object(raw, path, _DEVICE_FIELDS)
    fields = {key: _string(value, f"{path}.{key}") for key, value in device.items()}
    hardware = fields.get("hardwareVersion")
    return DeviceInfo(
        id=device_id(
            local_identifier=fields.get("localIdentifier"),
            udi=fields.get("udiDeviceIdentifier"),
            source_name=source or fields.get("name"),
            hardware=hardware,
            fallback=DEVICE_FALLBACK,
        ),
        model=hardware or fields.get("model"),
        manufacturer=fields.get("manufacturer"),
    )


def _object(raw: object, path: str, fields: frozenset[str]) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise _Invalid(f"{path} must be a JSON object")
    if not raw.keys() <= fields:
        raise _Invalid(f"{path} may only have the fields {', '.join(sorted(fields))}")
    return raw


def _string(raw: object, path: str) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_ID_LENGTH:
        raise _Invalid(f"{path} must be a string of 1-{MAX_ID_LENGTH} characters")
    return raw


def _optional_string(raw: object, path: str) -> str | None:
    return None if raw is None else _string(raw, path)


def _timestamp(raw: object, path: str) -> datetime:
    if isinstance(raw, str) and _TIMESTAMP.fullmatch(raw):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    raise _Invalid(
        f"{path} must be an ISO 8601 date-time with a UTC offset, e.g. 2020-09-01T08:01:10+02:00"
    )
