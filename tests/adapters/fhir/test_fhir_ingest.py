"""POST /v1/ingest/fhir end to end with the HL7 PHD IG and FHIR R4 vital-signs examples.

The standalone PHD examples reference `Patient/patientExample-1` and their Devices, which a
gateway sends in the same transaction Bundle; the tests do that with the published Patient and
Device examples. The R4 examples reference `Patient/example`, which R4 does not ship with an
identifier, so a synthetic Patient with one is added.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.observation import Observation

from tests.conftest import Gateway
from tests.helpers import stored_observations

FIXTURES = Path(__file__).parents[2] / "fixtures" / "phd"
SNAPSHOTS = Path(__file__).parent / "snapshots"
MR = {"system": "urn:oid:2.999.1.2.3.4.5.6.7.8.10", "value": "sisansarahId"}
R4_PATIENT = {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "r4-example-patient"}
VOLATILE = ("id", "subject", "device", "identifier", "issued", "meta")

PHD_DEVICES = [
    "phd-00601900010E9234.F45EABA80832.json",
    "phd-711000FEFF5F49B0.B0495F001071.json",
    "phd-74E8FFFEFF051C00.001C05FFE874.json",
    "phg-ecde3d4e58532d31.000000000000.json",
]
NOT_OBSERVATIONS = [*PHD_DEVICES, "phg-example.json", "bp-devicemetric-example.json"]
NOT_OBSERVATIONS += ["patientExample-1.json", "patientExample-2.json"]

# Published files as they are, one request each: per Observation, "created" or the rejection code.
PUBLISHED = {
    # Only the transaction Bundle carries its Patient; entry 3 is a coincident-time Observation.
    "bundle-example-1.json": ["unsupported-type", "created", "created"],
    # Every other PHD/R4 Observation references a Patient that is not in the request.
    "numeric-spotnumeric.json": ["invalid-reading"],
    "temperature-observation.json": ["invalid-reading"],
    "r4/observation-example-heart-rate.json": ["invalid-reading"],
    "r4/observation-example-satO2.json": ["invalid-reading"],
    # Codes not in the measure table (status enumerations, coincident time, waveform, NaN ...).
    "bits-observation.json": ["unsupported-type"],
    "rtsa-example.json": ["unsupported-type"],
    "r4/observation-example-sample-data.json": ["unsupported-type"],
    # status "cancelled": not a result.
    "r4/observation-example-bloodpressure-cancel.json": ["invalid-reading"],
}

# Standalone PHD Observations sent in one Bundle with their Patient and Devices, and why each
# that is rejected cannot be a reading.
PHD_WITH_PATIENT = {
    "bits-observation.json": "unsupported-type",  # MDC BITS status word
    "bpm-status.json": "unsupported-type",  # BP monitor status enumeration
    "coin-20181119174911.json": "unsupported-type",  # coincident time stamp; subject is a Device
    "coin-20181119202022.json": "unsupported-type",
    "coin-example-1.json": "unsupported-type",
    "coin-example-timefault.json": "unsupported-type",
    "compound-numeric-blood-pressure-no-mean.json": "created",
    # Same device, time and subject as the one above: the gateway's dedup key has no mean.
    "compound-numeric-blood-pressure.json": "duplicate",
    "compound-observation-glucose.json": "unsupported-type",  # private MDC code system
    "glucose-observation.json": "unsupported-type",  # 160368 plasma glucose, not capillary
    "meal-context-observation.json": "unsupported-type",  # coded meal context
    "numeric-observation-not-a-number.json": "unsupported-type",  # 150320 pulse-oximetry index
    "numeric-spo2-alarm.json": "created",  # 79 %: stored and flagged low
    "numeric-spotnumeric.json": "created",  # MDC 149530 pulse rate, unit typo in display
    "rtsa-example-2.json": "unsupported-type",  # ECG valueSampledData
    "rtsa-example.json": "unsupported-type",  # pleth valueSampledData
    "string-observation-1.json": "unsupported-type",  # valueString
    "stringenum-1234.json": "unsupported-type",
    "temperature-observation.json": "created",
}

R4_WITH_PATIENT = {
    "observation-example-bloodpressure-cancel.json": "invalid-reading",  # status cancelled
    "observation-example-bloodpressure-dar.json": "missing-component",  # systolic absent
    "observation-example-bloodpressure.json": "missing-offset",
    "observation-example-bmi.json": "missing-offset",
    "observation-example-body-height.json": "missing-offset",
    "observation-example-body-temperature.json": "missing-offset",
    "observation-example-heart-rate.json": "missing-offset",
    "observation-example-respiratory-rate.json": "missing-offset",
    "observation-example-sample-data.json": "unsupported-type",  # ECG SampledData, MDC by OID
    "observation-example-satO2.json": "created",  # has an offset; device is a DeviceMetric
    "observation-example-vitals-panel.json": "unsupported-type",  # 85353-1 panel of references
    "observation-example.json": "missing-offset",  # body weight in [lb_av], date only
}


def load(name: str) -> dict[str, Any]:
    return dict(orjson.loads((FIXTURES / name).read_bytes()))


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": r} for r in resources],
    }


def phd_bundle() -> dict[str, Any]:
    observations = [load(name) for name in PHD_WITH_PATIENT]
    continuous = [e["resource"] for e in load("bundle-continuousnonin.json")["entry"]]
    devices = [load(name) for name in PHD_DEVICES]
    return bundle(load("patientExample-1.json"), *devices, *observations, *continuous)


def r4_bundle() -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "example", "identifier": [R4_PATIENT]}
    return bundle(patient, *[load(f"r4/{name}") for name in R4_WITH_PATIENT])


def outcomes(body: dict[str, Any]) -> list[str]:
    return [
        r["error"]["code"] if r["outcome"] == "rejected" else r["outcome"] for r in body["results"]
    ]


def normalised(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in VOLATILE}


def assert_snapshot(name: str, stored: list[dict[str, Any]]) -> None:
    for resource in stored:
        Observation.model_validate(resource)
    found = sorted(
        (normalised(r) for r in stored), key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
    )
    path = SNAPSHOTS / name
    text = orjson.dumps(found, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.read_text() == text


async def test_each_published_example_is_stored_or_rejected_as_expected(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-PHD-1", extra=[MR])
    found = {}
    for name in PUBLISHED:
        status, body = await gateway.ingest("cn", load(name), fmt="fhir")
        assert status in (200, 207, 422), (name, status, body)
        found[name] = outcomes(body)
    assert found == PUBLISHED
    for name in NOT_OBSERVATIONS:
        status, body = await gateway.ingest("cn", load(name), fmt="fhir")
        assert (status, body["error"]["code"]) == (400, "invalid-body"), name
    assert_snapshot("bundle-example-1.json", await stored_observations(zone_dsns["cn"]))


async def test_phd_observations_with_their_patient_and_devices_are_stored_pseudonymised(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-PHD-1", extra=[MR])
    status, body = await gateway.ingest("cn", phd_bundle(), fmt="fhir")
    assert status in (200, 207), body
    found = outcomes(body)
    assert dict(zip(PHD_WITH_PATIENT, found, strict=False)) == PHD_WITH_PATIENT
    # The 47 continuous oximeter entries: SpO2 and pulse rate stored, other MDC codes rejected.
    continuous = found[len(PHD_WITH_PATIENT) :]
    assert len(continuous) == 47
    assert set(continuous) == {"created", "unsupported-type"}
    stored = await stored_observations(zone_dsns["cn"])
    assert len(stored) == found.count("created")
    assert_snapshot("phd-with-patient.json", stored)
    text = orjson.dumps(stored).decode()
    for secret in (
        "sisansarahId",
        "Piggy",
        "74E8FFFEFF051C00",
        "74-E8-FF-FE",
        "numeric-spotnumeric",
        "-149530-",
    ):
        assert secret not in text


async def test_r4_vital_signs_examples_need_an_offset(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("eu", "MRN-R4-1", extra=[R4_PATIENT])
    status, body = await gateway.ingest("eu", r4_bundle(), fmt="fhir")
    assert status in (200, 207), body
    assert dict(zip(R4_WITH_PATIENT, outcomes(body), strict=True)) == R4_WITH_PATIENT
    assert_snapshot("r4-with-patient.json", await stored_observations(zone_dsns["eu"]))


async def test_replaying_a_bundle_gives_duplicate_for_every_reading(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-PHD-1", extra=[MR])
    _, first = await gateway.ingest("cn", load("bundle-example-1.json"), fmt="fhir")
    _, again = await gateway.ingest("cn", load("bundle-example-1.json"), fmt="fhir")
    assert outcomes(first) == ["unsupported-type", "created", "created"]
    assert outcomes(again) == ["unsupported-type", "duplicate", "duplicate"]


async def test_ndjson_observations_are_stored(gateway: Gateway, zone_dsns: dict[str, str]) -> None:
    await gateway.enrol("cn", "MRN-PHD-1", extra=[MR])
    lines = []
    for name in ("numeric-spotnumeric.json", "temperature-observation.json"):
        observation = load(name)
        observation["subject"] = {"identifier": MR}
        lines.append(orjson.dumps(observation))
    response = await gateway.client.post(
        "/v1/ingest/fhir",
        data=b"\n".join(lines),
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/fhir+ndjson"},
    )
    assert response.status == 200, await response.text()
    assert outcomes(await response.json()) == ["created", "created"]
    assert len(await stored_observations(zone_dsns["cn"])) == 2


async def test_malformed_bodies_are_refused_and_the_gateway_stays_healthy(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-PHD-1", extra=[MR])
    good = (FIXTURES / "bundle-example-1.json").read_bytes()
    headers = {**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/fhir+json"}
    cases = [
        (good[: len(good) // 2], "invalid-json"),
        (b'{"resourceType": "Bundle", "type": "transaction", "entry": {}}', "invalid-body"),
        (b'{"resourceType": "Bundle", "type": "history", "entry": [{}]}', "invalid-body"),
        (b'{"resourceType": "Patient"}', "invalid-body"),
        (b"[]", "invalid-body"),
    ]
    for data, code in cases:
        response = await gateway.client.post("/v1/ingest/fhir", data=data, headers=headers)
        assert response.status == 400, data
        assert (await response.json())["error"]["code"] == code
    assert await stored_observations(zone_dsns["cn"]) == []
    response = await gateway.client.post("/v1/ingest/fhir", data=good, headers=headers)
    assert response.status in (200, 207)
    assert len(await stored_observations(zone_dsns["cn"])) == 2
