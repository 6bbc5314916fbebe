"""POST /v1/ingest/healthconnect end to end: real HTTP, real PostgreSQL, reviewed snapshots.

Snapshots under snapshots/ are rewritten with UPDATE_SNAPSHOTS=1 and compared otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

from tests.conftest import MRN, Gateway
from tests.helpers import fetch, stored_observations

HEAD = b'{"subject": {"system": "urn:oid:1.2.156.999.1", "value": "MRN-HC-1"}, '
FIXTURES = Path(__file__).parents[2] / "fixtures" / "healthconnect"
SNAPSHOTS = Path(__file__).parent / "snapshots"
SUBJECT = {"system": MRN["cn"], "value": "MRN-HC-1"}
# Differ per run or per key ring; everything else (codes, values, units, times) is compared.
VOLATILE = ("id", "identifier", "issued")


def body_of(fixture: str) -> dict[str, Any]:
    records = orjson.loads((FIXTURES / fixture).read_bytes())["records"]
    return {"subject": SUBJECT, "records": records}


def stable(resource: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in resource.items() if key not in VOLATILE}
    kept["meta"] = {k: v for k, v in resource["meta"].items() if k != "lastUpdated"}
    kept["subject"] = {"reference": "Patient/<pseudonym>"}
    kept["device"] = {"reference": "Device/<pseudonym>"}
    return kept


def assert_matches_snapshot(name: str, observations: list[dict[str, Any]]) -> None:
    # Stored order follows the keyed ids, which change with the keys: sort by content instead.
    found = sorted(
        (stable(o) for o in observations),
        key=lambda o: orjson.dumps(o, option=orjson.OPT_SORT_KEYS),
    )
    path = SNAPSHOTS / f"{name}.json"
    rendered = orjson.dumps(found, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_bytes(rendered)
    assert path.exists(), f"no snapshot {path.name}: run with UPDATE_SNAPSHOTS=1 and review it"
    assert orjson.loads(path.read_bytes()) == orjson.loads(rendered)


async def test_the_published_plugin_sample_stores_its_supported_records_as_in_the_snapshot(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-1")
    status, body = await gateway.ingest(
        "cn", body_of("healthconnect_beispiel_records.json"), fmt="healthconnect"
    )

    assert status == 207, body
    assert body["summary"] == {"created": 12, "updated": 0, "duplicate": 0, "rejected": 30}
    codes = {r["error"]["code"] for r in body["results"] if r["outcome"] == "rejected"}
    assert codes == {"unsupported-type"}
    stored = await stored_observations(zone_dsns["cn"])
    for resource in stored:
        Observation.model_validate(resource)
    assert_matches_snapshot("capacitor_sample", stored)
    assert await stored_observations(zone_dsns["eu"]) == []


async def test_plain_sdk_records_keep_their_offsets_and_units_as_in_the_snapshot(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-1")
    status, body = await gateway.ingest("cn", body_of("plain_records.json"), fmt="healthconnect")

    assert status == 200, body
    assert body["summary"] == {"created": 13, "updated": 0, "duplicate": 0, "rejected": 0}
    stored = await stored_observations(zone_dsns["cn"])
    for resource in stored:
        Observation.model_validate(resource)
    assert_matches_snapshot("plain_records", stored)


async def test_a_record_without_a_zone_offset_is_stored_in_utc_marked_offset_assumed(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-1")
    record = {"type": "Weight", "time": "2025-08-09T00:20:00Z", "weight": {"inKilograms": 70}}
    status, _ = await gateway.ingest(
        "cn", {"subject": SUBJECT, "records": [record]}, fmt="healthconnect"
    )

    assert status == 200
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["effectiveDateTime"] == "2025-08-09T00:20:00+00:00"
    assert stored["extension"] == [
        {"url": "urn:wearable-gateway:extension:offset-assumed", "valueBoolean": True}
    ]


async def test_replaying_the_same_records_answers_duplicate_for_every_reading(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-1")
    _, first = await gateway.ingest("cn", body_of("plain_records.json"), fmt="healthconnect")
    status, again = await gateway.ingest("cn", body_of("plain_records.json"), fmt="healthconnect")

    assert status == 200
    assert again["summary"] == {"created": 0, "updated": 0, "duplicate": 13, "rejected": 0}
    assert [r["id"] for r in again["results"]] == [r["id"] for r in first["results"]]
    assert len(await stored_observations(zone_dsns["cn"])) == 13


async def test_records_of_a_subject_nobody_enrolled_are_rejected(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    status, body = await gateway.ingest("cn", body_of("plain_records.json"), fmt="healthconnect")

    assert status == 422
    assert {r["error"]["code"] for r in body["results"]} == {"unknown-subject"}
    assert await stored_observations(zone_dsns["cn"]) == []


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (
            HEAD + b'"records": [{"ty',
            "invalid-json",
        ),
        (
            HEAD + b'"records": {}}',
            "invalid-body",
        ),
        (
            b'{"subject": ["urn:oid:1.2.156.999.1", "MRN-HC-1"], "records": [{"type": "Weight"}]}',
            "invalid-body",
        ),
        (b'{"records": [{"type": "Weight", "time": "2025-08-09T00:20:00Z"}]}', "invalid-body"),
        (b'"records"', "invalid-body"),
    ],
    ids=["truncated", "records-not-array", "subject-wrong-type", "subject-missing", "not-object"],
)
async def test_a_malformed_body_is_a_400_that_stores_nothing_and_leaves_the_service_healthy(
    gateway: Gateway, zone_dsns: dict[str, str], payload: bytes, code: str
) -> None:
    await gateway.enrol("cn", "MRN-HC-1")
    response = await gateway.client.post(
        "/v1/ingest/healthconnect",
        data=payload,
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/json"},
    )

    assert response.status == 400
    assert (await response.json())["error"]["code"] == code
    assert await stored_observations(zone_dsns["cn"]) == []
    assert await fetch(zone_dsns["cn"], "SELECT 1 FROM dead_letters") == []
    status, _ = await gateway.ingest("cn", body_of("plain_records.json"), fmt="healthconnect")
    assert status == 200
