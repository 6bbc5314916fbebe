"""Driver errors that mean a zone's database stopped answering leave storage as the gateway's
`DatabaseUnavailable`; a statement PostgreSQL refused stays the driver's error (issue 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from gateway.errors import DatabaseUnavailable, ZoneUnavailable
from gateway.storage import ZoneDatabase
from gateway.storage.driver_errors import is_unavailable
from gateway.storage.pool import ZonePool


@pytest.fixture
async def raw_pool(zone_dsns: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(zone_dsns["cn"], min_size=0, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_statement_past_its_deadline_is_database_unavailable(
    raw_pool: asyncpg.Pool,
) -> None:
    pool = ZonePool(raw_pool, timeout=0.2)
    with pytest.raises(DatabaseUnavailable) as raised:
        await pool.fetchval("database.select_one", "SELECT pg_sleep(60)")
    assert isinstance(raised.value.__cause__, TimeoutError)


async def test_an_enclosing_operation_past_its_deadline_is_database_unavailable(
    raw_pool: asyncpg.Pool,
) -> None:
    pool = ZonePool(raw_pool, timeout=60)
    with pytest.raises(DatabaseUnavailable) as raised:
        async with pool.operation("database.ping", 0.2):
            await pool.fetchval("database.select_one", "SELECT pg_sleep(60)")
    assert isinstance(raised.value.__cause__, TimeoutError)


async def test_a_statement_postgresql_refused_is_not_translated(raw_pool: asyncpg.Pool) -> None:
    pool = ZonePool(raw_pool, timeout=60)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await pool.fetchval("database.select_one", "SELECT 1 / 0")


async def test_a_database_that_refuses_connections_is_database_unavailable_to_a_store(
    zone_dsns: dict[str, str], pg_server_dsn: str
) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"], min_size=0)
    name = urlsplit(zone_dsns["cn"]).path.lstrip("/")
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        with pytest.raises(DatabaseUnavailable) as raised:
            await db.subjects.resolve(["b1-blind-index"])
        # Which driver error depends on timing (connection refused, or a pooled connection
        # found killed); any of them is the cause.
        assert raised.value.__cause__ is not None
        assert is_unavailable(raised.value.__cause__)
        assert raised.value.code == ZoneUnavailable.code
        assert await db.ping(5.0) is False
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await db.close()
