from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation
from hypothesis import given
from hypothesis import strategies as st

from gateway.fhir import build_observation
from gateway.measures import MEASURES, normalise
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    IngestContext,
    Measure,
    ObservationRow,
    Quantity,
    Reading,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "fhir-r4"
SNAPSHOTS = Path(__file__).parent / "snapshots"

SHANGHAI = timezone(timedelta(hours=8))
TAKEN = datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)
RECEIVED = datetime(2026, 11, 30, 0, 0, 7, 250000, tzinfo=UTC)
NOW = RECEIVED

SUBJECT_SYSTEM_CANARY = "urn:oid:1.2.156.112604.1.2.1"
SUBJECT_CANARY = "MRN-CANARY-55501"
DEVICE_CANARY = "SN-CANARY-77702"
RECORD_CANARY = "REC-CANARY-99903"
CANARIES = (SUBJECT_SYSTEM_CANARY, SUBJECT_CANARY, DEVICE_CANARY, RECORD_CANARY, "Watch 5", "Acme")

# Shaped like gateway.privacy pseudonyms: <kind><key version>-<32 base32 characters>.
OBSERVATION_ID = "o1-abcdefghijklmnopqrstuvwxyz234567"
SUBJECT_PSEUDONYM = "s1-77665544332222aabbccddeeffgghhii"
DEVICE_PSEUDONYM = "d1-qqrrsstt223344556677uuvvwwxxyyzz"
CTX = IngestContext(
    zone="cn",
    vendor="acme",
    source_format="native",
    format_version="1",
    received_at=RECEIVED,
    request_id="req-1",
)


def reading_of(
    measure: Measure,
    values: dict[str, float] | None = None,
    *,
    start: datetime = TAKEN,
    end: datetime | None = None,
    offset_assumed: bool = False,
) -> Reading:
    if values is None:
        values = {s.name: _typical(measure, s.name) for s in measure.components}
    if measure.interval and end is None:
        end = start + timedelta(hours=1)
    candidate = CandidateReading(
        subject=Identifier(SUBJECT_SYSTEM_CANARY, SUBJECT_CANARY),
        device=DeviceInfo(DEVICE_CANARY, "Watch 5", "Acme"),
        measure=measure.name,
        quantities={
            s.name: Quantity(values[s.name], s.ucum) for s in measure.components if s.name in values
        },
        start=start,
        end=end,
        vendor_record_id=RECORD_CANARY,
        offset_assumed=offset_assumed,
    )
    reading = normalise(candidate, now=NOW + timedelta(days=1))
    assert isinstance(reading, Reading), reading
    return reading


def _typical(measure: Measure, name: str) -> float:
    typical = {"systolic": 121, "diastolic": 79, "mean": 93, "step-count": 4321}
    spec = next(s for s in measure.components if s.name == name)
    bounds = spec.soft or spec.hard
    return typical.get(name, typical.get(measure.name, round((bounds.low + bounds.high) / 2, 1)))


def _flagged(measure: Measure) -> dict[str, float] | None:
    values = {s.name: _typical(measure, s.name) for s in measure.components}
    for spec in measure.components:
        if spec.soft is not None:
            values[spec.name] = spec.soft.low - 1 if spec.soft.low - 1 >= spec.hard.low else 0
            return values
    return None


def build(reading: Reading) -> ObservationRow:
    return build_observation(
        reading,
        observation_id=OBSERVATION_ID,
        subject=SUBJECT_PSEUDONYM,
        device=DEVICE_PSEUDONYM,
        ctx=CTX,
    )


def resource_of(reading: Reading) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(build(reading).resource)
    return loaded


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def _readings_of_every_kind() -> list[tuple[str, Reading]]:
    cases: list[tuple[str, Reading]] = []
    for measure in MEASURES.values():
        cases.append((f"{measure.name}-typical", reading_of(measure)))
        flagged = _flagged(measure)
        if flagged is not None:
            cases.append((f"{measure.name}-flagged", reading_of(measure, flagged)))
        cases.append(
            (f"{measure.name}-period", reading_of(measure, end=TAKEN + timedelta(minutes=30)))
        )
        utc_naive = datetime(2026, 11, 29, 23, 0)  # noqa: DTZ001 - the format assumed UTC
        cases.append(
            (
                f"{measure.name}-assumed-utc",
                reading_of(measure, start=utc_naive, offset_assumed=True),
            )
        )
    return cases


