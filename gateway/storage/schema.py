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
from gateway.errors import ConfigurationError, SchemaVersionMismatch

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `migrate` runs against one database (an arbitrary, fixed lock id).
_MIGRATION_LOCK_ID = 0x5747_0001
# A migration waiting on a lock held by live traffic must give up rather than stall the zone.
_LOCK_TIMEOUT = "5s"
_STATEMENT_TIMEOUT = "15min"


_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Tables the gateway only reads or appends to: the audit log (append-only, 0005) and the schema
# version it checks at start-up.
_APPEND_ONLY = ("audit_events",)
_READ_ONLY = ("schema_migrations",)


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


async def migrate(conn: asyncpg.Connection, *, up_to: int | None = None) -> list[Migration]:
    """Apply every pending migration (with `up_to`, those numbered up to it: how a test builds a
    database as an older gateway left it), each in its own transaction. Returns those applied."""
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
            if migration.version <= done or (up_to is not None and migration.version > up_to):
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


async def grant_gateway_role(conn: asyncpg.Connection, role: str) -> None:
    """Give `role` (which must not own the tables) what the running gateway needs and no more:
    read and write on the application's tables, but only SELECT and INSERT on the audit log and
    SELECT on schema_migrations, and the partition function of 0012. Run by the tables' owner
    (the migration role); default privileges extend the same grants to tables it creates later.
    Idempotent: `migrate --grant-to` runs it after every migration."""
    if not _ROLE_NAME.match(role):
        raise ConfigurationError("a role name is lower-case letters, digits and underscores")
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        raise ConfigurationError(f"role {role} does not exist (create it first)")
    owns = await conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = $1", role
    )
    if owns:
        raise ConfigurationError(f"role {role} owns tables: the gateway's role must not")
    quoted = f'"{role}"'  # checked against _ROLE_NAME above
    special = ", ".join(_APPEND_ONLY + _READ_ONLY)
    async with conn.transaction():
        await conn.execute(f"""
            GRANT USAGE ON SCHEMA public TO {quoted};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted};
            REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {special} FROM {quoted};
            GRANT INSERT ON {", ".join(_APPEND_ONLY)} TO {quoted};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted};
            GRANT EXECUTE ON FUNCTION observations_ensure_partition(timestamptz) TO {quoted};
            ALTER DEFAULT PRIVILEGES IN SCHEMA public
                GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted};
            ALTER DEFAULT PRIVILEGES IN SCHEMA public
                GRANT USAGE, SELECT ON SEQUENCES TO {quoted};
        """)
