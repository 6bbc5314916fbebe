"""Numbered, forward-only SQL migrations (`migrations/NNNN_name.sql`), recorded in
`schema_migrations` with the SHA-256 of each file's bytes (since 0013). The gateway refuses to
serve a database whose version is not the one it was built for, or one built by a migration whose
file it ships with other bytes or not at all (an applied migration is history: edit it and the
databases it built no longer match the code, so a change is a new migration)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType

import asyncpg

from gateway.devices import MAKERS, MODEL_FAMILIES
from gateway.errors import AppliedMigrationChanged, ConfigurationError, SchemaVersionMismatch

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `migrate` runs against one database (an arbitrary, fixed lock id).
_MIGRATION_LOCK_ID = 0x5747_0001
# A migration waiting on a lock held by live traffic must give up rather than stall the zone.
_LOCK_TIMEOUT = "5s"
_STATEMENT_TIMEOUT = "15min"
# The migration that added schema_migrations.checksum: rows of databases below it have none.
_CHECKSUMS_SINCE = 13


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
    checksum: bytes  # SHA-256 of the file's bytes, as shipped (not of the decoded text)

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def available_migrations(folder: Traversable | None = None) -> tuple[Migration, ...]:
    """The migration files of `folder` (default: the package's own `migrations/`), by number.
    Tests pass a copy of the folder to edit or remove a file. Gaps and duplicates are checked
    by `migrate` and `check_version`, which name what is wrong in one line, not here at import."""
    if folder is None:
        folder = resources.files("gateway.storage").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            data = entry.read_bytes()
            found.append(
                Migration(
                    int(match[1]), match[2], data.decode("utf-8"), hashlib.sha256(data).digest()
                )
            )
    found.sort(key=lambda m: m.version)
    return tuple(found)


SHIPPED = available_migrations()
LATEST_VERSION = SHIPPED[-1].version


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


def _check_numbering(migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version < expected:
            raise SchemaVersionMismatch(f"two migration files are numbered {migration.version:04d}")
        if migration.version > expected:
            raise SchemaVersionMismatch(
                f"migration file {expected:04d} is missing (they are numbered 1..N without gaps)"
            )


async def _refuse_newer(
    conn: asyncpg.Connection, version: int, migrations: Sequence[Migration], where: str
) -> None:
    latest = migrations[-1].version
    if version > latest:
        name = await conn.fetchval("SELECT name FROM schema_migrations WHERE version = $1", version)
        raise SchemaVersionMismatch(
            f"{where}database schema is at version {version} ({version:04d}_{name}.sql), newer "
            f"than this gateway ({latest}); upgrade the gateway"
        )


async def _verify_applied(
    conn: asyncpg.Connection, version: int, migrations: Sequence[Migration], where: str
) -> None:
    """Refuse a database that a migration built which this gateway ships with other bytes, or
    not at all (a missing or renamed file). A row without a checksum (applied before 0013, not
    yet recorded) is accepted on its number and name; `migrate` records its checksum. Messages
    name the number and file, never the SQL."""
    if version == 0:
        return
    # The column exists from 0013 on (each migration commits with its row).
    checksum = "checksum" if version >= _CHECKSUMS_SINCE else "NULL::bytea AS checksum"
    query = f"SELECT version, name, {checksum} FROM schema_migrations ORDER BY version"  # noqa: S608 — one of two literals
    rows = await conn.fetch(query)
    shipped = {m.version: m for m in migrations}
    for row in rows:
        number = int(row["version"])
        migration = shipped.get(number)
        if migration is None or migration.name != row["name"]:
            raise AppliedMigrationChanged(
                f"{where}migration {number:04d} ({number:04d}_{row['name']}.sql) was applied to "
                "this database but this gateway does not ship that file; restore it as shipped"
            )
        if row["checksum"] is not None and bytes(row["checksum"]) != migration.checksum:
            raise AppliedMigrationChanged(
                f"{where}migration {number:04d} ({migration.file_name}) is not the file that was "
                "applied to this database (SHA-256 differs); an applied migration is never "
                "edited: restore it as shipped and put the change in a new migration"
            )


async def _record_checksums(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> None:
    """Record the checksum of every applied migration that has none, from the files as shipped.
    Rows applied before 0013 have none: SQL cannot read files, so 0013 only adds the column and
    the runner fills it, in 0013's own transaction (and then for each later migration's row, in
    its transaction). There is no older record to compare those files with: an edit made
    before 0013 was applied is pinned, not detected; every edit after it is refused."""
    await conn.execute(
        """
        UPDATE schema_migrations AS m SET checksum = f.checksum
        FROM unnest($1::integer[], $2::text[], $3::bytea[]) AS f (version, name, checksum)
        WHERE m.version = f.version AND m.name = f.name AND m.checksum IS NULL
        """,
        [m.version for m in migrations],
        [m.name for m in migrations],
        [m.checksum for m in migrations],
    )


async def migrate(
    conn: asyncpg.Connection,
    migrations: Sequence[Migration] = SHIPPED,
    *,
    zone: str | None = None,
    up_to: int | None = None,
) -> list[Migration]:
    """Apply every pending migration (with `up_to`, those numbered up to it: how a test builds a
    database as an older gateway left it), each in its own transaction. Returns those applied.
    Refuses, before applying anything, a database that `_verify_applied` refuses."""
    where = f"zone {zone}: " if zone else ""
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await _ensure_table(conn)
        done = await current_version(conn)
        await _refuse_newer(conn, done, migrations, where)
        await _verify_applied(conn, done, migrations, where)
        _check_numbering(migrations)
        for migration in migrations:
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
                if migration.version >= _CHECKSUMS_SINCE:
                    await _record_checksums(conn, migrations)
            applied.append(migration)
        if not applied and done >= _CHECKSUMS_SINCE:
            # Rows the last run left without a checksum (none, unless written by hand).
            await _record_checksums(conn, migrations)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied


async def check_version(
    conn: asyncpg.Connection, zone: str, migrations: Sequence[Migration] = SHIPPED
) -> None:
    """At start-up of `serve` and of every command that opens a zone: the database is at this
    gateway's version and was built by the migration files it ships, byte for byte."""
    where = f"zone {zone}: "
    version = await current_version(conn)
    await _refuse_newer(conn, version, migrations, where)
    await _verify_applied(conn, version, migrations, where)
    _check_numbering(migrations)
    latest = migrations[-1].version
    if version < latest:
        raise SchemaVersionMismatch(
            f"{where}database schema is at version {version}, this gateway needs "
            f"{latest}; run `wearable-gateway migrate`"
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
