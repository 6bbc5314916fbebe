"""Glucose is stored under the code of the specimen its source states, through every adapter.

Real HTTP and PostgreSQL: each case posts one glucose reading in one input format and reads the
stored Observation back. A CGM reading (interstitial fluid, or a device the closed device tables
know as a CGM) must never carry a capillary-blood code; a reading whose source states no
specimen must carry no specimen claim at all; a stated capillary reading keeps 41653-7.

Inputs are the published samples where there are any: the HL7 CGM IG's two sensor-reading
examples (tests/fixtures/cgm/), Open mHealth's blood-glucose 4.0 shouldPass sample and the
Capacitor plugin's BloodGlucose record (tests/fixtures/omh/, tests/fixtures/healthconnect/), each
with only its specimen or device changed; HealthKit has no published glucose sample, so its
samples follow the bridge and export.xml fixtures' shape with the HKDevice that LoopKit's
CGMBLEKit writes for a Dexcom G6 (manufacturer "Dexcom", model "G6").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from fhir.resources.R4B.observation import Observation
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters.omh import OMH_USER_SYSTEM
from gateway.measures.specimen import Specimen, glucose_measure
from gateway.measures.table import GATEWAY_MEASURE, LOINC, MDC
from gateway.models import DeviceInfo
from tests.conftest import Gateway
from tests.helpers import reading, stored_observations

FIXTURES = Path(__file__).parents[1] / "fixtures"
PARTICIPANT = {"system": "https://example.org/study-participant", "value": "P-CGM-1"}
OMH_USER = "user1432"

CAPILLARY_CODES = {(LOINC, "41653-7"), (MDC, "160184")}
INTERSTITIAL = (LOINC, "99504-3")
UNSTATED = (GATEWAY_MEASURE, "glucose")
CGM_PROFILE = "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-sensor-reading-mass-per-volume"

# LoopKit/CGMBLEKit, CGMBLEKit/TransmitterManager.swift: the HKDevice of a Dexcom G6 reading.
DEXCOM_BRIDGE_DEVICE = {"name": "CGMBLEKit", "manufacturer": "Dexcom", "model": "G6"}
DEXCOM_EXPORT_DEVICE = "<<HKDevice: 0x0>, name:CGMBLEKit, manufacturer:Dexcom, model:G6>"


@dataclass(frozen=True)
class Post:
    path: str
    body: bytes
    content_type: str = "application/json"


# --- requests, one builder per input format ---------------------------------------------------


def native(kind: str) -> Post:
    body = {"readings": [reading("MRN-CGM-1", kind=kind, value=112, unit="mg/dL")]}
    return Post("/v1/ingest/native", orjson.dumps(body))


def omh(specimen: str | None) -> Post:
    sample = (
        FIXTURES / "omh/test-data/omh/blood-glucose/4.0/shouldPass/with-date-time-time-frame.json"
    )
    body = json.loads(sample.read_text())
    if specimen is not None:
        body["specimen_source"] = specimen
    header = {
        "id": "omh-glucose-1",
        "creation_date_time": "2024-06-01T00:00:00Z",
        "schema_id": {"namespace": "omh", "name": "blood-glucose", "version": "4.0"},
        "acquisition_provenance": {"source_name": "glucose-source", "modality": "sensed"},
        "user_id": OMH_USER,
    }
    return Post("/v1/ingest/omh", orjson.dumps({"header": header, "body": body}))


def healthconnect(specimen: object, *, manufacturer: str | None = None) -> Post:
    records = json.loads(
        (FIXTURES / "healthconnect/healthconnect_beispiel_records.json").read_text()
    )
    [record] = [r for r in records["records"] if r["type"] == "BloodGlucose"]
    record = copy.deepcopy(record)
    if specimen is None:
        del record["specimenSource"]
    else:
        record["specimenSource"] = specimen
    if manufacturer is not None:
        record["metadata"] = {"device": {"manufacturer": manufacturer, "model": "G7"}}
    body = {"subject": PARTICIPANT, "records": [record]}
    return Post("/v1/ingest/healthconnect", orjson.dumps(body))


def healthkit_bridge(
    device: dict[str, str] | None, *, unit: str = "mg/dL", value: float = 112
) -> Post:
    sample: dict[str, Any] = {
        "type": "HKQuantityTypeIdentifierBloodGlucose",
        "quantity": value,
        "unit": unit,
        "startDate": "2024-05-02T10:15:00+02:00",
        "endDate": "2024-05-02T10:15:00+02:00",
        "uuid": "6F1C2B0E-0000-4000-8000-0000000000C1",
        "sourceName": "Dexcom G6" if device else "Health",
        "subject": PARTICIPANT,
    }
    if device is not None:
        sample["device"] = device
    return Post("/v1/ingest/healthkit", orjson.dumps({"samples": [sample]}))


def healthkit_export(device: str | None) -> Post:
    attribute = (
        "" if device is None else f' device="{device.replace("<", "&lt;").replace(">", "&gt;")}"'
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<HealthData locale="en_US">\n'
        ' <Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName="Dexcom G6"'
        f'{attribute} unit="mg/dL" creationDate="2024-05-02 10:16:00 +0200"'
        ' startDate="2024-05-02 10:15:00 +0200" endDate="2024-05-02 10:15:00 +0200" value="112"/>\n'
        "</HealthData>\n"
    )
    query = urlencode(
        {"subject_system": PARTICIPANT["system"], "subject_value": PARTICIPANT["value"]}
    )
    return Post(f"/v1/ingest/healthkit/export?{query}", xml.encode(), "application/xml")


def fhir(example: str) -> Post:
    observation = json.loads((FIXTURES / "cgm" / example).read_text())
    observation["subject"] = {"identifier": PARTICIPANT}
    return Post("/v1/ingest/fhir", orjson.dumps(observation), "application/fhir+json")


# Every input that says interstitial fluid, or comes from a known CGM device.
INTERSTITIAL_INPUTS: dict[str, Callable[[], Post]] = {
    "native interstitial-glucose": lambda: native("interstitial-glucose"),
    "omh specimen_source interstitial fluid": lambda: omh("interstitial fluid"),
    "healthconnect specimenSource interstitial_fluid": lambda: healthconnect("interstitial_fluid"),
    "healthconnect specimenSource 1": lambda: healthconnect(1),
    "healthconnect unknown specimen, Dexcom device": lambda: healthconnect(
        0, manufacturer="Dexcom"
    ),
    "healthkit bridge, Dexcom device, mg/dL": lambda: healthkit_bridge(DEXCOM_BRIDGE_DEVICE),
    "healthkit bridge, Dexcom device, mmol/L": lambda: healthkit_bridge(
        DEXCOM_BRIDGE_DEVICE, unit="mmol<180.1558800000541>/L", value=6.2
    ),
    "healthkit export.xml, Dexcom device": lambda: healthkit_export(DEXCOM_EXPORT_DEVICE),
    "fhir CGM IG mass example (99504-3)": lambda: fhir(
        "Observation-cgmSensorReadingMassPerVolumeExample.json"
    ),
    "fhir CGM IG molar example (105272-9)": lambda: fhir(
        "Observation-cgmSensorReadingMolesPerVolumeExample.json"
    ),
}
# Every input whose source states no specimen and names no known CGM.
UNSTATED_INPUTS: dict[str, Callable[[], Post]] = {
    "omh without specimen_source": lambda: omh(None),
    "healthconnect without specimenSource": lambda: healthconnect(None),
    "healthconnect specimenSource unknown": lambda: healthconnect("unknown"),
    "healthconnect specimenSource 0, non-CGM device": lambda: healthconnect(
        0, manufacturer="Google"
    ),
    "healthkit bridge without device": lambda: healthkit_bridge(None),
    "healthkit bridge, Apple device": lambda: healthkit_bridge(
        {"name": "iPhone", "manufacturer": "Apple Inc.", "hardwareVersion": "iPhone14,2"}
    ),
    "healthkit export.xml without device": lambda: healthkit_export(None),
    "native glucose": lambda: native("glucose"),
}
CAPILLARY_INPUTS: dict[str, Callable[[], Post]] = {
    "omh specimen_source capillary blood": lambda: omh("capillary blood"),
    "healthconnect specimenSource capillary_blood (published record)": lambda: healthconnect(
        "capillary_blood"
    ),
    "native blood-glucose": lambda: native("blood-glucose"),
}


async def stored_glucose(gateway: Gateway, zone_dsns: dict[str, str], post: Post) -> dict[str, Any]:
    await gateway.enrol(
        "cn",
        "MRN-CGM-1",
        extra=[PARTICIPANT, {"system": OMH_USER_SYSTEM, "value": OMH_USER}],
    )
    response = await gateway.client.post(
        post.path,
        data=post.body,
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": post.content_type},
    )
    result = await response.json()
    assert response.status == 200, result
    [resource] = await stored_observations(zone_dsns["cn"])
    Observation.model_validate(resource)
    return resource


def codings(resource: dict[str, Any]) -> set[tuple[str, str]]:
    concepts = [resource["code"], *(c["code"] for c in resource.get("component", []))]
    return {(c["system"], c["code"]) for concept in concepts for c in concept["coding"]}


@pytest.mark.parametrize("case", INTERSTITIAL_INPUTS)
async def test_an_interstitial_reading_is_never_coded_as_capillary_blood(
    gateway: Gateway, zone_dsns: dict[str, str], case: str
) -> None:
    resource = await stored_glucose(gateway, zone_dsns, INTERSTITIAL_INPUTS[case]())
    assert not codings(resource) & CAPILLARY_CODES
    assert codings(resource) == {INTERSTITIAL}


@pytest.mark.parametrize("case", INTERSTITIAL_INPUTS)
async def test_a_cgm_point_reading_has_what_the_cgm_ig_sensor_reading_profile_requires(
    gateway: Gateway, zone_dsns: dict[str, str], case: str
) -> None:
    resource = await stored_glucose(gateway, zone_dsns, INTERSTITIAL_INPUTS[case]())
    # CGMSensorReadingMassPerVolume (HL7/cgm input/fsh/profiles.fsh): code = LOINC#99504-3,
    # subject 1..1, effectiveDateTime 1..1, valueQuantity 1..1 = 'mg/dL' "mg/dl".
    assert resource["meta"]["profile"] == [CGM_PROFILE]
    assert {"system": LOINC, "code": "99504-3"}.items() <= resource["code"]["coding"][0].items()
    assert resource["subject"]["reference"].startswith("Patient/")
    assert "effectiveDateTime" in resource
    assert "effectivePeriod" not in resource
    quantity = resource["valueQuantity"]
    assert (quantity["system"], quantity["code"], quantity["unit"]) == (
        "http://unitsofmeasure.org",
        "mg/dL",
        "mg/dl",
    )
    assert isinstance(quantity["value"], int | float)


@pytest.mark.parametrize("case", UNSTATED_INPUTS)
async def test_a_reading_of_unstated_specimen_claims_no_specimen(
    gateway: Gateway, zone_dsns: dict[str, str], case: str
) -> None:
    resource = await stored_glucose(gateway, zone_dsns, UNSTATED_INPUTS[case]())
    assert codings(resource) == {UNSTATED}
    assert "profile" not in resource["meta"]


@pytest.mark.parametrize("case", CAPILLARY_INPUTS)
async def test_a_stated_capillary_reading_keeps_the_glucometer_code(
    gateway: Gateway, zone_dsns: dict[str, str], case: str
) -> None:
    resource = await stored_glucose(gateway, zone_dsns, CAPILLARY_INPUTS[case]())
    assert codings(resource) == CAPILLARY_CODES


async def test_the_molar_cgm_example_is_stored_in_mg_per_dl(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    post = fhir("Observation-cgmSensorReadingMolesPerVolumeExample.json")
    resource = await stored_glucose(gateway, zone_dsns, post)
    assert resource["valueQuantity"]["value"] == pytest.approx(6.7 * 18.01559, abs=1e-6)


_TEXT = st.none() | st.text(max_size=20) | st.sampled_from(["Dexcom", "dexcom", "Abbott", "Apple"])


@given(manufacturer=_TEXT, model=_TEXT)
def test_no_device_turns_a_stated_or_unstated_specimen_into_capillary_blood(
    manufacturer: str | None, model: str | None
) -> None:
    device = DeviceInfo("d", model=model, manufacturer=manufacturer)
    assert glucose_measure(Specimen.INTERSTITIAL_FLUID, device) == "interstitial-glucose"
    assert glucose_measure(Specimen.UNKNOWN, device) in {"glucose", "interstitial-glucose"}
    assert glucose_measure(Specimen.CAPILLARY_BLOOD, device) == "blood-glucose"
