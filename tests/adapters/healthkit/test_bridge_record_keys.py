"""HealthKit bridge samples are identified by their uuid: real HTTP, real PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import Gateway
from tests.helpers import stored_observations

PARTICIPANT = {"system": "https://example.org/study-participant", "value": "P-0002"}


def heart_rate(uuid: str, bpm: float = 72) -> dict[str, Any]:
    return {
        "type": "HKQuantityTypeIdentifierHeartRate",
        "quantity": bpm,
        "unit": "count/min",
        "startDate": "2024-06-15T08:00:00+08:00",
        "endDate": "2024-06-15T08:00:00+08:00",
        "uuid": uuid,
        "sourceName": "Apple Watch",
        "subject": PARTICIPANT,
    }


async def post(gateway: Gateway, *samples: dict[str, Any]) -> dict[str, Any]:
    status, body = await gateway.ingest("cn", {"samples": list(samples)}, fmt="healthkit")
    assert status == 200, body
    return body


async def test_two_samples_at_one_instant_with_different_uuids_are_two_readings(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HK-2", extra=[PARTICIPANT])
    body = await post(
        gateway,
        heart_rate("6F1C2B0E-0000-4000-8000-0000000000A1", 72),
        heart_rate("6F1C2B0E-0000-4000-8000-0000000000A2", 74),
    )

    assert [r["outcome"] for r in body["results"]] == ["created", "created"]
    assert body["results"][0]["id"] != body["results"][1]["id"]
    assert len(await stored_observations(zone_dsns["cn"])) == 2


async def test_a_re_posted_uuid_is_a_duplicate_with_the_same_id(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HK-2", extra=[PARTICIPANT])
    first = await post(gateway, heart_rate("6F1C2B0E-0000-4000-8000-0000000000A1"))
    again = await post(gateway, heart_rate("6F1C2B0E-0000-4000-8000-0000000000A1"))

    assert again["results"][0]["outcome"] == "duplicate"
    assert again["results"][0]["id"] == first["results"][0]["id"]
    assert len(await stored_observations(zone_dsns["cn"])) == 1
