"""Health Connect record versions over HTTP: `metadata.clientRecordId` names the
record, a higher `clientRecordVersion` replaces the stored value, the replaced one is history."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.conftest import MRN, Gateway
from tests.helpers import fetch, stored_observations

SUBJECT = {"system": MRN["cn"], "value": "MRN-HC-V"}


def weight(kilograms: float, version: int | None, **metadata: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": "0b8f6d1e-2c3a-4e5f-8a9b-0c1d2e3f4a5b",
        "dataOrigin": {"packageName": "com.example.scale"},
        "clientRecordId": "weight-2025-08-09",
        **metadata,
    }
    if version is not None:
        meta["clientRecordVersion"] = version
    return {
        "recordType": "WeightRecord",
        "time": "2025-08-09T00:20:00Z",
        "zoneOffset": "+08:00",
        "weight": {"inKilograms": kilograms},
        "metadata": meta,
    }


async def post(gateway: Gateway, *records: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await gateway.ingest(
        "cn", {"subject": SUBJECT, "records": list(records)}, fmt="healthconnect"
    )


async def history(dsn: str) -> list[tuple[int, dict[str, Any]]]:
    rows = await fetch(
        dsn, "SELECT version, resource::text AS r FROM observation_versions ORDER BY version"
    )
    return [(row["version"], orjson.loads(row["r"])) for row in rows]


async def test_a_higher_client_record_version_updates_the_stored_value_and_keeps_the_old_one(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-V")
    _, first = await post(gateway, weight(70.2, 1))
    status, second = await post(gateway, weight(69.8, 2))

    assert status == 200, second
    assert first["results"][0]["outcome"] == "created"
    assert second["results"][0]["outcome"] == "updated"
    assert second["summary"] == {"created": 0, "updated": 1, "duplicate": 0, "rejected": 0}
    assert second["results"][0]["id"] == first["results"][0]["id"]
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["valueQuantity"]["value"] == 69.8
    assert stored["meta"]["versionId"] == "2"
    [(version, old)] = await history(zone_dsns["cn"])
    assert version == 1
    assert old["valueQuantity"]["value"] == 70.2
    assert old["meta"]["versionId"] == "1"


async def test_the_same_or_an_older_version_is_a_duplicate_and_the_stored_value_stands(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-V")
    await post(gateway, weight(69.8, 2))
    status, again = await post(gateway, weight(71.0, 2), weight(70.2, 1))

    assert status == 200
    assert [r["outcome"] for r in again["results"]] == ["duplicate", "duplicate"]
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["valueQuantity"]["value"] == 69.8


async def test_a_new_version_with_a_corrected_time_replaces_the_record_rather_than_adding_one(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-V")
    await post(gateway, weight(70.2, 1))
    moved = weight(70.2, 2) | {"time": "2025-09-01T00:20:00Z"}
    _, body = await post(gateway, moved)

    assert body["results"][0]["outcome"] == "updated"
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["effectiveDateTime"] == "2025-09-01T08:20:00+08:00"


async def test_the_same_client_record_id_from_two_apps_is_two_records(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-V")
    other_app = weight(80.0, 1, dataOrigin={"packageName": "com.example.other"})
    _, body = await post(gateway, weight(70.2, 1), other_app)

    assert [r["outcome"] for r in body["results"]] == ["created", "created"]
    assert len(await stored_observations(zone_dsns["cn"])) == 2


async def test_concurrent_posts_of_eight_versions_leave_the_highest_and_seven_in_history(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-V")
    answers = await asyncio.gather(*(post(gateway, weight(70 + v, v)) for v in range(1, 9)))

    assert {status for status, _ in answers} == {200}
    outcomes = [body["results"][0]["outcome"] for _, body in answers]
    assert outcomes.count("created") == 1
    assert outcomes[7] in ("created", "updated")
    [stored] = await stored_observations(zone_dsns["cn"])
    assert (stored["meta"]["versionId"], stored["valueQuantity"]["value"]) == ("8", 78)
    assert [version for version, _ in await history(zone_dsns["cn"])] == list(range(1, 8))


async def test_a_record_keyed_by_its_health_connect_id_is_unversioned(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HC-V")
    record = weight(70.2, None)
    del record["metadata"]["clientRecordId"]
    _, first = await post(gateway, record)
    _, again = await post(gateway, record | {"weight": {"inKilograms": 71.0}})

    assert [first["results"][0]["outcome"], again["results"][0]["outcome"]] == [
        "created",
        "duplicate",
    ]
    [stored] = await stored_observations(zone_dsns["cn"])
    assert "versionId" not in stored["meta"]
    assert await history(zone_dsns["cn"]) == []
