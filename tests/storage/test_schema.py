from __future__ import annotations

import asyncpg
import pytest

from gateway.errors import SchemaVersionMismatch
from gateway.storage import LATEST_VERSION, ZoneDatabase, migrate_database
from gateway.storage.schema import available_migrations, current_version


async def test_migrate_applies_every_migration_once_and_records_it(databases) -> None:
    dsn = await databases.create("fresh", migrated=False)
    applied = await migrate_database(dsn)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    assert await migrate_database(dsn) == []
    conn = await asyncpg.connect(dsn)
    try:
        assert await current_version(conn) == LATEST_VERSION
    finally:
        await conn.close()


async def test_gateway_refuses_a_database_that_was_never_migrated(databases) -> None:
    dsn = await databases.create("bare", migrated=False)
    with pytest.raises(SchemaVersionMismatch, match="wearable-gateway migrate"):
        await ZoneDatabase.connect("cn", dsn)


async def test_gateway_refuses_a_database_newer_than_itself(databases) -> None:
    dsn = await databases.create("newer")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')",
            LATEST_VERSION + 1,
        )
    finally:
        await conn.close()
    with pytest.raises(SchemaVersionMismatch, match="newer"):
        await ZoneDatabase.connect("cn", dsn)
