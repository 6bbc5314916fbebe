"""POST /v1/ingest/withings end to end: recorded Withings responses through the real app."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from gateway.adapters.withings import WITHINGS_USER_SYSTEM
from tests.conftest import Gateway
from tests.helpers import fetch, stored_observations

FIXTURES = Path(__file__).parents[2] / "fixtures" / "withings"
SNAPSHOTS = Path(__file__).parent / "snapshots"
USERID = "37665"
VOLATILE = ("id", "identifier", "issued")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def envelope(response: Any) -> dict[str, Any]:
    return {"userid": USERID, "response": response}


# Each sample as published, wrapped in the adapter's envelope. The measurement_list excerpt is a
# bare array of groups (the client library's fixture), so it gets the getmeas body around it;
# its first 15 groups hold manual entries, attrib 17, attrib 1 and BPM Connect readings.
SAMPLES: dict[str, Any] = {
    "shimmer-body-measures": fixture("withings-body-measures.json"),
    "aiowithings-measurement": fixture("measurement.json"),
    "aiowithings-measurement-list": {
        "status": 0,
        "body": {"measuregrps": fixture("measurement_list.excerpt-0-69.json")[:15]},
    },
    "shimmer-intraday-activity": fixture("withings-intraday-activity.json"),
}


def comparable(resource: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in resource.items() if key not in VOLATILE}
    kept["meta"] = {k: v for k, v in resource["meta"].items() if k != "lastUpdated"}
    kept["subject"] = "Patient/<pseudonym>"
    kept["device"] = "Device/<pseudonym>"
    return kept


def effective(resource: dict[str, Any]) -> str:
    return str(resource.get("effectiveDateTime") or resource["effectivePeriod"]["start"])


@pytest.mark.parametrize("sample", list(SAMPLES))
async def test_a_recorded_sample_is_stored_as_the_reviewed_observations(
    gateway: Gateway, zone_dsns: dict[str, str], sample: str
) -> None:
    await gateway.enrol("eu", "MRN-W1", extra=[{"system": WITHINGS_USER_SYSTEM, "value": USERID}])
    status, body = await gateway.ingest("eu", envelope(SAMPLES[sample]), fmt="withings")
    assert status in (200, 207), body

    stored = await stored_observations(zone_dsns["eu"])
    assert len(stored) == body["summary"]["created"]
    for resource in stored:
        Observation.model_validate(resource)
    outcomes = [
        entry["error"]["code"] if entry["outcome"] == "rejected" else entry["outcome"]
        for entry in body["results"]
    ]
    snapshot = {
        "outcomes": outcomes,
        "observations": sorted(
            (comparable(r) for r in stored), key=lambda r: (effective(r), r["code"]["text"])
        ),
    }
    path = SNAPSHOTS / f"{sample}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n")
    assert snapshot == json.loads(path.read_text())
    assert await stored_observations(zone_dsns["cn"]) == []


async def test_replaying_a_sample_gives_duplicate_for_every_stored_reading(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("eu", "MRN-W1", extra=[{"system": WITHINGS_USER_SYSTEM, "value": USERID}])
    payload = envelope(SAMPLES["aiowithings-measurement-list"])
    _, first = await gateway.ingest("eu", payload, fmt="withings")
    _, again = await gateway.ingest("eu", payload, fmt="withings")

    created = [e["index"] for e in first["results"] if e["outcome"] == "created"]
    assert created
    assert [e["index"] for e in again["results"] if e["outcome"] == "duplicate"] == created
    assert again["summary"]["created"] == 0
    assert len(await stored_observations(zone_dsns["eu"])) == len(created)


async def test_the_same_group_sent_with_attrib_0_and_8_is_stored_once(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("eu", "MRN-W1", extra=[{"system": WITHINGS_USER_SYSTEM, "value": USERID}])
    status, body = await gateway.ingest("eu", envelope(fixture("measurement.json")), fmt="withings")
    assert status == 200
    assert [e["outcome"] for e in body["results"]] == ["created", "duplicate"]
    [stored] = await stored_observations(zone_dsns["eu"])
    assert stored["valueQuantity"]["value"] == 118.003
    assert stored["effectiveDateTime"] == "2023-09-02T12:39:11+02:00"


async def test_readings_of_a_withings_account_nobody_enrolled_are_unknown_subject(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    status, body = await gateway.ingest("eu", envelope(fixture("measurement.json")), fmt="withings")
    assert status == 422
    assert {e["error"]["code"] for e in body["results"]} == {"unknown-subject"}
    assert await stored_observations(zone_dsns["eu"]) == []


MALFORMED: list[tuple[str, bytes, str]] = [
    ("truncated", json.dumps(envelope(fixture("measurement.json"))).encode()[:-30], "invalid-json"),
    ("bare-response", json.dumps(fixture("measurement.json")).encode(), "invalid-body"),
    ("no-userid", json.dumps({"response": fixture("measurement.json")}).encode(), "invalid-body"),
    (
        "vendor-error",
        json.dumps(envelope({"status": 401, "body": {}, "error": "invalid_token"})).encode(),
        "invalid-body",
    ),
    (
        "groups-not-an-array",
        json.dumps(envelope({"status": 0, "body": {"measuregrps": {"grpid": 1}}})).encode(),
        "invalid-body",
    ),
    (
        "status-a-string",
        json.dumps(envelope({"status": "0", "body": {"measuregrps": []}})).encode(),
        "invalid-body",
    ),
    (
        "sleep-summary",
        json.dumps(envelope(fixture("withings-sleep-summary.json"))).encode(),
        "invalid-body",
    ),
]


@pytest.mark.parametrize(
    ("body", "code"), [(b, c) for _, b, c in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
async def test_a_malformed_payload_is_a_4xx_that_stores_nothing_and_harms_nothing(
    gateway: Gateway, zone_dsns: dict[str, str], body: bytes, code: str
) -> None:
    await gateway.enrol("eu", "MRN-W1", extra=[{"system": WITHINGS_USER_SYSTEM, "value": USERID}])
    response = await gateway.client.post(
        "/v1/ingest/withings",
        data=body,
        headers={**gateway.auth(gateway.vendor["eu"]), "Content-Type": "application/json"},
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == code
    assert error["message"]
    assert await stored_observations(zone_dsns["eu"]) == []
    assert await fetch(zone_dsns["eu"], "SELECT 1 FROM dead_letters") == []

    status, _ = await gateway.ingest("eu", envelope(fixture("measurement.json")), fmt="withings")
    assert status == 200
