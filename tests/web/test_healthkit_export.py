"""POST /v1/ingest/healthkit/export: a whole Apple Health export.xml, streamed and stored in
batches; counts in the answer; nothing already stored is lost when the body breaks part-way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir.resources.R4B.observation import Observation

from gateway.adapters.healthkit.export import ExportSummary, parse_export
from gateway.models import CandidateReading, Identifier
from tests.conftest import Gateway, start_gateway
from tests.helpers import fetch, stored_observations

FIXTURES = Path(__file__).parents[1] / "fixtures" / "healthkit"
EXPORT = (FIXTURES / "ahcd-export.xml").read_bytes()
PARTICIPANT = {"system": "https://example.org/study-participant", "value": "P-0001"}
QUERY = {"subject_system": PARTICIPANT["system"], "subject_value": PARTICIPANT["value"]}


async def upload(
    gateway: Gateway, body: bytes, query: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await gateway.client.post(
        "/v1/ingest/healthkit/export",
        params=QUERY if query is None else query,
        data=body,
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/xml"},
    )
    return response.status, await response.json()


def expected_readings() -> tuple[int, ExportSummary]:
    summary = ExportSummary()
    items = list(parse_export(EXPORT, Identifier(**PARTICIPANT), "f", summary=summary))
    return sum(isinstance(i, CandidateReading) for i in items), summary


async def test_an_export_is_stored_for_the_subject_named_in_the_query(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    status, body = await upload(gateway, EXPORT)

    readings, summary = expected_readings()
    assert status in (200, 207), body
    assert body["summary"]["created"] > 0
    assert sum(body["summary"].values()) == readings
    assert body["skipped"]["total"] == summary.skipped
    stored = await stored_observations(zone_dsns["cn"])
    assert len(stored) == body["summary"]["created"]
    for resource in stored:
        Observation.model_validate(resource)

    _, again = await upload(gateway, EXPORT)
    assert again["summary"]["created"] == 0
    assert again["summary"]["duplicate"] == body["summary"]["created"]


async def test_small_batches_store_the_same_readings(
    aiohttp_client: Any, settings: Any, zone_dsns: dict[str, str]
) -> None:
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(export_batch_readings=3))
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    status, body = await upload(gateway, EXPORT)
    readings, _ = expected_readings()
    assert status in (200, 207), body
    assert sum(body["summary"].values()) == readings
    assert len(await stored_observations(zone_dsns["cn"])) == body["summary"]["created"]


async def test_a_body_that_breaks_part_way_keeps_what_was_stored_and_says_so(
    aiohttp_client: Any, settings: Any, zone_dsns: dict[str, str]
) -> None:
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(export_batch_readings=2))
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    cut = EXPORT.rindex(b"<Record")
    status, body = await upload(gateway, EXPORT[:cut] + b"<Record broken")

    assert status == 400
    assert body["error"]["code"] == "invalid-body"
    stored = await stored_observations(zone_dsns["cn"])
    assert len(stored) == body["stored_before_error"]["created"]


async def test_an_export_without_its_subject_is_refused(gateway: Gateway) -> None:
    status, body = await upload(gateway, EXPORT, query={})
    assert (status, body["error"]["code"]) == (400, "subject-required")


async def test_an_export_of_a_subject_not_enrolled_stores_nothing(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    status, body = await upload(gateway, EXPORT)
    assert status == 422
    assert body["rejections"] == {"unknown-subject": sum(body["summary"].values())}
    assert await stored_observations(zone_dsns["cn"]) == []
    assert await fetch(zone_dsns["cn"], "SELECT 1 FROM dead_letters LIMIT 1")


async def test_entity_declarations_are_refused_before_anything_is_stored(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE HealthData [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b"<HealthData>&c;</HealthData>"
    )
    status, body = await upload(gateway, laughs)
    assert (status, body["error"]["code"]) == (400, "invalid-body")
    assert await stored_observations(zone_dsns["cn"]) == []


async def test_an_export_larger_than_the_limit_is_413(
    aiohttp_client: Any, settings: Any, zone_dsns: dict[str, str]
) -> None:
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(max_export_bytes=1000))
    await gateway.enrol("cn", "MRN-HK-1", extra=[PARTICIPANT])
    status, body = await upload(gateway, EXPORT)
    assert (status, body["error"]["code"]) == (413, "payload-too-large")
    assert await stored_observations(zone_dsns["cn"]) == []
