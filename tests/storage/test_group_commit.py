"""The group-commit writer keeps per-request semantics while sharing database batches."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest

from gateway.errors import DatabaseUnavailable, Overloaded, ZoneUnavailable
from gateway.models import ObservationRow, Outcome
from gateway.storage import WriterSettings, ZoneDatabase
from gateway.storage.writer import GroupCommitWriter

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def row(n: int, subject: str = "s1-subject") -> ObservationRow:
    return ObservationRow(
        id=f"o1-{n:032d}",
        dedup_key=f"o1-{n:032d}",
        subject=subject,
        device="d1-device",
        code="8867-4",
        effective_start=BASE + timedelta(minutes=n),
        effective_end=None,
        issued=BASE,
        source_format="native",
        resource=b'{"resourceType": "Observation"}',
    )


class SlowStore:
    """Records the batches it is given; lets the test hold the first batch open."""

    def __init__(self, store: object, gate: asyncio.Event) -> None:
        self._store = store
        self._gate = gate
        self.batches: list[int] = []

    async def insert_many(self, rows: list[ObservationRow]) -> list[Outcome]:
        self.batches.append(len(rows))
        await self._gate.wait()
        return await self._store.insert_many(rows)  # type: ignore[attr-defined, no-any-return]


async def test_concurrent_requests_share_a_batch_and_keep_their_own_outcomes(
    zone_dsns: dict[str, str],
) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"])
    try:
        await db.observations.insert_many([row(0)])  # already stored before the batch
        gate = asyncio.Event()
        store = SlowStore(db.observations, gate)
        writer = GroupCommitWriter(
            store,  # type: ignore[arg-type]
            WriterSettings(concurrent_batches=1),
        )
        writer.start()
        first = asyncio.create_task(writer.write([row(1)]))  # held open by the gate
        await asyncio.sleep(0.05)
        # While the first batch waits, three requests queue: they become ONE next batch.
        a = asyncio.create_task(writer.write([row(0), row(2)]))  # duplicate + created
        b = asyncio.create_task(writer.write([row(2), row(3)]))  # same reading as a, + created
        c = asyncio.create_task(writer.write([row(4)]))
        await asyncio.sleep(0.05)
        gate.set()
        assert await first == [Outcome.CREATED]
        assert await a == [Outcome.DUPLICATE, Outcome.CREATED]
        assert await b == [Outcome.DUPLICATE, Outcome.CREATED]
        assert await c == [Outcome.CREATED]
        assert store.batches == [1, 5]
        await writer.stop()
        assert await db.observations.count() == 5
    finally:
        await db.close()


async def test_a_failing_batch_fails_every_request_in_it_and_reports_nothing_created(
    zone_dsns: dict[str, str], pg_server_dsn: str
) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"], min_size=0)
    name = urlsplit(zone_dsns["cn"]).path.lstrip("/")
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await db.observations.ensure_partitions([BASE])
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        results = await asyncio.gather(
            db.writer.write([row(1)]), db.writer.write([row(2), row(3)]), return_exceptions=True
        )
        assert all(isinstance(r, DatabaseUnavailable) for r in results), results
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert await db.observations.count() == 0
    await db.close()


async def test_one_bad_request_does_not_fail_the_others_in_its_batch(
    zone_dsns: dict[str, str],
) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"])
    try:
        gate = asyncio.Event()
        store = SlowStore(db.observations, gate)
        writer = GroupCommitWriter(
            store,  # type: ignore[arg-type]
            WriterSettings(concurrent_batches=1),
        )
        writer.start()
        held = asyncio.create_task(writer.write([row(1)]))
        await asyncio.sleep(0.05)
        poison = replace(row(2), resource=b"{")  # not JSON: PostgreSQL refuses this row only
        bad = asyncio.create_task(writer.write([poison]))
        good = asyncio.create_task(writer.write([row(3)]))
        await asyncio.sleep(0.05)
        gate.set()
        assert await held == [Outcome.CREATED]
        assert await good == [Outcome.CREATED]
        with pytest.raises(asyncpg.PostgresError):
            await bad
        await writer.stop()
    finally:
        await db.close()


async def test_a_full_queue_refuses_at_once_instead_of_growing(zone_dsns: dict[str, str]) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"])
    try:
        gate = asyncio.Event()
        store = SlowStore(db.observations, gate)
        writer = GroupCommitWriter(
            store,  # type: ignore[arg-type]
            WriterSettings(concurrent_batches=1, max_queued_rows=3),
        )
        writer.start()
        held = asyncio.create_task(writer.write([row(1)]))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(writer.write([row(2), row(3)]))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await writer.write([row(4), row(5)])
        assert refused.value.status == 503
        gate.set()
        assert await held == [Outcome.CREATED]
        assert await queued == [Outcome.CREATED, Outcome.CREATED]
        await writer.stop()
    finally:
        await db.close()


async def test_stop_writes_what_is_queued_and_then_refuses(zone_dsns: dict[str, str]) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"])
    pending = [asyncio.create_task(db.writer.write([row(n)])) for n in range(1, 20)]
    await asyncio.sleep(0)
    await db.writer.stop()
    assert [await p for p in pending] == [[Outcome.CREATED]] * 19
    with pytest.raises(ZoneUnavailable):
        await db.writer.write([row(99)])
    await db.close()
