"""POST /v1/ingest/healthkit end to end: real HTTP, real PostgreSQL, stored Observations."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from tests.conftest import Gateway
from tests.helpers import stored_observations

FIXTURES = Path(__file__).parents[2] / "fixtures" / "healthkit"
SNAPSHOTS = Path(__file__).parent / "snapshots"
PARTICIPANT = {"system": "https://example.org/study-participant", "value": "P-0001"}
VOLATILE = ("id", "subject", "device", "identifier", "issued")


def normalised(resource: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in resource.items() if k not in VOLATILE}
    if "meta" in kept:
        kept["meta"] = {k: v for k, v in kept["meta"].items() if k != "lastUpdated"}
    return kept


def compare_snapshot(name: str, resources: list[dict[str, Any]]) -> None:
    path = SNAPSHOTS / name
    actual = sorted((normalised(r) for r in resources), key=lambda r: json.dumps(r, sort_keys=True))
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(json.dumps(actual, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert actual == json.loads(path.read_text())


async def post(
    gateway: Gateway, body: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    response = await gateway.client.post(
        "/v1/ingest/healthkit",
        data=body,
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": content_type},
    )
    return response.status, await response.json()


async def test_the_bridge_sample_is_stored_as_reviewed_fhir_observations(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    status, body = await post(gateway, (FIXTURES / "bridge-samples.json").read_bytes())

    assert status == 207, body
    assert body["summary"] == {"created": 6, "updated": 0, "duplicate": 0, "rejected": 1}
    assert body["results"][5]["error"]["code"] == "unsupported-type"
    stored = await stored_observations(zone_dsns["cn"])
    for resource in stored:
        Observation.model_validate(resource)
    compare_snapshot("bridge-samples.json", stored)


async def test_replaying_the_sample_gives_duplicate_for_every_reading(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    payload = (FIXTURES / "bridge-samples.json").read_bytes()
    _, first = await post(gateway, payload)
    _, second = await post(gateway, payload)

    assert second["summary"] == {"created": 0, "updated": 0, "duplicate": 6, "rejected": 1}
    created = [r.get("id") for r in first["results"]]
    assert [r.get("id") for r in second["results"]] == created
    assert len(await stored_observations(zone_dsns["cn"])) == 6


async def test_unit_traps_are_stored_in_canonical_ucum(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    samples = [
        ("OxygenSaturation", 0.97, "%"),
        ("BodyFatPercentage", 0.215, "%"),
        ("BodyTemperature", 98.6, "degF"),
        ("BodyMass", 165, "lb"),
        ("BloodGlucose", 5.5, "mmol<180.1558800000541>/L"),
    ]
    body = {
        "samples": [
            {
                "type": f"HKQuantityTypeIdentifier{kind}",
                "quantity": value,
                "unit": unit,
                "startDate": "2026-01-05T08:00:00+01:00",
                "endDate": "2026-01-05T08:00:00+01:00",
                "sourceName": "Health",
                "subject": PARTICIPANT,
            }
            for kind, value, unit in samples
        ]
    }
    status, result = await post(gateway, json.dumps(body).encode())
    assert status == 200, result
    values = {
        r["code"]["coding"][0]["code"]: (r["valueQuantity"]["value"], r["valueQuantity"]["code"])
        for r in await stored_observations(zone_dsns["cn"])
    }
    assert values["2708-6"] == (97, "%")
    assert values["41982-0"] == (21.5, "%")
    assert values["8310-5"] == (pytest.approx(37.0), "Cel")
    assert values["29463-7"] == (pytest.approx(74.842741), "kg")
    # HealthKit states no specimen, and "Health" is no known CGM: glucose, never capillary.
    assert values["glucose"] == (pytest.approx(99.08575), "mg/dL")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"samples": [{"type": "HKQuantityTypeIdentifierHeartRate"', "invalid-json"),
        (b'{"samples": "many"}', "invalid-body"),
        (b'{"readings": []}', "invalid-body"),
    ],
)
async def test_a_malformed_body_is_a_400_that_stores_nothing_and_the_next_request_works(
    gateway: Gateway, zone_dsns: dict[str, str], body: bytes, code: str
) -> None:
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    status, result = await post(gateway, body)
    assert (status, result["error"]["code"]) == (400, code)
    assert await stored_observations(zone_dsns["cn"]) == []

    status, _ = await post(gateway, (FIXTURES / "bridge-samples.json").read_bytes())
    assert status == 207


@pytest.mark.parametrize(
    "body",
    [
        (FIXTURES / "ahcd-export.xml").read_bytes(),
        b'<!DOCTYPE HealthData [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><HealthData>&xxe;</HealthData>',
    ],
)
async def test_an_export_xml_sent_to_the_json_endpoint_is_pointed_to_the_export_endpoint(
    gateway: Gateway, zone_dsns: dict[str, str], body: bytes
) -> None:
    status, result = await post(gateway, body, "application/xml")
    assert (status, result["error"]["code"]) == (400, "subject-required")
    assert "/v1/ingest/healthkit/export" in result["error"]["message"]
    assert await stored_observations(zone_dsns["cn"]) == []
