"""The fhir adapter on its own: FHIR R4 / PHD Observations in, candidate readings out."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.adapters.base import TooManyReadings
from gateway.adapters.fhir import FhirAdapter
from gateway.adapters.fhir.parse import UNKNOWN_DEVICE
from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.models import CandidateReading, Identifier, ParseRejection, Quantity, RejectionCode

FIXTURES = Path(__file__).parents[2] / "fixtures" / "phd"
MR = Identifier("urn:oid:2.999.1.2.3.4.5.6.7.8.10", "sisansarahId")
FHIR_JSON = "application/fhir+json"


def load(name: str) -> dict[str, Any]:
    return dict(orjson.loads((FIXTURES / name).read_bytes()))


def parse(document: object, media_type: str = FHIR_JSON) -> list[CandidateReading | ParseRejection]:
    return FhirAdapter(max_readings=100).parse(orjson.dumps(document), media_type)


def with_patient(*observations: dict[str, Any], devices: tuple[str, ...] = ()) -> dict[str, Any]:
    """A transaction Bundle holding the PHD example Patient, Devices and the Observations."""
    entries = [{"fullUrl": "urn:uuid:p1", "resource": load("patientExample-1.json")}]
    entries += [{"fullUrl": f"urn:uuid:d{i}", "resource": load(d)} for i, d in enumerate(devices)]
    entries += [{"resource": o} for o in observations]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def only(items: list[CandidateReading | ParseRejection]) -> CandidateReading:
    [item] = items
    assert isinstance(item, CandidateReading), item
    return item


def rejection(items: list[CandidateReading | ParseRejection]) -> ParseRejection:
    [item] = items
    assert isinstance(item, ParseRejection), item
    return item


def heart_rate(**changes: Any) -> dict[str, Any]:
    observation = load("numeric-spotnumeric.json")
    observation["subject"] = {"identifier": {"system": MR.system, "value": MR.value}}
    observation.update(changes)
    return observation


# --- mapping ------------------------------------------------------------------------------------


def test_the_phd_transaction_bundle_resolves_patient_and_device_by_urn_uuid() -> None:
    items = parse(load("bundle-example-1.json"))
    assert [type(i).__name__ for i in items] == ["ParseRejection", *["CandidateReading"] * 2]
    spo2, pulse = items[1], items[2]
    assert isinstance(spo2, CandidateReading)
    assert isinstance(pulse, CandidateReading)
    assert spo2.subject == MR
    assert spo2.device.id == "00-1C-05-04-00-00-78-25"
    assert spo2.device.model == "Model 3150"
    assert spo2.device.manufacturer == "Nonin Medical, Inc."
    assert spo2.measure == "oxygen-saturation"
    assert spo2.quantities == {"value": Quantity(98, "%")}
    assert spo2.start == datetime(2019, 9, 20, 12, 40, 16, 936000, timezone(timedelta(hours=-4)))
    assert spo2.vendor_record_id == "pulse-ox-001"  # Observation.identifier[0].value


def test_the_ucum_code_wins_over_the_mistyped_display_unit() -> None:
    reading = only(parse(heart_rate()))
    assert reading.measure == "heart-rate"
    assert reading.quantities == {"value": Quantity(48.0, "/min")}


@pytest.mark.parametrize("code", ["147842", "149530", "149546"])
def test_all_three_mdc_heart_rate_codes_are_heart_rate(code: str) -> None:
    observation = heart_rate()
    observation["code"] = {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": code}]}
    assert only(parse(observation)).measure == "heart-rate"


def test_a_compound_blood_pressure_maps_its_mdc_components() -> None:
    reading = only(parse(with_patient(load("compound-numeric-blood-pressure.json"))))
    assert reading.measure == "blood-pressure"
    assert reading.quantities == {
        "systolic": Quantity(116, "mm[Hg]"),
        "diastolic": Quantity(71, "mm[Hg]"),
        "mean": Quantity(86, "mm[Hg]"),
    }


def test_a_component_with_only_a_data_absent_reason_is_left_out() -> None:
    reading = only(parse(with_patient(load("compound-numeric-blood-pressure-no-mean.json"))))
    assert set(reading.quantities) == {"systolic", "diastolic"}


def test_a_patient_referenced_by_type_and_id_is_found_in_the_bundle() -> None:
    bundle = with_patient(
        load("temperature-observation.json"), devices=("phd-74E8FFFEFF051C00.001C05FFE874.json",)
    )
    reading = only(parse(bundle))
    assert reading.subject == MR
    assert reading.device.id == "74-E8-FF-FE-FF-05-1C-00"
    assert reading.quantities == {"value": Quantity(36.5, "Cel")}


def test_a_conditional_patient_reference_gives_the_identifier() -> None:
    observation = heart_rate(subject={"reference": f"Patient?identifier={MR.system}|{MR.value}"})
    assert only(parse(observation)).subject == MR


def test_a_device_not_in_the_bundle_is_the_unknown_device() -> None:
    assert only(parse(heart_rate())).device.id == UNKNOWN_DEVICE


def test_a_date_only_effective_time_is_naive_so_normalise_rejects_it() -> None:
    reading = only(parse(heart_rate(effectiveDateTime="1999-07-02")))
    assert reading.start == datetime(1999, 7, 2)  # noqa: DTZ001 the point of the test
    assert reading.start.tzinfo is None


def test_an_effective_period_gives_start_and_end() -> None:
    observation = heart_rate()
    del observation["effectiveDateTime"]
    observation["effectivePeriod"] = {
        "start": "2026-11-29T08:00:00+08:00",
        "end": "2026-11-29T09:00:00+08:00",
    }
    reading = only(parse(observation))
    assert reading.end is not None
    assert reading.end - reading.start == timedelta(hours=1)


def test_the_resource_id_is_the_record_id_without_an_identifier() -> None:
    observation = heart_rate()
    del observation["identifier"]
    assert only(parse(observation)).vendor_record_id == "numeric-spotnumeric"


def test_ndjson_gives_one_reading_per_line() -> None:
    lines = b"\n".join(orjson.dumps(heart_rate(id=f"o{i}")) for i in range(3))
    items = FhirAdapter(max_readings=10).parse(lines + b"\n", "application/fhir+ndjson")
    assert [i.vendor_record_id for i in items if isinstance(i, CandidateReading)] == [
        heart_rate()["identifier"][0]["value"]
    ] * 3


# --- per-reading rejections ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("rtsa-example.json", RejectionCode.UNSUPPORTED_TYPE),  # valueSampledData
        ("r4/observation-example-sample-data.json", RejectionCode.UNSUPPORTED_TYPE),  # ECG
        ("r4/observation-example-vitals-panel.json", RejectionCode.UNSUPPORTED_TYPE),  # 85353-1
        ("glucose-observation.json", RejectionCode.UNSUPPORTED_TYPE),  # MDC plasma glucose
        ("r4/observation-example-bloodpressure-cancel.json", RejectionCode.INVALID_READING),
        ("r4/observation-example-heart-rate.json", RejectionCode.INVALID_READING),  # Patient/...
    ],
)
def test_an_example_that_cannot_be_a_reading_is_rejected(name: str, code: RejectionCode) -> None:
    assert rejection(parse(load(name))).code == code


def test_entered_in_error_is_not_stored() -> None:
    found = rejection(parse(heart_rate(status="entered-in-error")))
    assert found.code == RejectionCode.INVALID_READING
    assert "status" in found.message


def test_an_invalid_observation_names_element_paths_and_never_values() -> None:
    observation = heart_rate()
    observation["valueQuantity"] = {"value": "SECRET-VALUE", "code": "/min"}
    observation["code"]["coding"][0]["code"] = 149530
    observation["SECRET-KEY"] = 1
    found = rejection(parse(observation))
    assert found.code == RejectionCode.INVALID_READING
    assert found.message.startswith("Observation is not a valid FHIR R4 Observation: ")
    assert "valueQuantity.value" in found.message
    assert "code.coding[0].code" in found.message
    assert "SECRET" not in found.message
    assert "149530" not in found.message


def test_a_decimal_string_value_is_not_a_number() -> None:
    observation = heart_rate(valueQuantity={"value": "48", "code": "/min"})
    assert "valueQuantity.value must be a JSON number" in rejection(parse(observation)).message


def test_a_missing_value_with_a_data_absent_reason_is_rejected() -> None:
    observation = heart_rate(dataAbsentReason={"text": "NaN"})
    del observation["valueQuantity"]
    assert "dataAbsentReason" in rejection(parse(observation)).message


def test_codes_naming_two_measures_are_rejected() -> None:
    observation = heart_rate()
    observation["code"]["coding"].append({"system": "http://loinc.org", "code": "8462-4"})
    observation["code"]["coding"].append({"system": "http://loinc.org", "code": "9279-1"})
    assert "more than one measure" in rejection(parse(observation)).message


@pytest.mark.parametrize(
    "subject",
    [
        {"reference": "Patient/not-in-bundle"},
        {"reference": "Device/phd-74E8FFFEFF051C00.001C05FFE874"},  # PHD coincident-time style
        {"identifier": {"value": "no-system"}},
        {"reference": "Patient?name=Piggy"},
    ],
)
def test_a_subject_without_a_usable_identifier_is_rejected(subject: dict[str, Any]) -> None:
    found = rejection(parse(heart_rate(subject=subject)))
    assert found.code == RejectionCode.INVALID_READING
    assert "subject must be an identifier" in found.message
    assert "Piggy" not in found.message
    assert "not-in-bundle" not in found.message


def test_a_patient_without_system_and_value_is_not_a_subject() -> None:
    bundle = with_patient(heart_rate(subject={"reference": "Patient/patientExample-2"}))
    bundle["entry"].append({"resource": load("patientExample-2.json")})
    assert rejection(parse(bundle)).code == RejectionCode.INVALID_READING


def test_a_rejection_in_a_bundle_names_the_entry() -> None:
    items = parse(with_patient(heart_rate(status="cancelled")))
    assert rejection(items).message.startswith("entry[1].resource.status")


# --- whole-body errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        load("patientExample-1.json"),
        {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": heart_rate()}]},
        {"resourceType": "Bundle", "type": "message", "entry": [{"resource": heart_rate()}]},
        {"resourceType": "Bundle", "type": "batch", "entry": []},
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"resource": load("patientExample-1.json")}],
        },
        {"resourceType": "Bundle", "type": "batch", "entry": ["x"]},
        [heart_rate()],
    ],
)
def test_a_body_that_is_not_an_observation_or_accepted_bundle_is_a_bad_request(
    document: object,
) -> None:
    with pytest.raises(BadRequest):
        parse(document)


def test_truncated_json_is_invalid_json() -> None:
    with pytest.raises(InvalidJSON):
        FhirAdapter().parse(orjson.dumps(heart_rate())[:-5], FHIR_JSON)


def test_more_observations_than_the_limit_is_too_many_readings() -> None:
    bundle = with_patient(*[copy.deepcopy(heart_rate()) for _ in range(3)])
    with pytest.raises(TooManyReadings):
        FhirAdapter(max_readings=2).parse(orjson.dumps(bundle), FHIR_JSON)


def test_an_unknown_media_type_is_refused() -> None:
    with pytest.raises(UnsupportedMediaType):
        FhirAdapter().parse(b"{}", "text/plain")
