"""Concurrent batches that share readings do not deadlock: rows are inserted in primary-key
order (found by issue 8's SIGKILL fault test as a 500 `DeadlockDetectedError` under load)."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.models import Outcome
from gateway.storage import ZoneDatabase
from tests.storage.test_group_commit import row

_INSERT_ONE = """
INSERT INTO observations (subject, id, code, device, effective_start, effective_end, issued,
                          source_format, resource)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING
"""


def _values(n: int) -> tuple[object, ...]:
    r = row(n)
    return (
        r.subject, r.id, r.code, r.device, r.effective_start, r.effective_end, r.issued,
        r.source_format, r.resource.decode(),
    )  # fmt: skip


async def test_a_batch_listing_keys_in_reverse_waits_instead_of_deadlocking(
    zone_dsns: dict[str, str],
) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"])
    other = await asyncpg.connect(zone_dsns["cn"])
    try:
        await db.observations.insert_many([row(99)])  # the month's partition exists
        await other.execute("SET deadlock_timeout = '100ms'")
        transaction = other.transaction()
        await transaction.start()
        await other.execute(_INSERT_ONE, *_values(1))  # holds key 1, uncommitted
        # Key 2 before key 1: inserted in the order given, the batch would take 2 and then wait
        # for 1, while `other` below waits for 2.
        batch = asyncio.create_task(db.observations.insert_many([row(2), row(1)]))
        await asyncio.sleep(0.3)
        await other.execute(_INSERT_ONE, *_values(2))
        await transaction.commit()
        outcomes = await asyncio.wait_for(batch, 10)
        assert outcomes == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    finally:
        await other.close()
        await db.close()