EVERY_KIND = _readings_of_every_kind()


@pytest.mark.parametrize("reading", [r for _, r in EVERY_KIND], ids=[i for i, _ in EVERY_KIND])
def test_every_observation_is_valid_fhir_r4(reading: Reading) -> None:
    row = build(reading)
    observation = Observation.model_validate_json(row.resource)
    assert observation.status == "final"
    assert observation.id == OBSERVATION_ID


@pytest.mark.parametrize("reading", [r for _, r in EVERY_KIND], ids=[i for i, _ in EVERY_KIND])
def test_no_identifier_serial_or_record_id_reaches_the_resource(reading: Reading) -> None:
    resource = build(reading).resource
    for canary in CANARIES:
        assert canary.encode() not in resource


def test_every_measure_and_flag_is_covered() -> None:
    ids = {i for i, _ in EVERY_KIND}
    assert {f"{name}-typical" for name in MEASURES} <= ids
    assert {"heart-rate-flagged", "blood-pressure-flagged", "step-count-period"} <= ids


def test_heart_rate_observation() -> None:
    resource = resource_of(reading_of(MEASURES["heart-rate"], {"value": 72}))
    assert resource["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "8867-4",
        "display": "Heart rate",
    }
    assert resource["valueQuantity"] == {
        "value": 72,
        "unit": "beats/minute",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert resource["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/heartrate"]
    assert "interpretation" not in resource


def test_the_effective_time_keeps_the_device_offset() -> None:
    resource = resource_of(reading_of(MEASURES["heart-rate"], {"value": 72}))
    assert resource["effectiveDateTime"] == "2026-11-30T08:00:00+08:00"
    assert "effectivePeriod" not in resource


def test_issued_and_last_updated_are_the_receive_time() -> None:
    resource = resource_of(reading_of(MEASURES["heart-rate"]))
    assert resource["issued"] == "2026-11-30T00:00:07.250000+00:00"
    assert resource["meta"]["lastUpdated"] == resource["issued"]


def test_a_reading_with_an_end_gets_an_effective_period() -> None:
    end = datetime(2026, 11, 30, 1, 30, tzinfo=timezone(timedelta(hours=1)))
    resource = resource_of(reading_of(MEASURES["step-count"], {"value": 5000}, end=end))
    assert resource["effectivePeriod"] == {
        "start": "2026-11-30T08:00:00+08:00",
        "end": "2026-11-30T01:30:00+01:00",
    }
    assert "effectiveDateTime" not in resource
    assert resource["category"][0]["coding"][0]["code"] == "activity"
    assert resource["valueQuantity"]["code"] == "{steps}"
    assert "profile" not in resource["meta"]


def test_identity_of_the_observation_is_the_keyed_id_and_the_pseudonyms() -> None:
    resource = resource_of(reading_of(MEASURES["heart-rate"]))
    assert resource["id"] == OBSERVATION_ID
    assert resource["identifier"] == [
        {"system": "urn:wearable-gateway:observation", "value": OBSERVATION_ID}
    ]
    assert resource["subject"] == {"reference": f"Patient/{SUBJECT_PSEUDONYM}"}
    assert resource["device"] == {"reference": f"Device/{DEVICE_PSEUDONYM}"}
    assert resource["meta"]["source"] == "urn:wearable-gateway:feed:acme:native"


def test_the_row_carries_the_index_columns() -> None:
    reading = reading_of(MEASURES["blood-pressure"])
    row = build(reading)
    assert (row.id, row.dedup_key, row.subject, row.device) == (
        OBSERVATION_ID,
        OBSERVATION_ID,
        SUBJECT_PSEUDONYM,
        DEVICE_PSEUDONYM,
    )
    assert (row.code, row.effective_start, row.effective_end) == ("85354-9", TAKEN, None)
    assert (row.issued, row.source_format) == (RECEIVED, "native")


def test_an_assumed_offset_is_marked_with_an_extension() -> None:
    naive = datetime(2026, 11, 29, 23, 0)  # noqa: DTZ001 - the format assumed UTC
    assumed = resource_of(reading_of(MEASURES["heart-rate"], start=naive, offset_assumed=True))
    assert assumed["extension"] == [
        {"url": "urn:wearable-gateway:extension:offset-assumed", "valueBoolean": True}
    ]
    assert assumed["effectiveDateTime"] == "2026-11-29T23:00:00+00:00"
    assert "extension" not in resource_of(reading_of(MEASURES["heart-rate"]))


@pytest.mark.parametrize(("value", "code", "display"), [(210, "H", "High"), (30, "L", "Low")])
def test_a_flagged_single_value_gets_an_observation_interpretation(
    value: float, code: str, display: str
) -> None:
    resource = resource_of(reading_of(MEASURES["heart-rate"], {"value": value}))
    assert resource["interpretation"] == [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                    "code": code,
                    "display": display,
                }
            ],
            "text": display,
        }
    ]


