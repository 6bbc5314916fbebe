"""Open mHealth / IEEE 1752.1 data points (https://www.openmhealth.org/documentation/).

A request body is one data point `{"header": {...}, "body": {...}}` or a JSON array of them; each
data point is one reading. The header's `schema_id` (namespace, name) picks the mapping (see
`codes.SCHEMAS`: `omh` schemas and IEEE 1752.1 `ieee` schemas, each under its own namespace) and
its `user_id` names the subject: a bare body, as in Open mHealth's own test data, says neither,
so it is refused.

Two header dialects are accepted:
  * Open mHealth header 1.x: `id`, `creation_date_time`, `schema_id`,
    `acquisition_provenance {source_name, modality, ...}`, `user_id`;
  * IEEE 1752.1: `uuid`, `source_creation_date_time`, `schema_id`, `modality`,
    `external_datasheets [{datasheet_type, datasheet_reference}]`, and (required by the gateway,
    optional in the standard) `user_id`.

Subject: `Identifier(OMH_USER_SYSTEM, header.user_id)`; clinics enrol the sender's user id under
that system. Device: `acquisition_provenance.source_name`, else the first external datasheet's
reference, else "omh-unknown-device". `vendor_record_id` is the header `id`/`uuid`.

The header dialect is read from the header's own keys, not from the namespace: Open mHealth
producers send IEEE schemas under an omh header and the reverse.

Open mHealth date-times without an offset are UTC by definition (date-time-1.0: "If a timezone is
not included, the timezone is assumed to be UTC"), so such readings carry `offset_assumed`. An
`ieee` body's date-times are offset date-times: one without an offset is refused `missing-offset`
(`codes.NAMESPACES`).

Items are checked by hand, as in the native format: messages name the JSON path and what it must
be, never the value found there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from gateway.adapters.base import check_count
from gateway.adapters.omh.codes import (
    DESCRIPTIVE_STATISTICS,
    DURATION_SECONDS,
    GLUCOSE_SPECIMENS,
    LOCATION_STATISTICS,
    NAMESPACES,
    OXYGEN_FLOW_UNITS,
    PART_OF_DAY_HOURS,
    QUALIFIERS,
    SCHEMAS,
    SUM_MEASURES,
    SchemaMapping,
)
from gateway.adapters.shapes import RFC3339, at, one_of
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

OMH_USER_SYSTEM = "urn:wearable-gateway:omh:user-id"
UNKNOWN_DEVICE = "omh-unknown-device"

MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 64
MAX_TEXT_LENGTH = 256

# A schema id that looks like one may be named in a rejection message; anything else is not
# echoed (it may be a value or an identifier put in the wrong place).
_SCHEMA_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")

_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # time-interval-1.0 full_date
_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")  # schema-id-1.x version "major.minor"
_MODALITIES = frozenset({"sensed", "self-reported"})  # header-1.x acquisition_provenance.modality

# time-interval-1.0 is a oneOf of exactly these key sets.
_START_END = frozenset({"start_date_time", "end_date_time"})
_START_DURATION = frozenset({"start_date_time", "duration"})
_END_DURATION = frozenset({"end_date_time", "duration"})
_PART_OF_DAY = frozenset({"date", "part_of_day"})


def parse_data_points(document: object, max_readings: int) -> list[ParsedItem]:
    """One data point, or a JSON array of at most `max_readings` data points."""
    if isinstance(document, list):
        if not document:
            raise BadRequest("body must be a non-empty array of data points")
        check_count(len(document), max_readings)
        return [_parse_item(raw, f"[{index}]") for index, raw in enumerate(document)]
    if isinstance(document, dict) and ("header" in document or "body" in document):
        return [_parse_item(document, "")]
    raise BadRequest(
        'body must be an Open mHealth data point {"header": ..., "body": ...} or an array '
        "of them; a bare body carries no schema_id or user_id"
    )


class _Invalid(Exception):
    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _shape(path: str, requirement: str) -> _Invalid:
    return _Invalid(RejectionCode.INVALID_READING, f"{path} {requirement}")


def _parse_item(raw: object, base: str) -> ParsedItem:
    try:
        return _data_point(raw, base)
    except _Invalid as invalid:
        return ParseRejection(invalid.code, invalid.message)


# --- data point and header --------------------------------------------------------------------


def _data_point(raw: object, base: str) -> CandidateReading:
    point = _object(raw, base or "data point")
    header = _object(point.get("header"), at(base, "header"))
    namespace, mapping = _schema(header, at(base, "header.schema_id"))
    record_id, vendor_time, device = _provenance(header, at(base, "header"))
    user_id = _string(header.get("user_id"), at(base, "header.user_id"), MAX_ID_LENGTH)
    body = _object(point.get("body"), at(base, "body"))
    reading = _body(body, mapping, at(base, "body"))
    measure = mapping.measure
    if measure == GLUCOSE_MEASURES[Specimen.UNKNOWN]:
        measure = glucose_measure(reading.specimen, device)
    return CandidateReading(
        subject=Identifier(OMH_USER_SYSTEM, user_id),
        device=device,
        measure=measure,
        quantities=reading.quantities,
        start=reading.start,
        end=reading.end,
        vendor_record_id=record_id,
        vendor_time=vendor_time,
        # A time without an offset is UTC only where the namespace says so; otherwise it stays
        # naive and normalise refuses it `missing-offset`.
        offset_assumed=reading.naive and NAMESPACES[namespace].naive_is_utc,
        statistic=reading.statistic,
    )


def _schema(header: Mapping[str, object], path: str) -> tuple[str, SchemaMapping]:
    schema_id = _object(header.get("schema_id"), path)
    namespace = _string(schema_id.get("namespace"), f"{path}.namespace", MAX_NAME_LENGTH)
    name = _string(schema_id.get("name"), f"{path}.name", MAX_NAME_LENGTH)
    version = schema_id.get("version")
    matched = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if matched is None:
        raise _shape(f"{path}.version", 'must be a string "major.minor"')
    mapping = SCHEMAS.get((namespace, name))
    if mapping is None:
        named = all(_SCHEMA_NAME.fullmatch(part) for part in (namespace, name))
        schema = f"{namespace}:{name}" if named else "a schema"
        raise _Invalid(
            RejectionCode.UNSUPPORTED_TYPE,
            f"{path} names {schema}, which is not supported; supported schemas: "
            + ", ".join(f"{known_namespace}:{known}" for known_namespace, known in SCHEMAS),
        )
    # Minor versions are backward compatible (https://www.openmhealth.org/documentation/
    # #/schema-docs/overview "schema versioning"); majors change the body's shape.
    if int(matched.group(1)) not in mapping.majors:
        majors = ", ".join(f"{major}.x" for major in sorted(mapping.majors))
        raise _Invalid(
            RejectionCode.UNSUPPORTED_TYPE,
            f"{path}.version of {namespace}:{name} is not supported; supported versions: {majors}",
        )
    return namespace, mapping


def _provenance(header: Mapping[str, object], path: str) -> tuple[str, datetime | None, DeviceInfo]:
    if ("id" in header) == ("uuid" in header):
        raise _shape(path, "must have either id (Open mHealth) or uuid (IEEE 1752.1)")
    if "id" in header:
        record_id = _string(header["id"], f"{path}.id", MAX_ID_LENGTH)
        created = _vendor_time(header.get("creation_date_time"), f"{path}.creation_date_time")
        return record_id, created, _omh_device(header.get("acquisition_provenance"), path)
    record_id = _string(header["uuid"], f"{path}.uuid", MAX_ID_LENGTH)
    created_at = header.get("source_creation_date_time")
    source_created = (
        None
        if created_at is None
        else _vendor_time(created_at, f"{path}.source_creation_date_time")
    )
    _modality(header.get("modality"), f"{path}.modality")
    return record_id, source_created, _ieee_device(header.get("external_datasheets"), path)


def _omh_device(raw: object, header_path: str) -> DeviceInfo:
    if raw is None:
        return DeviceInfo(UNKNOWN_DEVICE)
    path = f"{header_path}.acquisition_provenance"
    provenance = _object(raw, path)
    _modality(provenance.get("modality"), f"{path}.modality")
    return DeviceInfo(_string(provenance.get("source_name"), f"{path}.source_name", MAX_ID_LENGTH))


def _ieee_device(raw: object, header_path: str) -> DeviceInfo:
    if raw is None:
        return DeviceInfo(UNKNOWN_DEVICE)
    path = f"{header_path}.external_datasheets"
    if not isinstance(raw, list):
        raise _shape(path, "must be an array")
    references: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        sheet = _object(item, f"{path}[{index}]")
        kind = _string(sheet.get("datasheet_type"), f"{path}[{index}].datasheet_type", 64)
        reference = _string(
            sheet.get("datasheet_reference"), f"{path}[{index}].datasheet_reference", MAX_ID_LENGTH
        )
        references.append((kind, reference))
    if not references:
        return DeviceInfo(UNKNOWN_DEVICE)
    manufacturer = next((ref for kind, ref in references if kind == "manufacturer"), None)
    return DeviceInfo(references[0][1], manufacturer=manufacturer)


def _modality(raw: object, path: str) -> None:
    # Any JSON value may arrive here; only a string can be hashed into the set.
    if raw is not None and not (isinstance(raw, str) and raw in _MODALITIES):
        raise _shape(path, f"must be one of: {', '.join(sorted(_MODALITIES))}")


def _vendor_time(raw: object, path: str) -> datetime:
    moment, naive = _timestamp(raw, path)
    return moment.replace(tzinfo=UTC) if naive else moment


# --- body ---------------------------------------------------------------------------------------


class _Body:
    __slots__ = ("end", "naive", "quantities", "specimen", "start", "statistic")

    def __init__(
        self,
        quantities: dict[str, Quantity],
        start: datetime,
        end: datetime | None,
        naive: bool,
        statistic: str | None,
        *,
        specimen: Specimen,
    ) -> None:
        self.quantities = quantities
        self.start = start
        self.end = end
        self.naive = naive  # a time had no offset
        self.statistic = statistic
        self.specimen = specimen  # what specimen_source says; UNKNOWN when it is absent


def _body(body: Mapping[str, object], mapping: SchemaMapping, path: str) -> _Body:
    for field in mapping.required_text:
        _string(body.get(field), f"{path}.{field}", MAX_TEXT_LENGTH)
    for field in mapping.fields:
        if field in mapping.optional and field not in body:
            raise _Invalid(
                RejectionCode.MISSING_COMPONENT,
                f"{path}.{field} is absent: the data point carries no {mapping.measure} value",
            )
    quantities = {
        component: _quantity(body.get(field), f"{path}.{field}", mapping.units)
        for field, component in mapping.fields.items()
    }
    _qualifiers(body, mapping, path)
    specimen = _specimen(body, path)
    statistic = _statistic(body, mapping, path)
    start, end, naive = _time_frame(body.get("effective_time_frame"), mapping, path)
    if end is None and statistic is not None:
        raise _shape(
            f"{path}.effective_time_frame",
            "must be a time_interval when a descriptive_statistic is given",
        )
    return _Body(quantities, start, end, naive, statistic, specimen=specimen)


def _quantity(raw: object, path: str, units: Mapping[str, str]) -> Quantity:
    holder = _object(raw, path)
    value = holder.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _shape(f"{path}.value", "must be a JSON number")
    unit = _string(holder.get("unit"), f"{path}.unit", MAX_NAME_LENGTH)
    # An Open mHealth unit goes to its UCUM code; any other unit is passed on unchanged so that
    # normalise refuses it with `unit-not-convertible` and the list of accepted units.
    return Quantity(float(value), units.get(unit, unit))


def _qualifiers(body: Mapping[str, object], mapping: SchemaMapping, path: str) -> None:
    for field, allowed in QUALIFIERS.items():
        if field in body and not one_of(body[field], allowed):
            raise _shape(f"{path}.{field}", "must be a value of its Open mHealth value set")
    flow = body.get("supplemental_oxygen_flow_rate")
    if flow is not None:
        flow_path = f"{path}.supplemental_oxygen_flow_rate"
        if _quantity(flow, flow_path, {}).unit not in OXYGEN_FLOW_UNITS:
            raise _shape(f"{flow_path}.unit", f"must be one of: {', '.join(OXYGEN_FLOW_UNITS)}")


def _specimen(body: Mapping[str, object], path: str) -> Specimen:
    raw = body.get("specimen_source")
    if raw is None:
        return Specimen.UNKNOWN
    if not isinstance(raw, str) or raw not in GLUCOSE_SPECIMENS:
        raise _shape(f"{path}.specimen_source", "must be a value of its Open mHealth value set")
    specimen = GLUCOSE_SPECIMENS[raw]
    if specimen is None:
        raise _Invalid(
            RejectionCode.UNSUPPORTED_TYPE,
            f"{path}.specimen_source: glucose is stored only from capillary blood, interstitial "
            "fluid (CGM) or an unstated specimen",
        )
    return specimen


def _statistic(body: Mapping[str, object], mapping: SchemaMapping, path: str) -> str | None:
    raw = body.get("descriptive_statistic")
    if "descriptive_statistic_denominator" in body:
        # step-count 3.0: e.g. "maximum" per "d" is the largest daily count within the interval,
        # a per-day rate that no gateway measure holds; storing it as a count over the whole
        # interval would misstate it.
        raise _Invalid(
            RejectionCode.UNSUPPORTED_TYPE,
            f"{path}.descriptive_statistic_denominator: statistics per denominator are not "
            "supported",
        )
    if raw is None:
        return None
    if not isinstance(raw, str) or raw not in DESCRIPTIVE_STATISTICS:
        raise _shape(
            f"{path}.descriptive_statistic", "must be an IEEE 1752.1 descriptive statistic"
        )
    if raw not in LOCATION_STATISTICS and not (raw == "sum" and mapping.measure in SUM_MEASURES):
        raise _Invalid(
            RejectionCode.UNSUPPORTED_TYPE,
            f"{path}.descriptive_statistic is not a value of {mapping.measure}; supported: "
            + ", ".join(sorted(LOCATION_STATISTICS)),
        )
    return raw


# --- effective_time_frame -----------------------------------------------------------------------


def _time_frame(
    raw: object, mapping: SchemaMapping, body_path: str
) -> tuple[datetime, datetime | None, bool]:
    path = f"{body_path}.effective_time_frame"
    frame = _object(raw, path)
    if frame.keys() == {"date_time"}:
        if mapping.interval_only:
            raise _shape(path, f"must be a time_interval for {mapping.measure}")
        moment, naive = _timestamp(frame["date_time"], f"{path}.date_time")
        return moment, None, naive
    if frame.keys() != {"time_interval"}:
        raise _shape(path, "must have exactly one of date_time or time_interval")
    return _interval(frame["time_interval"], mapping, f"{path}.time_interval")


def _interval(raw: object, mapping: SchemaMapping, path: str) -> tuple[datetime, datetime, bool]:
    interval = _object(raw, path)
    keys = interval.keys()
    if keys == _START_END:
        start, naive_start = _timestamp(interval["start_date_time"], f"{path}.start_date_time")
        end, naive_end = _timestamp(interval["end_date_time"], f"{path}.end_date_time")
        return start, end, naive_start or naive_end
    if keys == _START_DURATION:
        start, naive = _timestamp(interval["start_date_time"], f"{path}.start_date_time")
        return start, _shift(start, interval["duration"], f"{path}.duration", 1), naive
    if keys == _END_DURATION:
        end, naive = _timestamp(interval["end_date_time"], f"{path}.end_date_time")
        return _shift(end, interval["duration"], f"{path}.duration", -1), end, naive
    if keys == _PART_OF_DAY and mapping.part_of_day:
        return _part_of_day(interval, path)
    forms = "start_date_time and end_date_time, start_date_time or end_date_time and duration"
    if mapping.part_of_day:
        forms += ", or date and part_of_day"
    raise _shape(path, f"must have exactly: {forms}")


def _shift(moment: datetime, raw: object, path: str, sign: int) -> datetime:
    holder = _object(raw, path)
    value = holder.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _shape(f"{path}.value", "must be a non-negative JSON number")
    unit = holder.get("unit")
    seconds = DURATION_SECONDS.get(unit) if isinstance(unit, str) else None
    if seconds is None:
        raise _shape(f"{path}.unit", f"must be one of: {', '.join(DURATION_SECONDS)}")
    try:
        return moment + sign * timedelta(seconds=value * seconds)
    except OverflowError:
        raise _shape(path, "is too long") from None


def _part_of_day(interval: Mapping[str, object], path: str) -> tuple[datetime, datetime, bool]:
    day_raw = interval["date"]
    day: date | None = None
    if isinstance(day_raw, str) and _FULL_DATE.fullmatch(day_raw):
        try:
            day = date.fromisoformat(day_raw)
        except ValueError:
            day = None
    if day is None:
        raise _shape(f"{path}.date", "must be a full date, e.g. 2026-11-30")
    part = interval["part_of_day"]
    hours = PART_OF_DAY_HOURS.get(part) if isinstance(part, str) else None
    if hours is None:
        raise _shape(f"{path}.part_of_day", f"must be one of: {', '.join(PART_OF_DAY_HOURS)}")
    # No zone is given: the times are naive and, like every offset-less Open mHealth time, UTC.
    midnight = datetime(day.year, day.month, day.day)  # noqa: DTZ001 - naive by design, see above
    return midnight + timedelta(hours=hours[0]), midnight + timedelta(hours=hours[1]), True


# --- primitives -----------------------------------------------------------------------------------


def _object(raw: object, path: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise _shape(path, "must be a JSON object")
    return raw


def _string(raw: object, path: str, max_length: int) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= max_length:
        raise _shape(path, f"must be a string of 1-{max_length} characters")
    return raw


def _timestamp(raw: object, path: str) -> tuple[datetime, bool]:
    """The moment, and whether it had no offset (Open mHealth: then it is UTC)."""
    # date-time-1.0 is RFC 3339 with the offset optional: Open mHealth defines a missing offset
    # as UTC.
    if isinstance(raw, str) and RFC3339.fullmatch(raw):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return moment, moment.tzinfo is None
    raise _shape(path, "must be an RFC 3339 date-time, e.g. 2026-11-30T08:00:00+08:00")
