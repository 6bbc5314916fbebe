"""Issue 12: `schema_migrations` records the SHA-256 of each applied migration's file (0013), and
the gateway refuses, at start-up and at `migrate`, a database built by a migration file it ships
with other bytes or not at all."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import asyncpg
import pytest

from gateway.errors import AppliedMigrationChanged
from gateway.storage.schema import SHIPPED, available_migrations, check_version, migrate
from tests.cli.test_commands import run
from tests.conftest import DatabaseFactory
from tests.faults.harness import gateway_environment, provision

SHIPPED_FOLDER = Path(str(resources.files("gateway.storage").joinpath("migrations")))
# Computed here, apart from the code under test: number -> SHA-256 of the file's bytes.
SHIPPED_DIGESTS = {
    int(path.name[:4]): hashlib.sha256(path.read_bytes()).digest()
    for path in SHIPPED_FOLDER.glob("*.sql")
}


@asynccontextmanager
async def _connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


def _folder_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(SHIPPED_FOLDER, folder)
    return folder


def _assert_one_line_without_sql(message: str) -> None:
    assert "\n" not in message
    for sql_word in ("CREATE", "ALTER", "SELECT", "INSERT"):
        assert sql_word not in message


async def test_a_database_built_by_the_shipped_files_is_accepted_and_has_nothing_to_apply(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    migrations = available_migrations(_folder_copy(tmp_path))
    assert migrations == SHIPPED
    async with _connect(await databases.create("unchanged")) as conn:
        await check_version(conn, "cn", migrations)
        assert await migrate(conn, migrations) == []


async def test_every_applied_migration_records_the_sha256_of_its_file(
    databases: DatabaseFactory,
) -> None:
    async with _connect(await databases.create("recorded")) as conn:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY 1")
    assert {r["version"]: bytes(r["checksum"]) for r in rows} == SHIPPED_DIGESTS


async def test_an_edited_applied_migration_is_refused_at_start_up_and_at_migrate(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    folder = _folder_copy(tmp_path)
    edited = folder / "0007_research_exports.sql"
    edited.write_bytes(edited.read_bytes() + b"\n-- one more line\n")
    migrations = available_migrations(folder)
    async with _connect(await databases.create("edited")) as conn:
        with pytest.raises(AppliedMigrationChanged) as at_start:
            await check_version(conn, "cn", migrations)
        with pytest.raises(AppliedMigrationChanged) as at_migrate:
            await migrate(conn, migrations, zone="cn")
    for refused in (at_start.value, at_migrate.value):
        assert refused.code == "migration-changed"
        assert refused.message.startswith("zone cn: migration 0007 (0007_research_exports.sql) ")
        _assert_one_line_without_sql(refused.message)


async def test_an_applied_migration_whose_file_is_missing_is_refused(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    folder = _folder_copy(tmp_path)
    (folder / "0005_audit_log.sql").unlink()
    migrations = available_migrations(folder)
    async with _connect(await databases.create("missing")) as conn:
        with pytest.raises(AppliedMigrationChanged) as at_start:
            await check_version(conn, "cn", migrations)
        with pytest.raises(AppliedMigrationChanged) as at_migrate:
            await migrate(conn, migrations, zone="cn")
    for refused in (at_start.value, at_migrate.value):
        assert refused.message.startswith("zone cn: migration 0005 (0005_audit_log.sql) ")
        assert "does not ship" in refused.message
        _assert_one_line_without_sql(refused.message)


async def test_an_applied_migration_replaced_by_another_file_of_its_number_is_refused(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """A branch's placeholder or a renamed file under an applied number: refused, naming the
    file that was applied."""
    folder = _folder_copy(tmp_path)
    applied = next(folder.glob("0010_*.sql"))
    applied.unlink()
    (folder / "0010_something_else.sql").write_text("SELECT 10;\n", encoding="utf-8")
    migrations = available_migrations(folder)
    pattern = r"migration 0010 \(" + re.escape(applied.name) + r"\)"
    async with _connect(await databases.create("replaced")) as conn:
        with pytest.raises(AppliedMigrationChanged, match=pattern):
            await check_version(conn, "cn", migrations)


async def test_a_database_before_0013_gets_the_checksums_of_its_migrations_recorded(
    databases: DatabaseFactory,
) -> None:
    before = SHIPPED[:12]
    async with _connect(await databases.create("old", migrated=False)) as conn:
        assert [m.version for m in await migrate(conn, before)] == list(range(1, 13))
        # A gateway of that time starts on it, and this one asks for `migrate`, nothing else.
        await check_version(conn, "cn", before)
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'schema_migrations'"
        )
        assert "checksum" not in {c["column_name"] for c in columns}

        assert [m.version for m in await migrate(conn)] == [13]

        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY 1")
        assert {r["version"]: bytes(r["checksum"]) for r in rows} == SHIPPED_DIGESTS
        await check_version(conn, "cn")


async def test_a_row_without_a_checksum_is_accepted_and_recorded_by_the_next_migrate(
    databases: DatabaseFactory,
) -> None:
    async with _connect(await databases.create("unrecorded")) as conn:
        await conn.execute("UPDATE schema_migrations SET checksum = NULL WHERE version = 4")
        await check_version(conn, "cn")
        assert await migrate(conn) == []
        recorded = await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = 4")
    assert bytes(recorded) == SHIPPED_DIGESTS[4]


async def _record_another_checksum(dsn: str, version: int) -> None:
    """What a gateway whose file `version` was edited after it was applied sees: the two differ."""
    async with _connect(dsn) as conn:
        await conn.execute(
            "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
            version,
            hashlib.sha256(b"another file").digest(),
        )


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("wearable-gateway: ")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


async def test_migrate_command_refuses_an_edited_migration_in_one_line_exit_2(
    databases: DatabaseFactory,
) -> None:
    dsn = await databases.create("cli_migrate")
    await _record_another_checksum(dsn, 8)
    result = await asyncio.to_thread(
        run, ["migrate"], {"GATEWAY_ZONES": "cn", "GATEWAY_ZONE_CN_DATABASE_URL": dsn}
    )
    assert result.returncode == 2
    line = _error_line(result.stderr)
    assert "zone cn: migration 0008 (0008_subject_lifecycle.sql)" in line


async def test_serve_refuses_to_start_on_an_edited_migration_in_one_line_exit_2(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await databases.create("cn")
    credentials = await provision({"cn": dsn}, tmp_path)
    await _record_another_checksum(dsn, 8)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "serve"],
        env=gateway_environment({"cn": dsn}, credentials, 0),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    line = _error_line(result.stderr)
    assert "zone cn: migration 0008 (0008_subject_lifecycle.sql)" in line
