"""Numbered, forward-only SQL migrations (`migrations/NNNN_name.sql`), recorded in
`schema_migrations`. The gateway refuses to serve a database whose version is not the one it was
built for."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import asyncpg

from gateway.devices import MAKERS, MODEL_FAMILIES
from gateway.errors import SchemaVersionMismatch

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `migrate` runs against one database (an arbitrary, fixed lock id).
_MIGRATION_LOCK_ID = 0x5747_0001
# A migration waiting on a lock held by live traffic must give up rather than stall the zone.
_LOCK_TIMEOUT = "5s"
_STATEMENT_TIMEOUT = "15min"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> tuple[Migration, ...]:
    folder = resources.files("gateway.storage").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaVersionMismatch("migration files are not numbered 1..N without gaps")
    return tuple(found)


LATEST_VERSION = available_migrations()[-1].version


async def _device_vocabulary(conn: asyncpg.Connection) -> None:
    """For 0011: every distinct stored device model and manufacturer with the closed-table value
    it maps to (gateway.devices), as the temporary table the migration's SQL reads."""
    await conn.execute(
        """
        CREATE TEMPORARY TABLE device_vocabulary (
            field text NOT NULL,
            raw   text NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (field, raw)
        ) ON COMMIT DROP
        """
    )
    rows = await conn.fetch(
        "SELECT DISTINCT 'model' AS field, model AS raw FROM devices WHERE model IS NOT NULL "
        "UNION SELECT DISTINCT 'manufacturer', manufacturer FROM devices "
        "WHERE manufacturer IS NOT NULL"
    )
    tables = {"model": MODEL_FAMILIES, "manufacturer": MAKERS}
    await conn.copy_records_to_table(
        "device_vocabulary",
        records=[(r["field"], r["raw"], tables[r["field"]].family(r["raw"])) for r in rows],
    )


# Steps a migration needs from the gateway's own data, run in its transaction before its SQL.
_PREPARE: Mapping[int, Callable[[asyncpg.Connection], Awaitable[None]]] = MappingProxyType(
    {11: _device_vocabulary}
)


async def _ensure_table(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return int(version)


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every pending migration, each in its own transaction. Returns those applied."""
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await _ensure_table(conn)
        done = await current_version(conn)
        if done > LATEST_VERSION:
            raise SchemaVersionMismatch(
                f"database schema is at version {done}, newer than this gateway ({LATEST_VERSION})"
            )
        for migration in available_migrations():
            if migration.version <= done:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                await conn.execute(f"SET LOCAL statement_timeout = '{_STATEMENT_TIMEOUT}'")
                prepare = _PREPARE.get(migration.version)
                if prepare is not None:
                    await prepare(conn)
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied


async def check_version(conn: asyncpg.Connection, zone: str) -> None:
    version = await current_version(conn)
    if version < LATEST_VERSION:
        raise SchemaVersionMismatch(
            f"zone {zone}: database schema is at version {version}, this gateway needs "
            f"{LATEST_VERSION}; run `wearable-gateway migrate`"
        )
    if version > LATEST_VERSION:
        raise SchemaVersionMismatch(
            f"zone {zone}: database schema is at version {version}, newer than this gateway "
            f"({LATEST_VERSION}); upgrade the gateway"
        )