def test_blood_pressure_components_carry_their_own_codes_and_flags() -> None:
    values = {"systolic": 190, "diastolic": 79, "mean": 116}
    resource = resource_of(reading_of(MEASURES["blood-pressure"], values))
    components = resource["component"]
    assert [c["code"]["coding"][0]["code"] for c in components] == ["8480-6", "8462-4", "8478-0"]
    assert [c["code"]["coding"][1]["code"] for c in components] == ["150021", "150022", "150023"]
    assert [c["valueQuantity"]["code"] for c in components] == ["mm[Hg]"] * 3
    assert [c["valueQuantity"]["value"] for c in components] == [190, 79, 116]
    assert components[0]["interpretation"][0]["coding"][0]["code"] == "H"
    assert "interpretation" not in components[1]
    assert "valueQuantity" not in resource
    assert "interpretation" not in resource
    assert resource["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]


def test_blood_pressure_matches_the_r4_example_codes_and_units() -> None:
    example = fixture("observation-example-bloodpressure.json")
    ours = resource_of(reading_of(MEASURES["blood-pressure"], {"systolic": 107, "diastolic": 60}))

    def loinc(concept: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (c["code"], c["display"])
            for c in concept["coding"]
            if c["system"] == "http://loinc.org"
        ]

    assert loinc(ours["code"]) == loinc(example["code"])
    assert ours["category"][0]["coding"] == example["category"][0]["coding"]
    assert [loinc(c["code"]) for c in ours["component"]] == [
        loinc(c["code"]) for c in example["component"]
    ]
    assert [c["valueQuantity"] for c in ours["component"]] == [
        c["valueQuantity"] for c in example["component"]
    ]


@pytest.mark.parametrize(
    ("measure", "example_file"),
    [
        ("heart-rate", "observation-example-heart-rate.json"),
        ("oxygen-saturation", "observation-example-satO2.json"),
        ("body-temperature", "observation-example-body-temperature.json"),
    ],
)
def test_single_values_match_the_r4_examples(measure: str, example_file: str) -> None:
    example = fixture(example_file)
    value = example["valueQuantity"]["value"]
    ours = resource_of(reading_of(MEASURES[measure], {"value": value}))
    example_codes = [c["code"] for c in example["code"]["coding"]]
    assert [c["code"] for c in ours["code"]["coding"]][: len(example_codes)] == example_codes
    assert ours["valueQuantity"] == example["valueQuantity"]
    assert ours["category"][0]["coding"] == example["category"][0]["coding"]


def test_blood_pressure_snapshot() -> None:
    reading = reading_of(
        MEASURES["blood-pressure"], {"systolic": 142.5, "diastolic": 112, "mean": 122}
    )
    row = build(reading)
    rendered = orjson.dumps(orjson.loads(row.resource), option=orjson.OPT_INDENT_2) + b"\n"
    snapshot = SNAPSHOTS / "blood-pressure.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.write_bytes(rendered)
    assert rendered == snapshot.read_bytes()


@given(value=st.floats(min_value=0.3, max_value=650))
def test_any_accepted_weight_serialises_to_valid_fhir(value: float) -> None:
    row = build(reading_of(MEASURES["body-weight"], {"value": value}))
    observation = Observation.model_validate_json(row.resource)
    assert observation.valueQuantity is not None
    assert float(observation.valueQuantity.value) == pytest.approx(value)
