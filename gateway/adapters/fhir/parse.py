"""FHIR R4 (4.0.1) Observations as personal-health gateways send them.

Accepted bodies:
  - one `Observation` (`application/fhir+json` or `application/json`);
  - a `Bundle` of type `batch`, `transaction` or `collection`: each Observation entry is one
    reading, in entry order; Patient and Device entries are what the Observations reference, by
    `fullUrl` (`urn:uuid:...`, `urn:oid:...`, absolute URL) or by `Patient/<id>`/`Device/<id>`, as
    the HL7 Personal Health Device (PHD) IG transaction Bundles do;
  - NDJSON (`application/fhir+ndjson`, `application/x-ndjson`): one Observation a line.

Each Observation is checked against the FHIR R4 structure with `fhir.resources` (R4B models;
R4B did not change Observation) before it is read. That costs about 0.2-0.3 ms a resource, which
this format accepts; the native format stays hand-checked.

Subject: the Observation's `subject` must be a logical reference `{"identifier": {system, value}}`,
a conditional reference `Patient?identifier=system|value`, or a reference to a Patient in the same
Bundle; that Patient's first identifier with both system and value is the subject. Clinics enrol
the subject under that same identifier (e.g. the MR number system of the PHD examples). There is
no per-format identifier system: FHIR identifiers carry their own.

Messages name element paths and what they must be, never values, identifiers or units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import parse_qs

from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from gateway.adapters.base import check_count
from gateway.adapters.fhir.codes import COMPONENT_CODES, MEASURE_CODES, SYSTEM_ALIASES
from gateway.adapters.shapes import one_of
from gateway.errors import BadRequest
from gateway.measures.table import MEASURES
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    RejectionCode,
)

UCUM = "http://unitsofmeasure.org"
# DeviceInfo.id when the Observation names no device the gateway can identify.
UNKNOWN_DEVICE = "fhir-unknown-device"

MAX_ID_LENGTH = 256
MAX_UNIT_LENGTH = 64
MAX_LISTED_ERRORS = 5

# Bundle.type values that carry resources to store (R4 bundle-type value set); `message`,
# `document`, `searchset`, `history` and the responses are not submissions of readings.
BUNDLE_TYPES = frozenset({"batch", "transaction", "collection"})
# Observation.status (R4 observation-status): these carry a usable result. `registered` has none
# yet; `cancelled`, `entered-in-error` and `unknown` must not be stored as readings.
READING_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})

# FHIR R4 dateTime (http://hl7.org/fhir/R4/datatypes.html#dateTime): year, year-month, date, or
# date-time with seconds and an offset. Partial dates become naive midnights, so normalise
# rejects them as `missing-offset`.
_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})(?:-(?P<month>0[1-9]|1[0-2])(?:-(?P<day>0[1-9]|[12][0-9]|3[01])"
    r"(?P<time>T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
# A pydantic location part that is an element name (not a union tag or array index).
_ELEMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

_SUBJECT_REQUIREMENT = (
    "must be an identifier (system and value), a Patient?identifier=system|value reference, "
    "or a reference to a Patient in the Bundle that has an identifier with system and value"
)


def parse_resource(document: object, max_readings: int) -> list[ParsedItem]:
    """One Observation, or a batch/transaction/collection Bundle of at most `max_readings`."""
    kind = document.get("resourceType") if isinstance(document, dict) else None
    if isinstance(document, dict) and kind == "Observation":
        return [_parse_observation(document, "Observation", {})]
    if isinstance(document, dict) and kind == "Bundle":
        return _parse_bundle(document, max_readings)
    raise BadRequest(
        "body must be a FHIR Observation or a Bundle of type batch, transaction or collection"
    )


def parse_lines(lines: Iterable[tuple[int, object]]) -> list[ParsedItem]:
    """NDJSON: one Observation a line, as (line number, decoded line)."""
    return [_parse_observation(raw, f"line {number}: Observation", {}) for number, raw in lines]


def _parse_bundle(bundle: dict[str, object], max_readings: int) -> list[ParsedItem]:
    if not one_of(bundle.get("type"), BUNDLE_TYPES):
        raise BadRequest("Bundle.type must be batch, transaction or collection")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise BadRequest("Bundle.entry must be a non-empty array")
    resources: list[tuple[int, object]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BadRequest(f"entry[{index}] must be a JSON object")
        resources.append((index, entry.get("resource")))
    observations = [
        (index, resource)
        for index, resource in resources
        if not isinstance(resource, dict) or resource.get("resourceType") == "Observation"
    ]
    if not observations:
        raise BadRequest("Bundle has no Observation entries")
    check_count(len(observations), max_readings)
    references = _references(entries)
    return [
        _parse_observation(resource, f"entry[{index}].resource", references)
        for index, resource in observations
    ]


def _references(entries: list[object]) -> dict[str, dict[str, object]]:
    """Each Patient and Device of the Bundle under its fullUrl and its `Type/id`."""
    found: dict[str, dict[str, object]] = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        kind = resource.get("resourceType")
        if kind not in ("Patient", "Device"):
            continue
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(full_url, str) and full_url:
            found.setdefault(full_url, resource)
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and resource_id:
            found.setdefault(f"{kind}/{resource_id}", resource)
    return found


class _Rejected(Exception):
    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> _Rejected:
    return _Rejected(RejectionCode.INVALID_READING, message)


def _parse_observation(
    raw: object, path: str, references: Mapping[str, dict[str, object]]
) -> ParsedItem:
    try:
        return _observation(raw, path, references)
    except _Rejected as rejected:
        return ParseRejection(rejected.code, rejected.message)


def _observation(
    raw: object, path: str, references: Mapping[str, dict[str, object]]
) -> CandidateReading:
    if not isinstance(raw, dict) or raw.get("resourceType") != "Observation":
        raise _invalid(f"{path} must be a FHIR Observation resource")
    try:
        Observation.model_validate(raw)
    except ValidationError as error:
        raise _invalid(
            f"{path} is not a valid FHIR R4 Observation: {_error_paths(error)}"
        ) from None
    if not one_of(raw.get("status"), READING_STATUSES):
        raise _invalid(f"{path}.status must be one of {', '.join(sorted(READING_STATUSES))}")
    if "valueSampledData" in raw:
        raise _Rejected(
            RejectionCode.UNSUPPORTED_TYPE, f"{path}.valueSampledData (waveforms) is not supported"
        )
    measure = _measure(raw.get("code"), f"{path}.code")
    start, end = _effective(raw, path)
    return CandidateReading(
        subject=_subject(raw.get("subject"), f"{path}.subject", references),
        device=_device(raw.get("device"), references),
        measure=measure,
        quantities=_quantities(raw, path, measure),
        start=start,
        end=end,
        vendor_record_id=_record_id(raw, path),
        vendor_time=_issued(raw.get("issued")),
    )


def _error_paths(error: ValidationError) -> str:
    """The element paths pydantic complains about; never its messages, which quote the input."""
    paths: list[str] = []
    for detail in error.errors(include_url=False, include_context=False, include_input=False):
        location = list(detail["loc"])
        unknown = detail["type"] == "extra_forbidden"
        if unknown:
            # The last part is the unknown key as sent: it may be anything, so it is not named.
            location = location[:-1]
        rendered = ""
        for part in location:
            if isinstance(part, int):
                rendered += f"[{part}]"
            elif _ELEMENT.fullmatch(part):
                rendered += f".{part}" if rendered else part
        rendered = rendered or "(resource)"
        paths.append(f"{rendered} has an unknown element" if unknown else rendered)
    unique = list(dict.fromkeys(paths))
    listed = ", ".join(unique[:MAX_LISTED_ERRORS])
    more = len(unique) - MAX_LISTED_ERRORS
    return f"{listed} and {more} more" if more > 0 else listed


def _codings(concept: object) -> list[tuple[str, str]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    found = []
    for coding in concept["coding"]:
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                found.append((SYSTEM_ALIASES.get(system, system), code))
    return found


def _measure(code: object, path: str) -> str:
    names = {MEASURE_CODES[c] for c in _codings(code) if c in MEASURE_CODES}
    if not names:
        raise _Rejected(
            RejectionCode.UNSUPPORTED_TYPE,
            f"{path} has no LOINC or IEEE 11073 MDC coding of a supported measure",
        )
    if len(names) > 1:
        raise _invalid(f"{path}.coding names more than one measure")
    return names.pop()


def _quantities(raw: dict[str, object], path: str, measure: str) -> dict[str, Quantity]:
    if MEASURES[measure].panel:
        return _components(raw.get("component"), path, COMPONENT_CODES[measure])
    value = raw.get("valueQuantity")
    if value is None:
        if "dataAbsentReason" in raw:
            raise _invalid(f"{path} has no value: it carries a dataAbsentReason")
        raise _invalid(f"{path}.valueQuantity is required for {measure}")
    return {"value": _quantity(value, f"{path}.valueQuantity")}


def _components(
    raw: object, path: str, component_codes: Mapping[tuple[str, str], str]
) -> dict[str, Quantity]:
    """The panel's own components; others (e.g. PHD measurement-status) are not readings."""
    quantities: dict[str, Quantity] = {}
    for index, component in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(component, dict):
            continue  # not reached: fhir.resources has checked the structure
        here = f"{path}.component[{index}]"
        codings = _codings(component.get("code"))
        names = {component_codes[c] for c in codings if c in component_codes}
        if not names:
            continue
        if len(names) > 1:
            raise _invalid(f"{here}.code.coding names more than one component")
        name = names.pop()
        if name in quantities:
            raise _invalid(f"{here} repeats a component of the panel")
        if "valueQuantity" in component:
            # A component with only a dataAbsentReason is left out: normalise then reports a
            # missing required component, and an optional one (mean) is simply not stored.
            quantities[name] = _quantity(component["valueQuantity"], f"{here}.valueQuantity")
    return quantities


