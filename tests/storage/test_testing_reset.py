"""The suite's storage-level reset (gateway/storage/testing.py): a used zone database comes back
as a freshly migrated one, and the path it takes past the append-only audit trigger stays closed
to the gateway's own role and connections."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.storage import ZoneDatabase
from gateway.storage.testing import reset_for_tests
from tests.conftest import DatabaseFactory, Gateway
from tests.helpers import reading

TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND c.relname <> 'schema_migrations'
"""


async def row_counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        names = [r["relname"] for r in await conn.fetch(TABLES)]
        return {name: await conn.fetchval(f'SELECT count(*) FROM "{name}"') for name in names}
    finally:
        await conn.close()


async def fetchval(dsn: str, query: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_a_used_zone_database_comes_back_empty_as_migrated(
    gateway: Gateway, zone_dsns: dict[str, str], databases: DatabaseFactory
) -> None:
    dsn = zone_dsns["cn"]
    await gateway.enrol("cn", "MRN-1")
    status, _ = await gateway.ingest("cn", [reading("MRN-1"), reading("MRN-1", value=9999)])
    assert status == 207  # one created, one rejected
    conn = await asyncpg.connect(dsn)
    try:  # a month nobody else uses, and the tampering a test of `audit verify` does
        await conn.execute(
            "INSERT INTO dead_letters (request_id, vendor, source_format, item_index, code, "
            "reason) VALUES ('r', 'v', 'native', 0, 'c', 'x')"
        )
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    finally:
        await conn.close()
    db = await ZoneDatabase.connect("cn", dsn, min_size=0)
    try:
        await db.observations.ensure_partitions([datetime(2001, 2, 3, tzinfo=UTC)])
    finally:
        await db.close()
    used = await row_counts(dsn)
    for table in ("subjects", "audit_events", "observations", "credentials", "dead_letters"):
        assert used[table] > 0, table

    await reset_for_tests(dsn)

    # Exactly what `migrate` leaves: empty tables but the rows migrations seed (0010's key ring).
    migrated = await row_counts(await databases.create("freshly_migrated"))
    assert await row_counts(dsn) == migrated
    assert migrated["key_ring_state"] == 1
    assert {n for table, n in migrated.items() if table != "key_ring_state"} == {0}
    assert await fetchval(dsn, "SELECT count(*) FROM pg_inherits") == 0, "partitions left"
    trigger = "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'audit_events_append_only'"
    assert await fetchval(dsn, trigger) == "O", "the append-only trigger is on again"
    dead_letter = await fetchval(
        dsn,
        "INSERT INTO dead_letters (request_id, vendor, source_format, item_index, code, reason) "
        "VALUES ('r', 'v', 'native', 0, 'c', 'x') RETURNING id",
    )
    assert dead_letter == 1, "identity sequences restart"
    assert await fetchval(dsn, "SELECT max(version) FROM schema_migrations") is not None


async def test_a_session_left_open_by_a_test_does_not_stall_the_reset(
    zone_dsns: dict[str, str],
) -> None:
    leftover = await asyncpg.connect(zone_dsns["eu"])
    transaction = leftover.transaction()
    await transaction.start()
    await leftover.execute("LOCK TABLE subjects IN ACCESS SHARE MODE")
    await reset_for_tests(zone_dsns["eu"])
    assert leftover.is_closed() or not await _alive(leftover)


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return False
    return True


@pytest.fixture
async def app_role_dsn(zone_dsns: dict[str, str]) -> AsyncIterator[str]:
    """A login role like production's gateway role: all rights on the zone's tables, neither
    their owner nor a superuser (THREAT_MODEL). Role names are cluster-wide: a uuid in it keeps
    concurrent sessions on a shared server apart."""
    role = f"wg_app_{uuid.uuid4().hex[:10]}"
    password = secrets.token_hex(16)
    admin = await asyncpg.connect(zone_dsns["cn"])
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        parts = urlsplit(zone_dsns["cn"])
        netloc = f"{role}:{password}@" + parts.netloc.rsplit("@", 1)[-1]
        yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_the_gateway_role_can_neither_remove_audit_rows_nor_take_the_reset_path(
    gateway: Gateway, zone_dsns: dict[str, str], app_role_dsn: str
) -> None:
    await gateway.enrol("cn", "MRN-1")
    before = await fetchval(zone_dsns["cn"], "SELECT count(*) FROM audit_events")
    assert before > 0
    conn = await asyncpg.connect(app_role_dsn)
    try:
        for statement in ("DELETE FROM audit_events", "TRUNCATE audit_events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await reset_for_tests(app_role_dsn)
    assert await fetchval(zone_dsns["cn"], "SELECT count(*) FROM audit_events") == before


async def test_after_a_reset_the_gateways_own_connections_still_meet_the_trigger(
    zone_dsns: dict[str, str],
) -> None:
    await reset_for_tests(zone_dsns["cn"])
    # The gateway's normal path (its pool), even connected as the superuser the suite runs as:
    # the reset's setting ended with its transaction.
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"], min_size=1)
    try:
        for statement in ("DELETE FROM audit_events", "TRUNCATE audit_events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                # Its own pool, as a handler's query.
                async with db._pool.acquire("audit.append") as conn:
                    await conn.execute(statement)
    finally:
        await db.close()
