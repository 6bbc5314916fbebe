"""Android Health Connect records as JSON, version 1 (contract: schemas/healthconnect.schema.json).

Body: `{"subject": {"system", "value"}, "records": [...]}`. Health Connect has no account id, so
the uploading app names the subject with an identifier the clinic enrolled (any system, e.g. the
clinic's MRN system); it applies to every record of the body.

Two record shapes are read, told apart per record:
  - plain (androidx.health.connect.client.records): discriminator `recordType` or `type`
    ("HeartRate" or "HeartRateRecord"), unit objects as SDK getters (`{"inKilograms": 70.2}`),
    `metadata.dataOrigin.packageName`;
  - the Capacitor plugin's JSON (kiwi-health/capacitor-health-connect): `type` discriminator,
    unit objects `{"unit": "kilogram", "value": 70.2}`, `metadata.dataOrigin` as a string.

Times are instants; `zoneOffset` / `startZoneOffset` / `endZoneOffset` ("+08:00", "Z" or
seconds) say the device's local offset, and each instant is re-expressed at that offset so the
stored time keeps it. A missing offset means UTC with `offset_assumed`. One HeartRate record with
N samples gives N readings, at the record's `startZoneOffset`.

Record identity: `metadata.clientRecordId` (scoped by the origin package: Health Connect keeps it
unique per app and record type) with `metadata.clientRecordVersion` (0 when absent, the SDK's
default) is the record key and version, so a higher version replaces the stored value and the old
one is kept as history; without a clientRecordId, `metadata.id` (Health Connect's own uuid) is the
key, unversioned. HeartRate samples add `#<sample index>`. A record with neither is keyed by
device and time.

Messages name the JSON path and what it must be, never the value found there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeGuard, cast

from gateway.adapters.healthconnect.codes import (
    GLUCOSE_SPECIMENS,
    KNOWN_UNSUPPORTED,
    REFUSED,
    SUPPORTED,
    IntervalRecord,
    PanelRecord,
    PointRecord,
    SeriesRecord,
    Units,
)
from gateway.adapters.shapes import one_of
from gateway.errors import BadRequest
from gateway.measures.specimen import GLUCOSE_MEASURES, Specimen, glucose_measure
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
MAX_NAME_LENGTH = 64
UNKNOWN_DEVICE = "healthconnect-unknown"

# java.time.Instant.toString(): always UTC "Z"; an explicit offset is accepted too (the plugin
# writes "+00:00"). Up to nanoseconds; Python keeps microseconds.
_INSTANT = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
# java.time.ZoneOffset.getId(): "Z", "+hh:mm" or "+hh:mm:ss"; ZoneOffset.of also takes "+hh".
_ZONE_OFFSET = re.compile(r"([+-])([0-9]{2})(?::([0-9]{2})(?::([0-9]{2}))?)?")
# ZoneOffset's own bounds; normalise narrows them to FHIR's -14:00..+14:00 whole minutes.
_MAX_ZONE_OFFSET_SECONDS = 18 * 3600

_TOP_LEVEL_FIELDS = frozenset({"subject", "records"})
_SUBJECT_FIELDS = frozenset({"system", "value"})


def parse_records(document: object) -> Iterator[ParsedItem]:
    """`{"subject", "records"}` as one item per reading (per sample for series records)."""
    if not isinstance(document, dict) or not document.keys() <= _TOP_LEVEL_FIELDS:
        raise BadRequest('body must be a JSON object {"subject": {...}, "records": [...]}')
    subject = _subject(document.get("subject"))
    records = document.get("records")
    if not isinstance(records, list) or not records:
        raise BadRequest("records must be a non-empty array")
    return (
        item
        for index, raw in enumerate(records)
        for item in _record_items(raw, f"records[{index}]", subject)
    )


def _subject(raw: object) -> Identifier:
    # The one subject of the body: a bad one makes every record unusable, so the body is refused.
    if not isinstance(raw, dict) or raw.keys() != _SUBJECT_FIELDS:
        raise BadRequest('subject must be a JSON object {"system": ..., "value": ...}')
    system, value = raw["system"], raw["value"]
    if not _is_text(system, MAX_ID_LENGTH) or not _is_text(value, MAX_ID_LENGTH):
        raise BadRequest(f"subject.system and subject.value must be strings of 1-{MAX_ID_LENGTH}")
    return Identifier(system=system, value=value)


class _InvalidShape(Exception):
    def __init__(self, path: str, requirement: str) -> None:
        super().__init__(f"{path} {requirement}")
        self.message = f"{path} {requirement}"


class _Refused(Exception):
    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Common:
    """What every reading of one record shares."""

    subject: Identifier
    device: DeviceInfo
    record_id: str | None
    modified: datetime | None
    record_key: str | None = None
    record_version: int | None = None


def _record_items(raw: object, path: str, subject: Identifier) -> list[ParsedItem]:
    try:
        record = _object(raw, path)
        kind = _kind(record, path)
        common = _common(record, path, subject)
        if isinstance(kind, SeriesRecord):
            return _series(record, path, kind, common)
        if isinstance(kind, IntervalRecord):
            return [_interval(record, path, kind, common)]
        return [_point(record, path, kind, common)]
    except _InvalidShape as invalid:
        return [ParseRejection(RejectionCode.INVALID_READING, invalid.message)]
    except _Refused as refused:
        return [ParseRejection(refused.code, f"{path}: {refused.message}")]


def _kind(
    record: Mapping[str, object], path: str
) -> PointRecord | PanelRecord | IntervalRecord | SeriesRecord:
    # A list, not a set: the values may be any JSON, arrays and objects (unhashable) included.
    names = [record[key] for key in ("recordType", "type") if key in record]
    if not names or any(name != names[0] for name in names):
        raise _InvalidShape(path, "must have one record type in recordType or type")
    raw = names[0]
    if not _is_text(raw, MAX_NAME_LENGTH):
        raise _InvalidShape(f"{path}.type", f"must be a string of 1-{MAX_NAME_LENGTH} characters")
    name = raw.removesuffix("Record")
    kind = SUPPORTED.get(name)
    if kind is not None:
        return kind
    if name in REFUSED:
        raise _Refused(RejectionCode.UNSUPPORTED_TYPE, REFUSED[name])
    supported = ", ".join(sorted(SUPPORTED))
    if name in KNOWN_UNSUPPORTED:
        message = f"Health Connect {name} records are not supported; supported: {supported}"
    else:
        message = f"type is not a supported Health Connect record type; supported: {supported}"
    raise _Refused(RejectionCode.UNSUPPORTED_TYPE, message)


def _common(record: Mapping[str, object], path: str, subject: Identifier) -> _Common:
    if record.get("metadata") is None:
        return _Common(subject, DeviceInfo(UNKNOWN_DEVICE), None, None)
    meta_path = f"{path}.metadata"
    metadata = _object(record["metadata"], meta_path)
    version = metadata.get("clientRecordVersion")
    # Stored as a PostgreSQL bigint, like the SDK's Long.
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**63
    ):
        raise _InvalidShape(f"{meta_path}.clientRecordVersion", "must be an integer >= 0")
    client_id = _optional_string(metadata.get("clientRecordId"), f"{meta_path}.clientRecordId")
    health_connect_id = _optional_string(metadata.get("id"), f"{meta_path}.id")
    modified = None
    if metadata.get("lastModifiedTime") is not None:
        modified = _instant(metadata["lastModifiedTime"], f"{meta_path}.lastModifiedTime")
    device = _device(metadata, meta_path)
    if client_id is not None:
        # Metadata.clientRecordId is unique per client (app) and record type, and
        # clientRecordVersion (default 0) orders its revisions: https://developer.android.com/
        # reference/kotlin/androidx/health/connect/client/records/metadata/Metadata
        origin = _origin(metadata, meta_path) or ""
        return _Common(subject, device, client_id, modified, f"{origin}/{client_id}", version or 0)
    return _Common(subject, device, health_connect_id, modified, health_connect_id)


def _origin(metadata: Mapping[str, object], path: str) -> str | None:
    origin = metadata.get("dataOrigin")
    if isinstance(origin, dict):  # plain: DataOrigin{packageName}
        return _optional_string(origin.get("packageName"), f"{path}.dataOrigin.packageName")
    return _optional_string(origin, f"{path}.dataOrigin")  # the plugin writes the name itself


def _device(metadata: Mapping[str, object], path: str) -> DeviceInfo:
    package = _origin(metadata, path)
    model = manufacturer = None
    if metadata.get("device") is not None:
        device = _object(metadata["device"], f"{path}.device")
        model = _optional_string(device.get("model"), f"{path}.device.model")
        manufacturer = _optional_string(device.get("manufacturer"), f"{path}.device.manufacturer")
    # The same watch feeding two apps is two sources: the app is part of the device identity.
    parts = [part for part in (model, manufacturer, package) if part]
    return DeviceInfo(
        id="/".join(parts) if parts else UNKNOWN_DEVICE, model=model, manufacturer=manufacturer
    )


def _point(
    record: Mapping[str, object], path: str, kind: PointRecord | PanelRecord, common: _Common
) -> CandidateReading:
    time, assumed = _local(record, "time", "zoneOffset", path)
    quantities: dict[str, Quantity]
    if isinstance(kind, PanelRecord):
        quantities = {
            component: _quantity(record.get(field), f"{path}.{field}", kind.units, None)
            for component, field in kind.components.items()
        }
    else:
        quantities = {
            "value": _quantity(
                record.get(kind.field), f"{path}.{kind.field}", kind.units, kind.bare_unit
            )
        }
    measure = kind.measure
    if measure == GLUCOSE_MEASURES[Specimen.UNKNOWN]:
        measure = glucose_measure(_specimen(record, path), common.device)
    return _reading(common, measure, quantities, time, offset_assumed=assumed)


def _interval(
    record: Mapping[str, object], path: str, kind: IntervalRecord, common: _Common
) -> CandidateReading:
    start, start_assumed = _local(record, "startTime", "startZoneOffset", path)
    end, end_assumed = _local(record, "endTime", "endZoneOffset", path)
    value = _quantity(record.get(kind.field), f"{path}.{kind.field}", None, kind.bare_unit)
    return _reading(
        common,
        kind.measure,
        {"value": value},
        start,
        end=end,
        offset_assumed=start_assumed or end_assumed,
    )


def _series(
    record: Mapping[str, object], path: str, kind: SeriesRecord, common: _Common
) -> list[ParsedItem]:
    start, assumed = _local(record, "startTime", "startZoneOffset", path)
    end, _ = _local(record, "endTime", "endZoneOffset", path)
    samples = record.get("samples")
    if not isinstance(samples, list) or not samples:
        raise _InvalidShape(f"{path}.samples", "must be a non-empty array")
    items: list[ParsedItem] = []
    for index, raw in enumerate(samples):
        sample_path = f"{path}.samples[{index}]"
        try:
            sample = _object(raw, sample_path)
            # Samples are instants too; they take the record's start offset (the SDK keeps none
            # of their own).
            time = _instant(sample.get("time"), f"{sample_path}.time").astimezone(start.tzinfo)
            if not start <= time <= end:
                raise _InvalidShape(f"{sample_path}.time", "must lie within startTime..endTime")
            value = _quantity(
                sample.get(kind.field), f"{sample_path}.{kind.field}", None, kind.bare_unit
            )
            items.append(
                _reading(
                    common,
                    kind.measure,
                    {"value": value},
                    time,
                    offset_assumed=assumed,
                    # One record, many readings: each sample needs a key of its own.
                    sample=index,
                )
            )
        except _InvalidShape as invalid:
            items.append(ParseRejection(RejectionCode.INVALID_READING, invalid.message))
    return items


def _reading(
    common: _Common,
    measure: str,
    quantities: Mapping[str, Quantity],
    start: datetime,
    *,
    end: datetime | None = None,
    offset_assumed: bool,
    sample: int | None = None,
) -> CandidateReading:
    record_key = common.record_key
    if record_key is not None and sample is not None:
        record_key = f"{record_key}#{sample}"
    return CandidateReading(
        subject=common.subject,
        device=common.device,
        measure=measure,
        quantities=quantities,
        start=start,
        end=end,
        vendor_record_id=common.record_id,
        vendor_time=common.modified,
        offset_assumed=offset_assumed,
        record_key=record_key,
        record_version=common.record_version,
    )


def _specimen(record: Mapping[str, object], path: str) -> Specimen:
    source = record.get("specimenSource")
    if source is None:
        source = 0  # the SDK's default, SPECIMEN_SOURCE_UNKNOWN
    if isinstance(source, bool) or not one_of(source, GLUCOSE_SPECIMENS):
        raise _InvalidShape(
            f"{path}.specimenSource", "must be a Health Connect specimen source name or number"
        )
    # one_of checked that `source` is hashable and a key of the table.
    specimen = GLUCOSE_SPECIMENS[cast("str | int", source)]
    if specimen is None:
        raise _Refused(
            RejectionCode.UNSUPPORTED_TYPE,
            "blood glucose is stored only from capillary blood (LOINC 41653-7), interstitial "
            "fluid (CGM, LOINC 99504-3) or an unstated specimen; this specimenSource is not "
            "supported",
        )
    return specimen


# --- values ---------------------------------------------------------------------------------


def _quantity(raw: object, path: str, units: Units | None, bare_unit: str | None) -> Quantity:
    if _is_number(raw) and bare_unit is not None:
        return Quantity(_finite(raw, path), bare_unit)
    if units is None:
        raise _InvalidShape(path, "must be a JSON number")
    holder = _object(raw, path)
    if "unit" in holder:  # the plugin's {"unit": word, "value": n}
        rule = units.words.get(holder["unit"]) if isinstance(holder["unit"], str) else None
        if rule is None:
            raise _Refused(
                RejectionCode.UNIT_NOT_CONVERTIBLE,
                f"{path}.unit is not accepted; accepted: {', '.join(units.words)}",
            )
        number = holder.get("value")
        if not _is_number(number):
            raise _InvalidShape(f"{path}.value", "must be a JSON number")
        value = _finite(number, f"{path}.value")
    else:  # the SDK's getters, {"inKilograms": n}
        found = next((key for key in units.getters if key in holder), None)
        if found is None:
            accepted = ", ".join([*units.getters, "or unit and value"])
            raise _InvalidShape(path, f"must have one of {accepted}")
        rule = units.getters[found]
        number = holder[found]
        if not _is_number(number):
            raise _InvalidShape(f"{path}.{found}", "must be a JSON number")
        value = _finite(number, f"{path}.{found}")
    return Quantity(value * rule.factor if rule.factor != 1.0 else value, rule.ucum)


def _is_number(raw: object) -> TypeGuard[int | float]:
    return not isinstance(raw, bool) and isinstance(raw, int | float)


def _finite(raw: int | float, path: str) -> float:
    try:
        value = float(raw)
    except OverflowError:  # an integer beyond a double
        raise _InvalidShape(path, "must be a finite number") from None
    if not math.isfinite(value):
        raise _InvalidShape(path, "must be a finite number")
    return value


# --- times ----------------------------------------------------------------------------------


def _local(
    record: Mapping[str, object], time_key: str, offset_key: str, path: str
) -> tuple[datetime, bool]:
    """The instant at `time_key` expressed at the offset at `offset_key`; True if assumed UTC."""
    instant = _instant(record.get(time_key), f"{path}.{time_key}")
    offset = record.get(offset_key)
    if offset is None:
        return instant.astimezone(UTC), True
    return instant.astimezone(_zone_offset(offset, f"{path}.{offset_key}")), False


def _instant(raw: object, path: str) -> datetime:
    match = _INSTANT.fullmatch(raw) if isinstance(raw, str) else None
    if match is not None:
        whole, fraction, zone = match.groups()
        micros = (fraction or "").ljust(6, "0")[:6]
        try:
            return datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}")
        except ValueError:
            pass
    raise _InvalidShape(path, "must be an ISO 8601 instant, e.g. 2026-11-30T00:00:00Z")


def _zone_offset(raw: object, path: str) -> timezone:
    seconds: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):  # ZoneOffset.getTotalSeconds()
        seconds = raw
    elif raw == "Z":
        seconds = 0
    elif isinstance(raw, str) and (match := _ZONE_OFFSET.fullmatch(raw)):
        sign, hours, minutes, secs = match.groups()
        minutes, secs = minutes or "0", secs or "0"
        if int(minutes) < 60 and int(secs) < 60:
            total = int(hours) * 3600 + int(minutes) * 60 + int(secs)
            seconds = -total if sign == "-" else total
    if seconds is None or abs(seconds) > _MAX_ZONE_OFFSET_SECONDS:
        raise _InvalidShape(
            path, 'must be a UTC offset such as "+08:00" or "Z", or seconds within +-18 h'
        )
    return timezone(timedelta(seconds=seconds))


# --- shapes ---------------------------------------------------------------------------------


def _object(raw: object, path: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise _InvalidShape(path, "must be a JSON object")
    return raw


def _is_text(raw: object, max_length: int) -> TypeGuard[str]:
    return isinstance(raw, str) and 0 < len(raw) <= max_length


def _optional_string(raw: object, path: str) -> str | None:
    if raw is None:
        return None
    if not _is_text(raw, MAX_ID_LENGTH):
        raise _InvalidShape(path, f"must be a string of 1-{MAX_ID_LENGTH} characters")
    return raw