def _quantity(raw: object, path: str) -> Quantity:
    if not isinstance(raw, dict):
        raise _invalid(f"{path} must be a Quantity")
    value = raw.get("value")
    # fhir.resources accepts decimal strings; FHIR JSON requires a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{path}.value must be a JSON number")
    code, unit = raw.get("code"), raw.get("unit")
    # The UCUM code is authoritative; `unit` is display text (PHD examples carry a typo there).
    if raw.get("system") in (None, UCUM) and isinstance(code, str) and code:
        chosen = code
    elif isinstance(unit, str) and unit:
        chosen = unit
    else:
        raise _invalid(f"{path} must have a UCUM code or a unit")
    if len(chosen) > MAX_UNIT_LENGTH:
        raise _invalid(f"{path} unit must be at most {MAX_UNIT_LENGTH} characters")
    return Quantity(float(value), chosen)


def _effective(raw: dict[str, object], path: str) -> tuple[datetime, datetime | None]:
    for element in ("effectiveDateTime", "effectiveInstant"):
        if element in raw:
            return _date_time(raw[element], f"{path}.{element}"), None
    period = raw.get("effectivePeriod")
    if isinstance(period, dict):
        if "start" not in period:
            raise _invalid(f"{path}.effectivePeriod.start is required")
        start = _date_time(period["start"], f"{path}.effectivePeriod.start")
        end = period.get("end")
        return start, None if end is None else _date_time(end, f"{path}.effectivePeriod.end")
    raise _invalid(f"{path} must have effectiveDateTime, effectiveInstant or effectivePeriod")


