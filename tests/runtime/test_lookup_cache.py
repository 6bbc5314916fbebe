"""Hot-path lookup caches: bounded, expiring, and invalidated by this process's own changes."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from gateway.runtime.cache import TTLCache
from gateway.web.appkeys import ZONES
from tests.conftest import start_gateway
from tests.helpers import reading


def test_an_entry_expires_after_its_ttl() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(5, clock=lambda: now[0], spread=0)
    cache.put("a", 1)
    now[0] = 4.9
    assert cache.get("a") == 1
    now[0] = 5.1
    assert cache.get("a") is None


def test_entries_filled_together_expire_spread_over_the_second_half_of_the_ttl() -> None:
    now = [0.0]
    draws = iter([0.0, 0.5, 0.999])
    cache: TTLCache[str, int] = TTLCache(
        10, clock=lambda: now[0], spread=0.5, draw=lambda: next(draws)
    )
    for key in ("long", "middle", "short"):
        cache.put(key, 1)
    now[0] = 4.99  # nothing expires before half the TTL
    assert [cache.get(k) for k in ("long", "middle", "short")] == [1, 1, 1]
    now[0] = 5.01
    assert [cache.get(k) for k in ("long", "middle", "short")] == [1, 1, None]
    now[0] = 7.51
    assert [cache.get(k) for k in ("long", "middle")] == [1, None]
    now[0] = 10.01  # and nothing outlives the TTL: the documented bound holds
    assert cache.get("long") is None


def test_by_default_no_entry_outlives_its_ttl() -> None:
    now = [0.0]
    cache: TTLCache[int, int] = TTLCache(5, clock=lambda: now[0])
    for n in range(200):
        cache.put(n, n)
    now[0] = 2.49
    assert all(cache.get(n) == n for n in range(200))
    now[0] = 5.01
    assert all(cache.get(n) is None for n in range(200))


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    cache: TTLCache[int, int] = TTLCache(60, max_entries=3)
    for n in range(3):
        cache.put(n, n)
    cache.get(0)
    cache.put(3, 3)
    assert [cache.get(n) for n in range(4)] == [0, None, 2, 3]


def test_a_zero_ttl_caches_nothing() -> None:
    cache: TTLCache[str, int] = TTLCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None


async def test_a_key_revoked_by_another_process_stops_working_within_the_ttl(
    aiohttp_client: Any, settings: Any, zone_dsns: dict[str, str]
) -> None:
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(lookup_cache_seconds=0.3))
    await gateway.enrol("cn", "MRN-1")
    status, _ = await gateway.ingest("cn", [reading("MRN-1", value=70)])
    assert status == 200
    key_id = gateway.vendor["cn"].split("_")[2]
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:  # as `wearable-gateway credentials revoke` run elsewhere would
        await conn.execute("UPDATE credentials SET revoked_at = now() WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    await asyncio.sleep(0.4)
    status, _ = await gateway.ingest("cn", [reading("MRN-1", value=71)])
    assert status == 401


async def test_identifiers_and_device_ids_leave_the_pseudonym_caches_within_the_ttl(
    aiohttp_client: Any, settings: Any
) -> None:
    # Entries live between half and all of the TTL: two seconds leaves a slow machine a full
    # second to see them cached before asserting they are gone once the TTL has passed.
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(lookup_cache_seconds=2))
    await gateway.enrol("cn", "MRN-1")
    # One reading, sent twice: `reading()` stamps "now", which may tick between two calls.
    one = reading("MRN-1", value=70, device="SN-7")
    status, body = await gateway.ingest("cn", [one])
    assert status == 200
    lookups = gateway.client.app[ZONES]["cn"].lookups
    identifier = ("urn:oid:1.2.156.999.1", "MRN-1")
    cached_indexes = lookups.blind_indexes.get(identifier)
    assert cached_indexes is not None
    assert lookups.devices.get(("acme-wearables", "SN-7")) is not None
    # A second request computes nothing new and resolves to the same Observation.
    status, again = await gateway.ingest("cn", [one])
    assert again["results"][0]["outcome"] == "duplicate"
    assert again["results"][0]["id"] == body["results"][0]["id"]
    await asyncio.sleep(2.05)
    assert lookups.blind_indexes.get(identifier) is None
    assert lookups.devices.get(("acme-wearables", "SN-7")) is None


async def test_a_zero_ttl_keeps_no_identifier_in_memory(aiohttp_client: Any, settings: Any) -> None:
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(lookup_cache_seconds=0))
    await gateway.enrol("cn", "MRN-1")
    status, _ = await gateway.ingest("cn", [reading("MRN-1", value=70, device="SN-7")])
    assert status == 200
    lookups = gateway.client.app[ZONES]["cn"].lookups
    assert lookups.blind_indexes.get(("urn:oid:1.2.156.999.1", "MRN-1")) is None
    assert lookups.devices.get(("acme-wearables", "SN-7")) is None
