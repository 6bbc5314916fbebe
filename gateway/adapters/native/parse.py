"""The gateway's own ingest format, version 1 (contract: schemas/native-ingest.schema.json).

Items are checked by hand rather than with jsonschema at runtime: this is the hot path. Messages
name the JSON path and what it must be, never the value found there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from gateway.adapters.base import check_count
from gateway.adapters.shapes import (
    InvalidShape,
    at,
    closed_object,
    json_object,
    number,
    optional_string,
    optional_timestamp,
    string,
    timestamp,
)
from gateway.errors import BadRequest
from gateway.models import CandidateReading, DeviceInfo, Identifier, ParsedItem, Quantity

MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 64

_COMPONENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

_SUBJECT_FIELDS = frozenset({"system", "value"})
_DEVICE_FIELDS = frozenset({"id", "model", "manufacturer"})
_QUANTITY_FIELDS = frozenset({"value", "unit"})


def parse_document(document: object, max_readings: int) -> list[ParsedItem]:
    """A single reading, or a `{"readings": [...]}` batch of at most `max_readings`."""
    if not isinstance(document, dict):
        raise BadRequest('body must be a JSON object: one reading or {"readings": [...]}')
    if "readings" not in document:
        return [_parse_item(document, "")]
    readings = document["readings"]
    if not isinstance(readings, list) or not readings:
        raise BadRequest("readings must be a non-empty array")
    check_count(len(readings), max_readings)
    return [_parse_item(raw, f"readings[{index}]") for index, raw in enumerate(readings)]


def parse_lines(lines: Iterable[tuple[int, object]]) -> list[ParsedItem]:
    """NDJSON: one reading a line, as (line number, decoded line)."""
    return [_parse_item(document, "", prefix=f"line {number}: ") for number, document in lines]


def _parse_item(raw: object, base: str, prefix: str = "") -> ParsedItem:
    try:
        return _reading(raw, base)
    except InvalidShape as invalid:
        return invalid.rejection(prefix)


def _reading(raw: object, base: str) -> CandidateReading:
    item = json_object(raw, base or "reading")
    subject = closed_object(item.get("subject"), at(base, "subject"), _SUBJECT_FIELDS)
    device = closed_object(item.get("device"), at(base, "device"), _DEVICE_FIELDS)
    start, end = _times(item, base)
    return CandidateReading(
        subject=Identifier(
            system=string(subject.get("system"), at(base, "subject.system"), MAX_ID_LENGTH),
            value=string(subject.get("value"), at(base, "subject.value"), MAX_ID_LENGTH),
        ),
        device=DeviceInfo(
            id=string(device.get("id"), at(base, "device.id"), MAX_ID_LENGTH),
            model=optional_string(device.get("model"), at(base, "device.model"), MAX_ID_LENGTH),
            manufacturer=optional_string(
                device.get("manufacturer"), at(base, "device.manufacturer"), MAX_ID_LENGTH
            ),
        ),
        measure=string(item.get("type"), at(base, "type"), MAX_NAME_LENGTH),
        quantities=_quantities(item, base),
        start=start,
        end=end,
        vendor_record_id=optional_string(
            item.get("record_id"), at(base, "record_id"), MAX_ID_LENGTH
        ),
        vendor_time=optional_timestamp(item.get("vendor_time"), at(base, "vendor_time")),
        declared_zone=optional_string(item.get("zone"), at(base, "zone"), MAX_NAME_LENGTH),
    )


def _quantities(item: Mapping[str, object], base: str) -> dict[str, Quantity]:
    if ("components" in item) == ("value" in item) or ("components" in item and "unit" in item):
        raise InvalidShape(base or "reading", "must have either value and unit, or components")
    if "value" in item:
        return {"value": _quantity(item, base)}
    path = at(base, "components")
    components = json_object(item["components"], path)
    if not components:
        raise InvalidShape(path, "must name at least one component")
    quantities: dict[str, Quantity] = {}
    for name, raw in components.items():
        if not _COMPONENT_NAME.fullmatch(name):
            raise InvalidShape(path, "keys must be names of 1-64 letters, digits, '-' or '_'")
        component_path = f"{path}.{name}"
        quantities[name] = _quantity(
            closed_object(raw, component_path, _QUANTITY_FIELDS), component_path
        )
    return quantities


def _quantity(holder: Mapping[str, object], base: str) -> Quantity:
    value = number(holder.get("value"), at(base, "value"))
    unit = string(holder.get("unit"), at(base, "unit"), MAX_NAME_LENGTH)
    return Quantity(value, unit)


def _times(item: Mapping[str, object], base: str) -> tuple[datetime, datetime | None]:
    has_time = "time" in item
    if has_time == ("start" in item) or (has_time and "end" in item):
        raise InvalidShape(base or "reading", "must have either time, or start and end")
    if has_time:
        return timestamp(item["time"], at(base, "time")), None
    return (
        timestamp(item["start"], at(base, "start")),
        timestamp(item.get("end"), at(base, "end")),
    )
