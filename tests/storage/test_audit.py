"""The audit table itself: appends form one chain under concurrency, and the database refuses to
change or remove what was appended."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from gateway.storage import ZoneDatabase
from gateway.storage.audit import AuditDraft, ChainLink

DRAFT = AuditDraft(
    action="read",
    actor="k1",
    subject=None,
    outcome="success",
    detail=b'{"count": 1}',
    key_version=1,
)


def plain_seal(link: ChainLink) -> bytes:
    # Storage never sees keys; any 32-byte function of the link shows the chaining.
    return hashlib.sha256(link.prev_mac + link.seq.to_bytes(8, "big")).digest()


@pytest.fixture
async def db(zone_dsns: dict[str, str]) -> AsyncIterator[ZoneDatabase]:
    database = await ZoneDatabase.connect("cn", zone_dsns["cn"], max_size=8)
    yield database
    await database.close()


async def test_appends_from_20_concurrent_tasks_form_one_unbroken_chain(
    db: ZoneDatabase, zone_dsns: dict[str, str]
) -> None:
    seqs = await asyncio.gather(*(db.audit.append(DRAFT, plain_seal) for _ in range(20)))

    assert sorted(seqs) == list(range(1, 21))
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        rows = await conn.fetch("SELECT seq, prev_mac, mac FROM audit_events ORDER BY seq")
    finally:
        await conn.close()
    previous = bytes(32)
    for row in rows:
        assert row["prev_mac"] == previous
        assert row["mac"] == plain_seal(ChainLink(row["seq"], previous, datetime.now(UTC)))
        previous = row["mac"]


async def test_stream_yields_every_record_in_seq_order(db: ZoneDatabase) -> None:
    for _ in range(3):
        await db.audit.append(DRAFT, plain_seal)

    streamed = [event async for event in db.audit.stream()]

    assert [e.seq for e in streamed] == [1, 2, 3]
    assert [e.prev_mac for e in streamed[1:]] == [e.mac for e in streamed[:-1]]
    assert streamed[0].recorded_at <= streamed[1].recorded_at <= streamed[2].recorded_at


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'someone-else'",
        "UPDATE audit_events SET actor = 'x' WHERE seq = 999",
        "DELETE FROM audit_events WHERE seq = 1",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ],
)
async def test_the_database_refuses_to_change_or_remove_audit_records(
    db: ZoneDatabase, zone_dsns: dict[str, str], statement: str
) -> None:
    await db.audit.append(DRAFT, plain_seal)
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 1
    finally:
        await conn.close()


async def test_a_second_record_after_the_same_predecessor_is_refused(
    db: ZoneDatabase, zone_dsns: dict[str, str]
) -> None:
    await db.audit.append(DRAFT, plain_seal)
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO audit_events (seq, recorded_at, action, actor, outcome, detail, "
                "key_version, prev_mac, mac) "
                "VALUES (2, now(), 'read', 'k1', 'success', '{}', 1, $1, $2)",
                bytes(32),
                bytes(range(32)),
            )
    finally:
        await conn.close()
