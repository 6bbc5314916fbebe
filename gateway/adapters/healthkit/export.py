"""Apple Health `export.xml` (the "Export All Health Data" archive), read as a stream.

The document is fed to expat in chunks and never built as a tree: each `Record` is turned into
one parsed item when its start tag is read, and a `Correlation` keeps only its member records
until it closes, so memory stays bounded for exports of a gigabyte.

What is read (Apple's DTD, "HealthKit Export Version: 11", is in the export's internal subset):

- `<Record type="HKQuantityTypeIdentifier…" unit value startDate endDate creationDate
  sourceName device>` directly under `<HealthData>`: one candidate reading per record of a type
  in `codes.QUANTITY_TYPES`.
- `<Correlation type="HKCorrelationTypeIdentifierBloodPressure">` with systolic and diastolic
  member `Record`s: ONE blood-pressure reading, timed by the correlation.
- Dates are "YYYY-MM-DD HH:MM:SS ±HHMM"; the offset is kept as written.

What is skipped, without an outcome:

- Records of every other type (active energy, distance, category types, …), Workouts,
  ActivitySummaries, ClinicalRecords, Audiograms. A real export holds millions of these; one
  `unsupported-type` outcome each would make the response (and the dead-letter table) larger
  than the export. They are counted in `ExportSummary.skipped`, so the caller can report them.
- Top-level blood-pressure Records: the DTD says every correlation member "also appear[s] as
  top-level records", so reading both would store each pressure twice; a lone systolic or
  diastolic record is not a blood-pressure reading either.

Security: an export never needs entities, so any entity declaration (the billion-laughs and XXE
attacks both need one) or an external DTD refuses the whole body with `BadRequest`, before any
item is produced. Apple's internal subset holds only ELEMENT and ATTLIST declarations and is
accepted. Expat never fetches external entities; refusing them is defence in depth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from xml.parsers import expat

from gateway.adapters.base import TooManyReadings
from gateway.adapters.healthkit.codes import (
    BLOOD_PRESSURE_COMPONENTS,
    BLOOD_PRESSURE_CORRELATION,
    BLOOD_PRESSURE_MEASURE,
    BLOOD_PRESSURE_UNITS,
    QUANTITY_TYPES,
)
from gateway.adapters.healthkit.parse import device_id, sample_measure, to_quantity, unit_message
from gateway.errors import BadRequest
from gateway.lexical import is_ascii_decimal
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    RejectionCode,
)

CHUNK_BYTES = 1 << 20
MAX_ATTRIBUTE_LENGTH = 256

ENTITIES_REFUSED = "XML with entity declarations is refused"

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}")
# `device="<<HKDevice: 0x…>, name:Apple Watch, manufacturer:Apple Inc., model:Watch,
# hardware:Watch6,2, software:7.0>"`: HKDevice's description. Values may hold commas
# ("Watch6,2"), so a field ends only where ", key:" or the closing ">" follows.
_DEVICE_FIELD = re.compile(r", ([A-Za-z]+):(.*?)(?=, [A-Za-z]+:|>\s*$)")


@dataclass
class ExportSummary:
    """Counts of what `parse_export` left out, filled in as the stream is read."""

    skipped: int = 0  # records of unsupported types, and top-level blood-pressure records
    skipped_types: dict[str, int] = field(default_factory=dict)

    def skip(self, kind: str) -> None:
        self.skipped += 1
        # Bounded: a hostile body could invent endless type names.
        if kind in self.skipped_types or len(self.skipped_types) < 100:
            self.skipped_types[kind] = self.skipped_types.get(kind, 0) + 1


class _Refused(Exception):
    """Raised inside an expat handler to stop parsing; becomes `BadRequest` outside it."""


def parse_export(
    body: bytes,
    subject: Identifier,
    device_fallback: str,
    *,
    max_readings: int | None = None,
    summary: ExportSummary | None = None,
) -> Iterator[ParsedItem]:
    """Yield one parsed item per supported reading of an export.xml, in document order.

    `subject` is whom the whole export belongs to (export.xml carries no account id);
    `device_fallback` is the device id of records that name neither a device nor a source.
    Raises `BadRequest` for a body that is not well-formed XML, is not a `<HealthData>`
    document or declares entities, and `TooManyReadings` past `max_readings`.
    """
    stream = ExportStream(subject, device_fallback, max_readings=max_readings, summary=summary)
    view = memoryview(body)
    for offset in range(0, max(len(view), 1), CHUNK_BYTES):
        yield from stream.feed(bytes(view[offset : offset + CHUNK_BYTES]))
    yield from stream.close()


class ExportStream:
    """The export parser fed chunk by chunk, as an upload arrives: each `feed` returns the items
    completed so far, so a caller can store them in batches without holding the document."""

    def __init__(
        self,
        subject: Identifier,
        device_fallback: str,
        *,
        max_readings: int | None = None,
        summary: ExportSummary | None = None,
    ) -> None:
        self.summary = summary or ExportSummary()
        self._reader = _ExportReader(subject, device_fallback, self.summary)
        self._max_readings = max_readings
        self._produced = 0
        parser = expat.ParserCreate()
        # Never read the external DTD or parameter entities (the default; stated for the reader).
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = _doctype
        parser.EntityDeclHandler = _entity
        parser.UnparsedEntityDeclHandler = _unparsed_entity
        parser.ExternalEntityRefHandler = _external_entity
        parser.StartElementHandler = self._reader.start
        parser.EndElementHandler = self._reader.end
        parser.buffer_text = False
        self._parser = parser

    def feed(self, chunk: bytes) -> list[ParsedItem]:
        _feed(self._parser, chunk, final=False)
        return self._drain()

    def close(self) -> list[ParsedItem]:
        _feed(self._parser, b"", final=True)
        items = self._drain()
        if not self._reader.seen_root:
            raise BadRequest("body is not an Apple Health export: <HealthData> not found")
        return items

    def _drain(self) -> list[ParsedItem]:
        items = self._reader.drain()
        self._produced += len(items)
        if self._max_readings is not None and self._produced > self._max_readings:
            raise TooManyReadings(f"an export may carry at most {self._max_readings} readings")
        return items


def _feed(parser: expat.XMLParserType, data: bytes, *, final: bool) -> None:
    try:
        parser.Parse(data, final)
    except _Refused as refused:
        raise BadRequest(str(refused)) from None
    except expat.ExpatError as error:
        # expat's message names a position and an error class, never document content.
        raise BadRequest(
            f"body is not well-formed XML ({expat.ErrorString(error.code)} at line {error.lineno})"
        ) from None


def _doctype(_name: str, system_id: str | None, public_id: str | None, _internal: int) -> None:
    if system_id is not None or public_id is not None:
        raise _Refused("XML with an external DTD is refused")


def _entity(name: str, *_: object) -> None:
    raise _Refused(ENTITIES_REFUSED)


def _unparsed_entity(name: str, *_: object) -> None:
    raise _Refused(ENTITIES_REFUSED)


def _external_entity(*_: object) -> int:
    raise _Refused(ENTITIES_REFUSED)


class _ExportReader:
    """expat callbacks: track where we are in the document, queue one item per reading."""

    def __init__(self, subject: Identifier, device_fallback: str, summary: ExportSummary) -> None:
        self._subject = subject
        self._device_fallback = device_fallback
        self._summary = summary
        self._depth = 0
        self._queue: list[ParsedItem] = []
        self._correlation: dict[str, str] | None = None
        self._members: list[dict[str, str]] = []
        self.seen_root = False

    def drain(self) -> list[ParsedItem]:
        queued, self._queue = self._queue, []
        return queued

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if self._depth == 1:
            if name != "HealthData":
                raise _Refused("body is not an Apple Health export: the root must be HealthData")
            self.seen_root = True
        elif self._depth == 2 and name == "Record":
            self._top_level_record(attributes)
        elif self._depth == 2 and name == "Correlation":
            self._correlation = attributes
            self._members = []
        elif self._depth == 3 and name == "Record" and self._correlation is not None:
            self._members.append(attributes)

    def end(self, name: str) -> None:
        if self._depth == 2 and name == "Correlation" and self._correlation is not None:
            self._close_correlation(self._correlation, self._members)
            self._correlation, self._members = None, []
        self._depth -= 1

    def _top_level_record(self, record: dict[str, str]) -> None:
        kind = record.get("type", "")
        mapping = QUANTITY_TYPES.get(kind)
        if mapping is None:
            self._summary.skip(kind)
            return
        try:
            start, end = _times(record, "Record")
            value = _value(record, "Record")
            unit = _attribute(record, "unit", "Record")
        except _Invalid as invalid:
            self._queue.append(ParseRejection(RejectionCode.INVALID_READING, invalid.message))
            return
        quantity = to_quantity(value, unit, mapping.units)
        if quantity is None:
            self._queue.append(
                ParseRejection(
                    RejectionCode.UNIT_NOT_CONVERTIBLE, unit_message(kind, mapping.units)
                )
            )
            return
        self._queue.append(
            self._candidate(record, mapping.measure, {"value": quantity}, start, end)
        )

    def _close_correlation(
        self, correlation: dict[str, str], members: list[dict[str, str]]
    ) -> None:
        if correlation.get("type") != BLOOD_PRESSURE_CORRELATION:
            self._summary.skip(correlation.get("type", ""))
            return
        try:
            start, end = _times(correlation, "Correlation")
            quantities: dict[str, Quantity] = {}
            for member in members:
                component = BLOOD_PRESSURE_COMPONENTS.get(member.get("type", ""))
                if component is None:
                    continue  # e.g. a food correlation's members; nothing else belongs here
                if component in quantities:
                    raise _Invalid(f"Correlation has more than one {component} Record")
                value = _value(member, "Correlation Record")
                unit = _attribute(member, "unit", "Correlation Record")
                quantity = to_quantity(value, unit, BLOOD_PRESSURE_UNITS)
                if quantity is None:
                    self._queue.append(
                        ParseRejection(
                            RejectionCode.UNIT_NOT_CONVERTIBLE,
                            unit_message(member["type"], BLOOD_PRESSURE_UNITS),
                        )
                    )
                    return
                quantities[component] = quantity
        except _Invalid as invalid:
            self._queue.append(ParseRejection(RejectionCode.INVALID_READING, invalid.message))
            return
        # A missing component is normalise's `missing-component`, not ours to decide.
        self._queue.append(
            self._candidate(correlation, BLOOD_PRESSURE_MEASURE, quantities, start, end)
        )

    def _candidate(
        self,
        element: Mapping[str, str],
        measure: str,
        quantities: Mapping[str, Quantity],
        start: datetime,
        end: datetime | None,
    ) -> ParsedItem:
        try:
            device = _device(element, self._device_fallback)
            created = element.get("creationDate")
            vendor_time = None if created is None else _date(created, "creationDate")
        except _Invalid as invalid:
            return ParseRejection(RejectionCode.INVALID_READING, invalid.message)
        return CandidateReading(
            subject=self._subject,
            device=device,
            measure=sample_measure(measure, device),
            quantities=quantities,
            start=start,
            end=end,
            vendor_time=vendor_time,
        )


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _attribute(element: Mapping[str, str], key: str, where: str) -> str:
    raw = element.get(key)
    if raw is None or not 0 < len(raw) <= MAX_ATTRIBUTE_LENGTH:
        raise _Invalid(f"{where} {key} must be present, 1-{MAX_ATTRIBUTE_LENGTH} characters")
    return raw


def _value(element: Mapping[str, str], where: str) -> float:
    raw = _attribute(element, "value", where)
    if not is_ascii_decimal(raw):  # float() also reads "١٢", "1_0", " 1" and "nan"
        raise _Invalid(f"{where} value must be a decimal number")
    try:
        return float(raw)
    except ValueError:
        raise _Invalid(f"{where} value must be a decimal number") from None


def _date(raw: str, key: str) -> datetime:
    if _DATE.fullmatch(raw):
        try:
            return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            pass
    raise _Invalid(f"{key} must be a date like 2020-09-01 08:01:10 +0200")


def _times(element: Mapping[str, str], where: str) -> tuple[datetime, datetime | None]:
    start = _date(_attribute(element, "startDate", where), "startDate")
    end = _date(_attribute(element, "endDate", where), "endDate")
    # A point sample has endDate == startDate; the measure table decides what needs an interval.
    return start, (None if end == start else end)


def _device(element: Mapping[str, str], fallback: str) -> DeviceInfo:
    source = element.get("sourceName")
    if source is not None and not 0 < len(source) <= MAX_ATTRIBUTE_LENGTH:
        raise _Invalid(f"sourceName must be 1-{MAX_ATTRIBUTE_LENGTH} characters")
    fields = _device_fields(element.get("device", ""))
    hardware = fields.get("hardware")
    return DeviceInfo(
        id=device_id(
            local_identifier=fields.get("localIdentifier"),
            udi=fields.get("UDIDeviceIdentifier"),
            source_name=source,
            hardware=hardware,
            fallback=fallback,
        ),
        model=hardware or fields.get("model"),
        manufacturer=fields.get("manufacturer"),
    )


def _device_fields(description: str) -> dict[str, str]:
    if len(description) > 4 * MAX_ATTRIBUTE_LENGTH:
        raise _Invalid(f"device must be at most {4 * MAX_ATTRIBUTE_LENGTH} characters")
    return {
        key: value[:MAX_ATTRIBUTE_LENGTH]
        for key, value in _DEVICE_FIELD.findall(description)
        if value
    }
