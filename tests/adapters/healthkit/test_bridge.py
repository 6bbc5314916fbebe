"""The JSON bridge format: one parsed item per sample, correlations as one reading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.adapters.base import TooManyReadings
from gateway.adapters.healthkit import HealthKitAdapter, SubjectRequired
from gateway.errors import BadRequest, InvalidJSON
from gateway.models import CandidateReading, ParsedItem, ParseRejection, RejectionCode

FIXTURES = Path(__file__).parents[2] / "fixtures" / "healthkit"
SUBJECT = {"system": "https://example.org/study-participant", "value": "P-0001"}


def sample(
    kind: str = "HeartRate", value: float = 72, unit: str = "count/min", **extra: Any
) -> dict[str, Any]:
    return {
        "type": f"HKQuantityTypeIdentifier{kind}",
        "quantity": value,
        "unit": unit,
        "startDate": "2020-09-01T08:01:10+02:00",
        "endDate": "2020-09-01T08:01:10+02:00",
        "uuid": "UUID-1",
        "sourceName": "Apple Watch",
        "subject": SUBJECT,
        **extra,
    }


def parse(*samples: dict[str, Any], max_readings: int = 100) -> list[ParsedItem]:
    body = orjson.dumps({"samples": list(samples)})
    return HealthKitAdapter(max_readings=max_readings).parse(body, "application/json")


def one(item: dict[str, Any]) -> CandidateReading:
    [parsed] = parse(item)
    assert isinstance(parsed, CandidateReading), parsed
    return parsed


def rejection(item: dict[str, Any]) -> ParseRejection:
    [parsed] = parse(item)
    assert isinstance(parsed, ParseRejection), parsed
    return parsed


def test_the_fixture_gives_one_item_per_sample_in_order() -> None:
    items = HealthKitAdapter().parse(
        (FIXTURES / "bridge-samples.json").read_bytes(), "application/json"
    )
    assert [i.measure if isinstance(i, CandidateReading) else i.code for i in items] == [
        "body-mass-index", "heart-rate", "blood-pressure", "heart-rate", "step-count",
        RejectionCode.UNSUPPORTED_TYPE, "blood-pressure",
    ]  # fmt: skip


def test_a_sample_keeps_its_uuid_subject_and_offset() -> None:
    reading = one(sample())
    assert reading.vendor_record_id == "UUID-1"
    assert (reading.subject.system, reading.subject.value) == (SUBJECT["system"], SUBJECT["value"])
    assert reading.start.isoformat() == "2020-09-01T08:01:10+02:00"
    assert reading.end is None
    assert reading.device.id == "Apple Watch"


@pytest.mark.parametrize(
    ("kind", "value", "unit", "expected"),
    [
        ("OxygenSaturation", 0.97, "%", (97.0, "%")),
        ("BodyFatPercentage", 0.215, "%", (21.5, "%")),
        ("BodyTemperature", 98.6, "degF", (98.6, "[degF]")),
        ("BodyMass", 165, "lb", (165.0, "[lb_av]")),
        ("BloodGlucose", 5.5, "mmol<180.1558800000541>/L", (5.5, "mmol/L")),
    ],
)
def test_unit_traps_become_units_the_measure_table_accepts(
    kind: str, value: float, unit: str, expected: tuple[float, str]
) -> None:
    quantity = one(sample(kind, value, unit)).quantities["value"]
    assert (quantity.value, quantity.unit) == expected


def test_a_blood_pressure_correlation_is_one_reading_with_two_components() -> None:
    correlation = sample(
        objects=[
            {
                "type": "HKQuantityTypeIdentifierBloodPressureSystolic",
                "quantity": 125,
                "unit": "mmHg",
            },
            {"type": "HKQuantityTypeIdentifierBloodPressureDiastolic", "value": 74, "unit": "mmHg"},
        ]
    )
    del correlation["quantity"], correlation["unit"]
    correlation["type"] = "HKCorrelationTypeIdentifierBloodPressure"
    reading = one(correlation)
    assert reading.measure == "blood-pressure"
    assert {k: (q.value, q.unit) for k, q in reading.quantities.items()} == {
        "systolic": (125.0, "mm[Hg]"),
        "diastolic": (74.0, "mm[Hg]"),
    }


def test_a_bare_systolic_sample_is_unsupported() -> None:
    assert (
        rejection(sample("BloodPressureSystolic", 120, "mmHg")).code
        is RejectionCode.UNSUPPORTED_TYPE
    )


def test_an_unsupported_type_is_named_in_its_rejection() -> None:
    found = rejection(sample("ActiveEnergyBurned", 3, "kcal"))
    assert found.code is RejectionCode.UNSUPPORTED_TYPE
    assert "HKQuantityTypeIdentifierActiveEnergyBurned is not supported" in found.message


def test_a_free_text_type_is_not_echoed() -> None:
    found = rejection({**sample(), "type": "Jane Doe 1970-01-02"})
    assert found.code is RejectionCode.UNSUPPORTED_TYPE
    assert "Jane" not in found.message


def test_an_unknown_unit_is_unit_not_convertible() -> None:
    assert rejection(sample(unit="Hz")).code is RejectionCode.UNIT_NOT_CONVERTIBLE


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": "72"},
        {"quantity": True},
        {"value": 72},
        {"subject": None},
        {"subject": {"system": "x"}},
        {"startDate": "2020-09-01 08:01:10 +0200"},
        {"device": {"serial": "1"}},
        {"extra": 1},
        {"objects": []},
    ],
)
def test_a_malformed_sample_is_an_invalid_reading_naming_its_path(change: dict[str, Any]) -> None:
    found = rejection({**sample(), **change})
    assert found.code is RejectionCode.INVALID_READING
    assert found.message.startswith("samples[0]")


def test_a_missing_offset_is_left_to_normalise() -> None:
    reading = one(sample(startDate="2020-09-01T08:01:10", endDate="2020-09-01T08:01:10"))
    assert reading.start.utcoffset() is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"samples": [', InvalidJSON),
        (b"[]", BadRequest),
        (b'{"samples": []}', BadRequest),
        (b'{"samples": {}}', BadRequest),
    ],
)
def test_a_body_that_is_not_the_shape_is_a_bad_request(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        HealthKitAdapter().parse(body, "application/json")


def test_more_samples_than_allowed_is_refused() -> None:
    with pytest.raises(TooManyReadings):
        parse(sample(), sample(), max_readings=1)


def test_an_export_posted_without_a_subject_is_refused_with_subject_required() -> None:
    with pytest.raises(SubjectRequired) as raised:
        HealthKitAdapter().parse((FIXTURES / "ahcd-export.xml").read_bytes(), "application/xml")
    assert raised.value.code == "subject-required"
