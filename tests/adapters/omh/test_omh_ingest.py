"""POST /v1/ingest/omh end to end with the published samples: real HTTP and PostgreSQL."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

from tests.adapters.omh.samples import (
    FAIL_CODES,
    PASS_REJECTED,
    SUBJECT,
    data_point,
    sample_keys,
)
from tests.conftest import Gateway
from tests.helpers import fetch, stored_observations

SNAPSHOT = Path(__file__).parent / "snapshots" / "should-pass.json"
VOLATILE = ("id", "identifier", "issued")


async def post(gateway: Gateway, body: bytes) -> tuple[int, dict[str, Any]]:
    response = await gateway.client.post(
        "/v1/ingest/omh",
        data=body,
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/json"},
    )
    return response.status, await response.json()


def stable(resource: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in resource.items() if key not in VOLATILE}
    kept["subject"] = {key: v for key, v in kept["subject"].items() if key != "reference"}
    kept["device"] = {key: v for key, v in kept["device"].items() if key != "reference"}
    kept["meta"] = {key: v for key, v in kept["meta"].items() if key != "lastUpdated"}
    return kept


async def test_every_should_pass_sample_is_stored_or_refused_for_its_listed_reason(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-OMH-1", extra=[SUBJECT])
    keys = sample_keys("Pass")
    status, body = await post(gateway, orjson.dumps([data_point(k, "Pass") for k in keys]))

    assert status == 207, body
    stored = {resource["id"]: resource for resource in await stored_observations(zone_dsns["cn"])}
    rendered: dict[str, Any] = {}
    for key, result in zip(keys, body["results"], strict=True):
        if key in PASS_REJECTED:
            assert result["outcome"] == "rejected", key
            assert result["error"]["code"] == PASS_REJECTED[key], key
            continue
        assert result["outcome"] == "created", (key, result)
        resource = stored.pop(result["id"])
        Observation.model_validate(resource)
        rendered[key] = stable(resource)
    assert stored == {}

    text = json.dumps(rendered, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


async def test_every_should_fail_sample_is_refused_with_its_code_and_nothing_is_stored(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-OMH-1", extra=[SUBJECT])
    keys = sample_keys("Fail")
    status, body = await post(gateway, orjson.dumps([data_point(k, "Fail") for k in keys]))

    assert status == 422
    codes = {
        key: result["error"]["code"] for key, result in zip(keys, body["results"], strict=True)
    }
    assert codes == FAIL_CODES
    assert await stored_observations(zone_dsns["cn"]) == []
    letters = await fetch(zone_dsns["cn"], "SELECT code FROM dead_letters ORDER BY item_index")
    assert [row["code"] for row in letters] == [FAIL_CODES[key] for key in keys]


async def test_replaying_the_samples_gives_duplicate_for_every_reading(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-OMH-1", extra=[SUBJECT])
    keys = [key for key in sample_keys("Pass") if key not in PASS_REJECTED]
    payload = orjson.dumps([data_point(k, "Pass") for k in keys])
    first_status, first = await post(gateway, payload)
    status, again = await post(gateway, payload)

    assert (first_status, status) == (200, 200)
    assert again["summary"] == {"created": 0, "updated": 0, "duplicate": len(keys), "rejected": 0}
    assert [r["id"] for r in again["results"]] == [r["id"] for r in first["results"]]


async def test_a_reading_of_a_user_not_enrolled_is_unknown_subject(gateway: Gateway) -> None:
    status, body = await post(
        gateway, orjson.dumps(data_point("heart-rate/2.0/with-descriptive-statistic.json", "Pass"))
    )
    assert status == 422
    assert body["results"][0]["error"]["code"] == "unknown-subject"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'[{"header": {"id": "1"', "invalid-json"),
        (b"[]", "invalid-body"),
        (b'"data point"', "invalid-body"),
        (b'{"heart_rate": {"value": 60, "unit": "beats/min"}}', "invalid-body"),
    ],
)
async def test_a_body_that_is_not_data_points_is_400_and_the_next_request_works(
    gateway: Gateway, zone_dsns: dict[str, str], body: bytes, code: str
) -> None:
    await gateway.enrol("cn", "MRN-OMH-1", extra=[SUBJECT])
    status, answer = await post(gateway, body)
    assert status == 400
    assert answer["error"]["code"] == code
    assert await stored_observations(zone_dsns["cn"]) == []

    good = data_point("heart-rate/2.0/with-temporal-relationship-to-sleep.json", "Pass")
    status, _ = await post(gateway, orjson.dumps(good))
    assert status == 200


async def test_a_data_point_with_wrong_types_is_rejected_and_not_stored(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-OMH-1", extra=[SUBJECT])
    point = data_point("heart-rate/2.0/with-temporal-relationship-to-sleep.json", "Pass")
    point["body"]["heart_rate"]["value"] = "67.5"
    status, body = await post(gateway, orjson.dumps(point))
    assert status == 422
    assert body["results"][0]["error"]["code"] == "invalid-reading"
    assert "heart_rate.value" in body["results"][0]["error"]["message"]
    assert await stored_observations(zone_dsns["cn"]) == []