def _date_time(raw: object, path: str) -> datetime:
    """A FHIR dateTime with its own offset kept; partial dates and no offset give naive times."""
    match = _DATE_TIME.fullmatch(raw) if isinstance(raw, str) else None
    try:
        if match and match["time"]:
            return datetime.fromisoformat(match.string)
        if match:
            month, day = match["month"] or "1", match["day"] or "1"
            return datetime(int(match["year"]), int(month), int(day))  # noqa: DTZ001 naive on purpose: no offset was sent
    except ValueError:
        pass
    raise _invalid(f"{path} must be a FHIR dateTime")


def _issued(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    match = _DATE_TIME.fullmatch(raw)
    if not match or not match["time"]:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _identifier(raw: object) -> Identifier | None:
    if not isinstance(raw, dict):
        return None
    system, value = raw.get("system"), raw.get("value")
    if (
        isinstance(system, str)
        and isinstance(value, str)
        and 0 < len(system) <= MAX_ID_LENGTH
        and 0 < len(value) <= MAX_ID_LENGTH
    ):
        return Identifier(system, value)
    return None


def _subject(raw: object, path: str, references: Mapping[str, dict[str, object]]) -> Identifier:
    if isinstance(raw, dict):
        logical = _identifier(raw.get("identifier"))
        if logical is not None:
            return logical
        reference = raw.get("reference")
        if isinstance(reference, str):
            found = _conditional(reference) or _patient_identifier(references.get(reference))
            if found is not None:
                return found
    raise _invalid(f"{path} {_SUBJECT_REQUIREMENT}")


def _conditional(reference: str) -> Identifier | None:
    """`Patient?identifier=system|value` (R4 conditional reference, http.html#trules)."""
    kind, question, query = reference.partition("?")
    if kind != "Patient" or not question:
        return None
    parameters = parse_qs(query, keep_blank_values=True)
    values = parameters.get("identifier", [])
    if len(parameters) != 1 or len(values) != 1:
        return None
    system, bar, value = values[0].partition("|")
    return _identifier({"system": system, "value": value}) if bar else None


def _patient_identifier(patient: dict[str, object] | None) -> Identifier | None:
    if patient is None or patient.get("resourceType") != "Patient":
        return None
    identifiers = patient.get("identifier")
    for raw in identifiers if isinstance(identifiers, list) else []:
        found = _identifier(raw)
        if found is not None:
            return found
    return None


def _device(raw: object, references: Mapping[str, dict[str, object]]) -> DeviceInfo:
    if not isinstance(raw, dict):
        return DeviceInfo(UNKNOWN_DEVICE)
    logical = raw.get("identifier")
    if isinstance(logical, dict):
        value = _text(logical.get("value"))
        if value is not None:
            return DeviceInfo(value)
    reference = raw.get("reference")
    device = references.get(reference) if isinstance(reference, str) else None
    if device is None or device.get("resourceType") != "Device":
        # e.g. a DeviceMetric (R4 satO2 example) or a Device that was not sent along.
        return DeviceInfo(UNKNOWN_DEVICE)
    identifiers = device.get("identifier")
    values = [
        _text(item.get("value"))
        for item in (identifiers if isinstance(identifiers, list) else [])
        if isinstance(item, dict)
    ]
    names = device.get("deviceName")
    first_name = names[0] if isinstance(names, list) and names else None
    return DeviceInfo(
        id=next((v for v in values if v is not None), None)
        or _text(device.get("serialNumber"))
        or UNKNOWN_DEVICE,
        model=_text(device.get("modelNumber"))
        or (_text(first_name.get("name")) if isinstance(first_name, dict) else None),
        manufacturer=_text(device.get("manufacturer")),
    )


def _text(raw: object) -> str | None:
    return raw if isinstance(raw, str) and 0 < len(raw) <= MAX_ID_LENGTH else None


def _record_id(raw: dict[str, object], path: str) -> str | None:
    """The PHD conditional-create key (first Observation.identifier value), else the id."""
    identifiers = raw.get("identifier")
    for index, item in enumerate(identifiers if isinstance(identifiers, list) else []):
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, str):
            if not 0 < len(value) <= MAX_ID_LENGTH:
                raise _invalid(
                    f"{path}.identifier[{index}].value must be 1-{MAX_ID_LENGTH} characters"
                )
            return value
    return _text(raw.get("id"))
