"""Per-credential token buckets (API keys, SMART clients): 429 + Retry-After past the burst,
per credential, bounded memory."""

from __future__ import annotations

from typing import Any

from gateway.settings import Settings
from gateway.web.ratelimit import TokenBuckets
from tests.conftest import Gateway, start_gateway
from tests.helpers import reading
from tests.smart_helpers import client_token


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_admits_its_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)

    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == 0.5  # one token at 2 tokens/s
    clock.now += 0.5
    assert buckets.take("k") == 0.0
    assert buckets.take("other") == 0.0  # buckets are per key


def test_a_bucket_refills_at_the_rate_up_to_the_burst_only() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=10.0, burst=2, clock=clock)
    buckets.take("k")
    buckets.take("k")
    clock.now += 3600  # an hour idle refills to the burst, not to 36000
    assert [buckets.take("k") for _ in range(3)][:2] == [0.0, 0.0]
    assert buckets.take("k") > 0


def test_a_flood_of_distinct_keys_keeps_a_bounded_number_of_buckets() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100, clock=FakeClock())
    for n in range(10_000):
        buckets.take(f"key-{n}")
    assert len(buckets) == 100


async def _post(gateway: Gateway, token: str) -> Any:
    return await gateway.client.post(
        "/v1/ingest/native", json={"readings": [reading("MRN-1")]}, headers=gateway.auth(token)
    )


async def test_a_key_past_its_burst_gets_429_with_retry_after_and_is_counted(
    aiohttp_client: Any, settings: Settings
) -> None:
    gateway = await start_gateway(
        aiohttp_client, settings.with_overrides(rate_limit_per_second=0.25, rate_limit_burst=2)
    )
    assert [(await _post(gateway, gateway.vendor["cn"])).status for _ in range(2)] == [422, 422]

    refused = await _post(gateway, gateway.vendor["cn"])
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "4"  # one token at 0.25/s, whole seconds
    body = await refused.json()
    assert body["error"]["code"] == "rate-limited"
    assert body["request_id"] == refused.headers["X-Request-ID"]

    # Another key (another vendor, another zone) is not affected.
    assert (await _post(gateway, gateway.vendor["eu"])).status == 422
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_http_throttled_total{reason="rate-limit",zone="cn"} 1.0' in metrics


async def test_wrong_secrets_with_a_vendors_key_id_do_not_drain_its_bucket(
    aiohttp_client: Any, settings: Settings
) -> None:
    gateway = await start_gateway(
        aiohttp_client, settings.with_overrides(rate_limit_per_second=0.01, rate_limit_burst=1)
    )
    token = gateway.vendor["cn"]
    forged = token[:-43] + "A" * 43  # the same key id, another secret
    for _ in range(5):
        assert (await _post(gateway, forged)).status == 401
    assert (await _post(gateway, token)).status == 422


async def test_enrolment_and_withings_notifications_are_limited_per_key(
    aiohttp_client: Any, settings: Settings
) -> None:
    gateway = await start_gateway(
        aiohttp_client, settings.with_overrides(rate_limit_per_second=0.01, rate_limit_burst=1)
    )
    await gateway.enrol("cn", "MRN-1")
    again = await gateway.client.post(
        "/v1/subjects", json={}, headers=gateway.auth(gateway.clinic["cn"])
    )
    assert again.status == 429

    path = f"/v1/notify/withings/{gateway.vendor['eu']}"
    assert (await gateway.client.head(path)).status == 200
    refused = await gateway.client.post(path, data={"userid": "1", "appli": "1"})
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_smart_client_past_its_burst_gets_a_throttled_operation_outcome_on_fhir(
    aiohttp_client: Any, settings: Settings
) -> None:
    gateway = await start_gateway(
        aiohttp_client, settings.with_overrides(rate_limit_per_second=0.01, rate_limit_burst=3)
    )
    token = await client_token(gateway)  # POST /auth/token took the first of three
    search = "/fhir/Observation?_summary=count"
    for _ in range(2):
        assert (await gateway.client.get(search, headers=gateway.auth(token))).status == 200
    refused = await gateway.client.get(search, headers=gateway.auth(token))
    assert refused.status == 429
    assert refused.content_type == "application/fhir+json"
    assert int(refused.headers["Retry-After"]) >= 1
    outcome = await refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "throttled"
    # A bad token is refused as unauthenticated, not counted against anyone.
    assert (await gateway.client.get(search, headers=gateway.auth("nope"))).status == 401
    # Another clinic client in the same zone is not affected.
    other = await client_token(gateway)
    assert (await gateway.client.get(search, headers=gateway.auth(other))).status == 200
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'gateway_http_throttled_total{reason="rate-limit",zone="cn"} 1.0' in metrics
