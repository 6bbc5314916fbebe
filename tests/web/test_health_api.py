"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg

from tests.conftest import Gateway
from tests.helpers import reading


async def test_healthz_answers_while_the_process_is_up(gateway: Gateway) -> None:
    response = await gateway.client.get("/healthz")
    assert response.status == 200


async def test_readyz_is_ready_when_every_zone_answers(gateway: Gateway) -> None:
    response = await gateway.client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["zones"] == {"cn": "ready", "eu": "ready"}


async def test_readyz_names_the_zone_whose_database_is_gone(
    gateway: Gateway, zone_dsns: dict[str, str], pg_server_dsn: str
) -> None:
    name = urlsplit(zone_dsns["eu"]).path.lstrip("/")
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        response = await gateway.client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["zones"] == {"cn": "ready", "eu": "unavailable"}
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def test_metrics_count_readings_by_format_zone_and_outcome(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-1")
    await gateway.ingest("cn", [reading("MRN-1", value=70), reading("MRN-1", value=999)])
    text = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_ingest_readings_total{format="native",outcome="created",zone="cn"} 1.0' in text
    assert (
        'gateway_ingest_rejections_total{code="out-of-range",format="native",zone="cn"} 1.0' in text
    )
    assert "gateway_http_request_duration_seconds_bucket" in text
    assert 'gateway_db_pool_connections{state="max",zone="eu"}' in text
    assert "gateway_storage_batch_rows" in text


async def test_a_zone_database_lost_mid_service_gives_503_with_retry_after(
    gateway: Gateway, zone_dsns: dict[str, str], pg_server_dsn: str
) -> None:
    await gateway.enrol("eu", "EU-1")
    name = urlsplit(zone_dsns["eu"]).path.lstrip("/")
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        response = await gateway.client.post(
            "/v1/ingest/native",
            json={"readings": [reading("EU-1", system="urn:oid:1.3.6.1.4.1.99999.1")]},
            headers=gateway.auth(gateway.vendor["eu"]),
        )
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert (await response.json())["error"]["code"] == "zone-unavailable"
        status, _ = await gateway.ingest("cn", [reading("NOBODY")])
        assert status == 422, "the other zone keeps working"
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
