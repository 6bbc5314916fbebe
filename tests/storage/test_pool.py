"""Each operation on a zone's pool is reported once it has ended: zone, name, seconds, outcome
(storage/pool.py; issue 12)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import asyncpg
import pytest

from gateway.errors import DatabaseUnavailable
from gateway.storage import ZoneDatabase
from gateway.storage.pool import ZonePool

Report = tuple[str, str, float, str]


@pytest.fixture
async def raw_pool(zone_dsns: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(zone_dsns["cn"], min_size=0, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def observed(raw_pool: asyncpg.Pool, timeout: float = 60) -> tuple[ZonePool, list[Report]]:
    reports: list[Report] = []
    pool = ZonePool(
        raw_pool,
        timeout,
        zone="cn",
        observer=lambda zone, name, seconds, outcome: reports.append(
            (zone, name, seconds, outcome)
        ),
    )
    return pool, reports


async def test_a_statement_is_reported_once_by_name_after_it_ended(raw_pool: asyncpg.Pool) -> None:
    pool, reports = observed(raw_pool)
    assert await pool.fetchval("subjects.count", "SELECT 41 + 1") == 42
    assert [(z, n, o) for z, n, _, o in reports] == [("cn", "subjects.count", "ok")]
    assert reports[0][2] >= 0


async def test_a_statement_postgresql_refused_is_reported_as_an_error(
    raw_pool: asyncpg.Pool,
) -> None:
    pool, reports = observed(raw_pool)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await pool.fetchval("subjects.count", "SELECT 1 / 0")
    assert [(n, o) for _, n, _, o in reports] == [("subjects.count", "error")]


async def test_a_transaction_that_raised_in_its_block_is_an_error(raw_pool: asyncpg.Pool) -> None:
    pool, reports = observed(raw_pool)

    async def failing() -> None:
        async with pool.acquire("subjects.insert") as conn, conn.transaction():
            await conn.execute("SELECT 1")
            raise LookupError

    with pytest.raises(LookupError):
        await failing()
    assert [(n, o) for _, n, _, o in reports] == [("subjects.insert", "error")]


async def test_an_operation_past_its_deadline_is_an_error(raw_pool: asyncpg.Pool) -> None:
    pool, reports = observed(raw_pool, timeout=0.2)
    with pytest.raises(DatabaseUnavailable):
        await pool.fetchval("subjects.count", "SELECT pg_sleep(60)")
    assert [(n, o) for _, n, _, o in reports] == [("subjects.count", "error")]


async def test_a_cancelled_operation_is_an_error(raw_pool: asyncpg.Pool) -> None:
    pool, reports = observed(raw_pool)
    started = asyncio.Event()

    async def slow() -> None:
        async with pool.acquire("subjects.get") as conn:
            started.set()
            await conn.execute("SELECT pg_sleep(60)")

    task = asyncio.create_task(slow())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(n, o) for _, n, _, o in reports] == [("subjects.get", "error")]


async def test_a_stream_is_reported_when_released_and_an_early_stop_is_ok(
    raw_pool: asyncpg.Pool,
) -> None:
    pool, reports = observed(raw_pool)

    async def numbers() -> AsyncGenerator[int, None]:
        async with pool.stream("audit.stream") as conn, conn.transaction(readonly=True):
            async for row in conn.cursor("SELECT generate_series(1, 1000) AS n", prefetch=10):
                yield int(row["n"])

    async with aclosing(numbers()) as rows:
        async for n in rows:
            if n == 3:
                break
        assert reports == []  # still held: not ended yet
    assert [(n, o) for _, n, _, o in reports] == [("audit.stream", "ok")]


async def test_an_operation_inside_another_is_reported_on_its_own_too(
    raw_pool: asyncpg.Pool,
) -> None:
    pool, reports = observed(raw_pool)
    async with pool.operation("database.ping", 30):
        await pool.fetchval("database.select_one", "SELECT 1")
    assert [(n, o) for _, n, _, o in reports] == [
        ("database.select_one", "ok"),
        ("database.ping", "ok"),
    ]


async def test_the_observer_given_at_connect_hears_the_zones_operations(
    zone_dsns: dict[str, str],
) -> None:
    reports: list[Report] = []
    db = await ZoneDatabase.connect(
        "eu",
        zone_dsns["eu"],
        on_transaction=lambda zone, name, seconds, outcome: reports.append(
            (zone, name, seconds, outcome)
        ),
    )
    try:
        await db.subjects.count()
        assert await db.ping(30)
    finally:
        await db.close()
    assert [(z, n, o) for z, n, _, o in reports] == [
        ("eu", "database.check_schema", "ok"),
        ("eu", "subjects.count", "ok"),
        ("eu", "database.select_one", "ok"),
        ("eu", "database.ping", "ok"),
    ]
