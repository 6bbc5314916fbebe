"""POST /v1/ingest/native end to end: real HTTP, real PostgreSQL, two zone databases."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from gateway.app import create_app
from tests.conftest import Gateway, start_gateway
from tests.helpers import CN_TZ, blood_pressure, fetch, reading, steps, stored_observations


async def test_a_reading_is_stored_in_its_subjects_zone_and_nowhere_else(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await gateway.enrol("cn", "MRN-1")
    status, body = await gateway.ingest("cn", [reading("MRN-1", value=72)])

    assert status == 200
    assert body["summary"] == {"created": 1, "updated": 0, "duplicate": 0, "rejected": 0}
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["id"] == body["results"][0]["id"]
    assert stored["subject"] == {"reference": f"Patient/{pseudonym}"}
    assert stored["valueQuantity"]["value"] == 72
    assert stored["valueQuantity"]["code"] == "/min"
    assert await stored_observations(zone_dsns["eu"]) == []
    assert await fetch(zone_dsns["eu"], "SELECT 1 FROM subjects") == []


async def test_every_stored_observation_is_valid_fhir_r4(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    readings = [
        reading("MRN-1", kind="heart-rate", value=61),
        reading("MRN-1", kind="resting-heart-rate", value=58, unit="bpm"),
        reading("MRN-1", kind="respiratory-rate", value=14),
        reading("MRN-1", kind="oxygen-saturation", value=97, unit="%"),
        reading("MRN-1", kind="body-temperature", value=98.6, unit="[degF]"),
        reading("MRN-1", kind="body-weight", value=165, unit="[lb_av]"),
        reading("MRN-1", kind="body-height", value=1.72, unit="m"),
        reading("MRN-1", kind="body-mass-index", value=24.1, unit="kg/m2"),
        reading("MRN-1", kind="blood-glucose", value=5.5, unit="mmol/L"),
        reading("MRN-1", kind="heart-rate-variability-sdnn", value=42, unit="ms"),
        blood_pressure("MRN-1", 128, 82),
        steps("MRN-1", 900),
    ]
    status, body = await gateway.ingest("cn", readings)
    assert status == 200, body
    stored = await stored_observations(zone_dsns["cn"])
    assert len(stored) == len(readings)
    for resource in stored:
        Observation.model_validate(resource)


async def test_a_converted_unit_is_stored_in_ucum_and_keeps_the_device_offset(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    when = datetime(2026, 11, 29, 9, 30, tzinfo=CN_TZ)
    await gateway.ingest(
        "cn", [reading("MRN-1", kind="body-weight", value=165, unit="lb", time=when)]
    )
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["valueQuantity"]["code"] == "kg"
    assert stored["valueQuantity"]["value"] == pytest.approx(74.84274, abs=1e-5)
    assert stored["effectiveDateTime"].startswith("2026-11-29T09:30:00")
    assert stored["effectiveDateTime"].endswith("+08:00")


async def test_a_value_outside_the_soft_range_is_stored_with_an_interpretation(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    status, _ = await gateway.ingest("cn", [reading("MRN-1", value=210)])
    assert status == 200
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["interpretation"][0]["coding"][0]["code"] == "H"


def _future() -> str:
    return (datetime.now(CN_TZ) + timedelta(hours=2)).isoformat()


REJECTIONS: list[tuple[str, dict[str, Any]]] = [
    ("unknown-subject", reading("NOT-ENROLLED")),
    ("unsupported-type", reading("MRN-1", kind="blood-ketones")),
    ("unit-not-convertible", reading("MRN-1", kind="body-weight", value=11, unit="stone")),
    ("out-of-range", reading("MRN-1", value=400)),
    ("missing-offset", reading("MRN-1", time="2026-11-29T09:30:00")),
    ("future-timestamp", reading("MRN-1", time=_future())),
    ("systolic-not-above-diastolic", blood_pressure("MRN-1", 80, 95)),
    ("wrong-zone", reading("MRN-1", zone="eu")),
    ("invalid-reading", {"subject": {"system": "urn:x"}, "type": "heart-rate"}),
]


@pytest.mark.parametrize(("code", "bad"), REJECTIONS, ids=[code for code, _ in REJECTIONS])
async def test_each_invalid_reading_is_rejected_with_its_own_code_and_dead_lettered(
    gateway: Gateway, zone_dsns: dict[str, str], code: str, bad: dict[str, Any]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    status, body = await gateway.ingest("cn", [reading("MRN-1", value=70), bad])

    assert status == 207
    good, rejected = body["results"]
    assert good["outcome"] == "created"
    assert rejected["outcome"] == "rejected"
    assert rejected["error"]["code"] == code
    assert rejected["error"]["message"]
    assert len(await stored_observations(zone_dsns["cn"])) == 1
    letters = await fetch(zone_dsns["cn"], "SELECT code, item_index, reason FROM dead_letters")
    assert [(row["code"], row["item_index"]) for row in letters] == [(code, 1)]


async def test_a_subject_of_another_served_zone_is_refused_naming_the_zone(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol(
        "eu", "EU-7", extra=[{"system": "urn:oid:1.2.156.999.1", "value": "SHARED"}]
    )
    status, body = await gateway.ingest("cn", [reading("SHARED")])
    assert status == 422
    error = body["results"][0]["error"]
    assert error["code"] == "wrong-zone"
    assert "eu" in error["message"]
    assert "SHARED" not in error["message"]
    assert await stored_observations(zone_dsns["cn"]) == []
    assert await stored_observations(zone_dsns["eu"]) == []


async def test_a_zone_this_gateway_does_not_serve_is_named_in_the_refusal(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1")
    status, body = await gateway.ingest("cn", [reading("MRN-1", zone="us")])
    assert status == 422
    assert "does not serve" in body["results"][0]["error"]["message"]


async def test_all_rejected_is_422(gateway: Gateway) -> None:
    status, body = await gateway.ingest("cn", [reading("NOBODY"), reading("NOBODY-2")])
    assert status == 422
    assert body["summary"] == {"created": 0, "updated": 0, "duplicate": 0, "rejected": 2}


async def test_the_same_reading_posted_twice_is_stored_once_with_one_id(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    batch = [reading("MRN-1", value=70), blood_pressure("MRN-1", 120, 80)]
    _, first = await gateway.ingest("cn", batch)
    status, second = await gateway.ingest("cn", batch)

    assert status == 200
    assert [r["outcome"] for r in second["results"]] == ["duplicate", "duplicate"]
    assert [r["id"] for r in second["results"]] == [r["id"] for r in first["results"]]
    assert len(await stored_observations(zone_dsns["cn"])) == 2


async def test_the_same_instant_with_another_offset_is_the_same_reading(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1")
    local = datetime(2026, 11, 29, 9, 30, tzinfo=CN_TZ)
    _, first = await gateway.ingest("cn", [reading("MRN-1", time=local)])
    _, second = await gateway.ingest("cn", [reading("MRN-1", time=local.astimezone(tz=None))])
    assert second["results"][0] == {**first["results"][0], "outcome": "duplicate"}


async def test_a_reading_repeated_within_one_request_is_created_once(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1")
    one = reading("MRN-1", value=70)
    _, body = await gateway.ingest("cn", [one, one])
    assert [r["outcome"] for r in body["results"]] == ["created", "duplicate"]


async def test_concurrent_posts_of_the_same_readings_converge_on_one_row_each(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-1")
    base = datetime.now(CN_TZ).replace(microsecond=0) - timedelta(hours=1)
    batch = [reading("MRN-1", value=60 + i, time=base + timedelta(seconds=i)) for i in range(50)]

    answers = await asyncio.gather(*(gateway.ingest("cn", batch) for _ in range(8)))

    assert {status for status, _ in answers} == {200}
    for i in range(len(batch)):
        outcomes = [body["results"][i]["outcome"] for _, body in answers]
        assert outcomes.count("created") == 1
        assert {body["results"][i]["id"] for _, body in answers} == {
            answers[0][1]["results"][i]["id"]
        }
    assert len(await stored_observations(zone_dsns["cn"])) == len(batch)


async def test_a_restarted_gateway_with_the_same_keys_keeps_pseudonyms_and_ids(
    aiohttp_client: Any, settings: Any, zone_dsns: dict[str, str]
) -> None:
    first = await start_gateway(aiohttp_client, settings)
    pseudonym = await first.enrol("cn", "MRN-1")
    one = reading("MRN-1", value=70)
    _, before = await first.ingest("cn", [one])
    await first.client.close()

    second = await start_gateway(aiohttp_client, settings)
    _, after = await second.ingest("cn", [one])
    assert after["results"][0]["outcome"] == "duplicate"
    assert after["results"][0]["id"] == before["results"][0]["id"]
    [stored] = await stored_observations(zone_dsns["cn"])
    assert stored["subject"]["reference"] == f"Patient/{pseudonym}"


async def test_a_single_reading_and_ndjson_are_accepted(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1")
    status, body = await gateway.ingest("cn", reading("MRN-1", value=70))
    assert status == 200
    assert body["summary"]["created"] == 1

    lines = b"\n".join(
        __import__("orjson").dumps(reading("MRN-1", value=v, device=f"D-{v}")) for v in (71, 72)
    )
    response = await gateway.client.post(
        "/v1/ingest/native",
        data=lines,
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": "application/x-ndjson"},
    )
    assert response.status == 200
    assert (await response.json())["summary"]["created"] == 2


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid-json"),
        (b"[1, 2]", "application/json", 400, "invalid-body"),
        (b'{"readings": []}', "application/json", 400, "invalid-body"),
        (b'{"readings": "x"}', "application/json", 400, "invalid-body"),
        (b"<readings/>", "application/xml", 415, "unsupported-media-type"),
    ],
)
async def test_a_body_that_is_not_the_documented_shape_is_refused_whole(
    gateway: Gateway, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = await gateway.client.post(
        "/v1/ingest/native",
        data=body,
        headers={**gateway.auth(gateway.vendor["cn"]), "Content-Type": content_type},
    )
    assert response.status == status
    assert (await response.json())["error"]["code"] == code


async def test_an_oversized_body_is_413(
    aiohttp_client: Any, settings: Any, zone_dsns: dict[str, str]
) -> None:
    small = await start_gateway(aiohttp_client, settings.with_overrides(max_body_bytes=4096))
    await small.enrol("cn", "MRN-1")
    status, body = await small.ingest(
        "cn", [reading("MRN-1", value=70, device=f"D{i}") for i in range(100)]
    )
    assert status == 413
    assert body["error"]["code"] == "payload-too-large"
    assert await stored_observations(zone_dsns["cn"]) == []


async def test_an_unknown_format_is_404(gateway: Gateway) -> None:
    status, body = await gateway.ingest("cn", [reading("MRN-1")], fmt="carrier-pigeon")
    assert status == 404
    assert "carrier-pigeon" not in body["error"]["message"]


async def test_the_app_refuses_to_start_without_its_key_files(settings: Any, tmp_path: Any) -> None:
    from gateway.errors import ConfigurationError
    from gateway.settings import ZoneSettings

    broken = settings.with_overrides(
        zones={
            **settings.zones,
            "eu": ZoneSettings("eu", settings.zones["eu"].database_url, tmp_path / "missing.json"),
        }
    )
    with pytest.raises(ConfigurationError):
        create_app(broken)


def batch_rows_count(metrics_text: str) -> float:
    """How many database batches the zone's group-commit writer has written (`/metrics`)."""
    for line in metrics_text.splitlines():
        if line.startswith('gateway_storage_batch_rows_count{zone="cn"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_one_database_batch_keeps_each_requests_created_duplicate_and_rejected_outcomes(
    aiohttp_client: Any, settings: Any, zone_dsns: dict[str, str]
) -> None:
    # A writer that waits for company, so the concurrent requests below share one batch.
    gateway = await start_gateway(
        aiohttp_client, settings.with_overrides(write_max_wait_seconds=1.0)
    )
    await gateway.enrol("cn", "MRN-1")
    base = datetime.now(CN_TZ).replace(microsecond=0) - timedelta(hours=1)
    stored_before = [
        reading("MRN-1", value=60 + n, time=base + timedelta(seconds=n)) for n in range(4)
    ]
    status, _ = await gateway.ingest("cn", stored_before)
    assert status == 200
    batches_before = batch_rows_count(await (await gateway.client.get("/metrics")).text())

    requests = [
        [
            reading("MRN-1", value=80 + n, time=base + timedelta(minutes=10 + n)),  # new
            stored_before[n],  # already stored by the request above
            reading("MRN-1", value=999, time=base + timedelta(minutes=20 + n)),  # out of range
            reading("MRN-UNKNOWN", value=70, time=base + timedelta(minutes=30 + n)),
        ]
        for n in range(4)
    ]
    answers = await asyncio.gather(*(gateway.ingest("cn", r) for r in requests))

    batches_after = batch_rows_count(await (await gateway.client.get("/metrics")).text())
    assert batches_after - batches_before == 1  # the four requests' rows went in one batch
    for status, body in answers:
        assert status == 207
        outcomes = [r["outcome"] for r in body["results"]]
        assert outcomes == ["created", "duplicate", "rejected", "rejected"]
        assert [r["error"]["code"] for r in body["results"][2:]] == [
            "out-of-range",
            "unknown-subject",
        ]
    ids = [body["results"][0]["id"] for _, body in answers]
    assert len(set(ids)) == 4
    assert len(await stored_observations(zone_dsns["cn"])) == 4 + 4
