"""Hot-path lookup caches: bounded, expiring, and invalidated by this process's own changes."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from gateway.services.cache import TTLCache
from tests.conftest import start_gateway
from tests.helpers import reading


def test_an_entry_expires_after_its_ttl() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(5, clock=lambda: now[0])
    cache.put("a", 1)
    now[0] = 4.9
    assert cache.get("a") == 1
    now[0] = 5.1
    assert cache.get("a") is None


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
