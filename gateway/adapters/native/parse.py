"""The gateway's own ingest format, version 1 (contract: schemas/native-ingest.schema.json).

Items are checked by hand rather than with jsonschema at runtime: this is the hot path. Messages
name the JSON path and what it must be, never the value found there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

import orjson

from gateway.adapters.base import TooManyReadings
from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    RejectionCode,
)

JSON = "application/json"
NDJSON = "application/x-ndjson"

MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 64

# RFC 3339 date-time with the UTC offset optional (a missing offset is normalise's
# `missing-offset`) and offsets limited to FHIR's -14:00..+14:00. Kept in step with the schema's
# $defs/timestamp pattern.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)
_COMPONENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

_SUBJECT_FIELDS = frozenset({"system", "value"})
_DEVICE_FIELDS = frozenset({"id", "model", "manufacturer"})
_QUANTITY_FIELDS = frozenset({"value", "unit"})


class NativeAdapter:
    name: str = "native"
    version: str = "1"
    media_types: frozenset[str] = frozenset({JSON, NDJSON})

    def __init__(self, *, max_readings: int = 10_000) -> None:
        self.max_readings = max_readings

    def parse(self, body: bytes, media_type: str) -> list[ParsedItem]:
        """Parse a single reading, a `{"readings": [...]}` batch, or NDJSON (one reading a line)."""
        essence = media_type.partition(";")[0].strip().lower()
        if essence == JSON:
            return self._parse_document(body)
        if essence == NDJSON:
            return self._parse_lines(body)
        raise UnsupportedMediaType(f"the native format accepts {JSON} or {NDJSON}")

    def _parse_document(self, body: bytes) -> list[ParsedItem]:
        document = _loads(body, "body is not valid JSON")
        if not isinstance(document, dict):
            raise BadRequest('body must be a JSON object: one reading or {"readings": [...]}')
        if "readings" not in document:
            return [_parse_item(document, "")]
        readings = document["readings"]
        if not isinstance(readings, list) or not readings:
            raise BadRequest("readings must be a non-empty array")
        if len(readings) > self.max_readings:
            raise TooManyReadings(f"a request may carry at most {self.max_readings} readings")
        return [_parse_item(raw, f"readings[{index}]") for index, raw in enumerate(readings)]

    def _parse_lines(self, body: bytes) -> list[ParsedItem]:
        items: list[ParsedItem] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            if len(items) == self.max_readings:
                raise TooManyReadings(f"a request may carry at most {self.max_readings} readings")
            item = _parse_item(_loads(line, f"line {number} is not valid JSON"), "")
            if isinstance(item, ParseRejection):
                item = ParseRejection(item.code, f"line {number}: {item.message}")
            items.append(item)
        if not items:
            raise BadRequest("body has no readings")
        return items


def _loads(data: bytes, message: str) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # Also raised for numbers a double cannot hold (orjson refuses infinities).
        raise InvalidJSON(message) from None


class _InvalidShape(Exception):
    def __init__(self, path: str, requirement: str) -> None:
        super().__init__(f"{path} {requirement}")
        self.message = f"{path} {requirement}"


def _parse_item(raw: object, base: str) -> ParsedItem:
    try:
        return _reading(raw, base)
    except _InvalidShape as invalid:
        return ParseRejection(RejectionCode.INVALID_READING, invalid.message)


def _at(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _reading(raw: object, base: str) -> CandidateReading:
    item = _object(raw, base or "reading")
    subject = _closed_object(item.get("subject"), _at(base, "subject"), _SUBJECT_FIELDS)
    device = _closed_object(item.get("device"), _at(base, "device"), _DEVICE_FIELDS)
    start, end = _times(item, base)
    return CandidateReading(
        subject=Identifier(
            system=_string(subject.get("system"), _at(base, "subject.system"), MAX_ID_LENGTH),
            value=_string(subject.get("value"), _at(base, "subject.value"), MAX_ID_LENGTH),
        ),
        device=DeviceInfo(
            id=_string(device.get("id"), _at(base, "device.id"), MAX_ID_LENGTH),
            model=_optional_string(device.get("model"), _at(base, "device.model"), MAX_ID_LENGTH),
            manufacturer=_optional_string(
                device.get("manufacturer"), _at(base, "device.manufacturer"), MAX_ID_LENGTH
            ),
        ),
        measure=_string(item.get("type"), _at(base, "type"), MAX_NAME_LENGTH),
        quantities=_quantities(item, base),
        start=start,
        end=end,
        vendor_record_id=_optional_string(
            item.get("record_id"), _at(base, "record_id"), MAX_ID_LENGTH
        ),
        vendor_time=_optional_timestamp(item.get("vendor_time"), _at(base, "vendor_time")),
        declared_zone=_optional_string(item.get("zone"), _at(base, "zone"), MAX_NAME_LENGTH),
    )


def _quantities(item: Mapping[str, object], base: str) -> dict[str, Quantity]:
    if ("components" in item) == ("value" in item) or ("components" in item and "unit" in item):
        raise _InvalidShape(base or "reading", "must have either value and unit, or components")
    if "value" in item:
        return {"value": _quantity(item, base)}
    path = _at(base, "components")
    components = _object(item["components"], path)
    if not components:
        raise _InvalidShape(path, "must name at least one component")
    quantities: dict[str, Quantity] = {}
    for name, raw in components.items():
        if not _COMPONENT_NAME.fullmatch(name):
            raise _InvalidShape(path, "keys must be names of 1-64 letters, digits, '-' or '_'")
        component_path = f"{path}.{name}"
        quantities[name] = _quantity(
            _closed_object(raw, component_path, _QUANTITY_FIELDS), component_path
        )
    return quantities


def _quantity(holder: Mapping[str, object], base: str) -> Quantity:
    value = holder.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _InvalidShape(_at(base, "value"), "must be a JSON number")
    unit = _string(holder.get("unit"), _at(base, "unit"), MAX_NAME_LENGTH)
    return Quantity(float(value), unit)


def _times(item: Mapping[str, object], base: str) -> tuple[datetime, datetime | None]:
    has_time = "time" in item
    if has_time == ("start" in item) or (has_time and "end" in item):
        raise _InvalidShape(base or "reading", "must have either time, or start and end")
    if has_time:
        return _timestamp(item["time"], _at(base, "time")), None
    return (
        _timestamp(item["start"], _at(base, "start")),
        _timestamp(item.get("end"), _at(base, "end")),
    )


def _object(raw: object, path: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise _InvalidShape(path, "must be a JSON object")
    return raw


def _closed_object(raw: object, path: str, fields: frozenset[str]) -> dict[str, object]:
    found = _object(raw, path)
    if not found.keys() <= fields:
        raise _InvalidShape(path, f"may only have the fields {', '.join(sorted(fields))}")
    return found


def _string(raw: object, path: str, max_length: int) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= max_length:
        raise _InvalidShape(path, f"must be a string of 1-{max_length} characters")
    return raw


def _optional_string(raw: object, path: str, max_length: int) -> str | None:
    return None if raw is None else _string(raw, path, max_length)


def _timestamp(raw: object, path: str) -> datetime:
    if isinstance(raw, str) and _TIMESTAMP.fullmatch(raw):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    raise _InvalidShape(
        path, "must be an RFC 3339 date-time with a UTC offset, e.g. 2026-11-30T08:00:00+08:00"
    )


def _optional_timestamp(raw: object, path: str) -> datetime | None:
    return None if raw is None else _timestamp(raw, path)
