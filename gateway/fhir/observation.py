"""Reading -> FHIR R4 Observation, built as plain dicts and serialised with orjson (hot path).

The resource carries pseudonyms only: never the subject's identifiers, the device serial or the
vendor's record id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

import orjson

from gateway.measures.table import POINT_PROFILES
from gateway.models import (
    Coding,
    ComponentSpec,
    IngestContext,
    Interpretation,
    MeasuredValue,
    ObservationRow,
    Reading,
)

UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
IDENTIFIER_SYSTEM = "urn:wearable-gateway:observation"
OFFSET_ASSUMED_URL = "urn:wearable-gateway:extension:offset-assumed"
# The statistic an aggregate reading carries (e.g. "average", "maximum" over effectivePeriod).
# R4 Observation has no element for it (http://hl7.org/fhir/R4/observation.html; the
# observation-statistics codes belong to the Observation/$stats operation), so the code rides in
# an extension, as the offset flag does. The code is the sender's statistic name, e.g. Open mHealth
# descriptive_statistic.
STATISTIC_URL = "urn:wearable-gateway:extension:statistic"

# http://hl7.org/fhir/R4/observation-category (CodeSystem observation-category, displays).
_CATEGORY_DISPLAY: Mapping[str, str] = MappingProxyType(
    {"vital-signs": "Vital Signs", "activity": "Activity", "laboratory": "Laboratory"}
)

# http://hl7.org/fhir/R4/observation-vitalsigns.html: each profile fixes one LOINC code in
# Observation.code. Measures whose code has no profile here get no meta.profile.
_VITAL_SIGNS_PROFILE: Mapping[str, str] = MappingProxyType(
    {
        "8867-4": "http://hl7.org/fhir/StructureDefinition/heartrate",
        "9279-1": "http://hl7.org/fhir/StructureDefinition/resprate",
        "2708-6": "http://hl7.org/fhir/StructureDefinition/oxygensat",
        "8310-5": "http://hl7.org/fhir/StructureDefinition/bodytemp",
        "8302-2": "http://hl7.org/fhir/StructureDefinition/bodyheight",
        "29463-7": "http://hl7.org/fhir/StructureDefinition/bodyweight",
        "39156-5": "http://hl7.org/fhir/StructureDefinition/bmi",
        "85354-9": "http://hl7.org/fhir/StructureDefinition/bp",
    }
)

# Every profile derived from R4 vitalsigns (and vitalsigns itself): what `_elements` must keep.
VITAL_SIGNS_PROFILES: frozenset[str] = frozenset(
    {*_VITAL_SIGNS_PROFILE.values(), "http://hl7.org/fhir/StructureDefinition/vitalsigns"}
)

# http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation
_INTERPRETATION_DISPLAY: Mapping[Interpretation, str] = MappingProxyType(
    {Interpretation.LOW: "Low", Interpretation.HIGH: "High"}
)

# Integers up to 2**53 are exact in a double; beyond that keep the float.
_EXACT_INT_LIMIT = 2**53


def build_observation(
    reading: Reading,
    *,
    observation_id: str,
    subject: str,
    device: str,
    ctx: IngestContext,
) -> ObservationRow:
    """Map a validated reading to a FHIR R4 Observation row.

    `subject` and `device` are pseudonyms; `observation_id` is the keyed dedup value, used as the
    resource id and as its business identifier.
    """
    measure = reading.measure
    meta: dict[str, object] = {
        "source": f"urn:wearable-gateway:feed:{ctx.vendor}:{ctx.source_format}",
        "lastUpdated": ctx.received_at.isoformat(),
    }
    if reading.record_version is not None:
        # The vendor's revision of the record (e.g. Health Connect clientRecordVersion): the
        # stored Observation is that version, and earlier ones are kept as its history.
        meta["versionId"] = str(reading.record_version)
    profile = _VITAL_SIGNS_PROFILE.get(measure.loinc)
    if profile is None and reading.end is None:
        profile = POINT_PROFILES.get(measure.name)
    if profile is not None:
        meta["profile"] = [profile]

    resource: dict[str, object] = {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": meta,
    }
    extensions = _extensions(reading)
    if extensions:
        resource["extension"] = extensions
    resource |= {
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": observation_id}],
        "status": "final",
        "category": [_category(measure.category)],
        "code": _concept(measure.codings),
        "subject": {"reference": f"Patient/{subject}"},
    }
    if reading.end is None:
        resource["effectiveDateTime"] = _date_time(reading.start)
    else:
        resource["effectivePeriod"] = {
            "start": _date_time(reading.start),
            "end": _date_time(reading.end),
        }
    resource["issued"] = _date_time(ctx.received_at)

    if not measure.panel:
        (value,) = reading.values
        resource["valueQuantity"] = _quantity(value.spec, value.value)
        if value.interpretation is not None:
            resource["interpretation"] = [_interpretation(value.interpretation)]
    resource["device"] = {"reference": f"Device/{device}"}
    if measure.panel:
        resource["component"] = [_component(value) for value in reading.values]

    return ObservationRow(
        id=observation_id,
        dedup_key=observation_id,
        subject=subject,
        device=device,
        code=measure.loinc,
        effective_start=reading.start,
        effective_end=reading.end,
        issued=ctx.received_at,
        source_format=ctx.source_format,
        resource=orjson.dumps(resource),
        version=reading.record_version,
    )


def _extensions(reading: Reading) -> list[dict[str, object]]:
    extensions: list[dict[str, object]] = []
    if reading.offset_assumed:
        extensions.append({"url": OFFSET_ASSUMED_URL, "valueBoolean": True})
    if reading.statistic is not None:
        extensions.append({"url": STATISTIC_URL, "valueCode": reading.statistic})
    return extensions


def _category(code: str) -> dict[str, object]:
    return {
        "coding": [
            {"system": OBSERVATION_CATEGORY, "code": code, "display": _CATEGORY_DISPLAY[code]}
        ]
    }


def _concept(codings: tuple[Coding, ...]) -> dict[str, object]:
    return {
        "coding": [{"system": c.system, "code": c.code, "display": c.display} for c in codings],
        "text": codings[0].display,
    }


def _component(value: MeasuredValue) -> dict[str, object]:
    component: dict[str, object] = {
        "code": _concept(value.spec.codings),
        "valueQuantity": _quantity(value.spec, value.value),
    }
    if value.interpretation is not None:
        component["interpretation"] = [_interpretation(value.interpretation)]
    return component


def _quantity(spec: ComponentSpec, value: float) -> dict[str, object]:
    return {"value": _number(value), "unit": spec.unit_display, "system": UCUM, "code": spec.ucum}


def _interpretation(flag: Interpretation) -> dict[str, object]:
    display = _INTERPRETATION_DISPLAY[flag]
    return {
        "coding": [{"system": OBSERVATION_INTERPRETATION, "code": flag.value, "display": display}],
        "text": display,
    }


def _number(value: float) -> int | float:
    number = float(value)
    if number.is_integer() and abs(number) < _EXACT_INT_LIMIT:
        return int(number)
    return number


def _date_time(moment: datetime) -> str:
    return moment.isoformat()
