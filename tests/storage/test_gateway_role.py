"""Issue 11: the gateway runs as a role that does not own its tables. `migrate --grant-to` gives it
what the app needs (it enrols, ingests into a new monthly partition and reads back) and what the
operator commands of deploy/README.md run with the gateway's DSN need (keys, credentials, studies,
erasure, audit, a research export), and the audit log stays out of its reach: it cannot disable
the append-only trigger or change a row. Only `migrate` and `storage cluster` need the owner."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import PIPE
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.errors import ConfigurationError
from gateway.privacy import KeyPurpose
from gateway.privacy.provider import FileKeyProvider
from gateway.settings import Settings, ZoneSettings
from gateway.storage import migrate_database
from gateway.storage.database import dsn_with_database
from tests.cli.test_commands import run
from tests.conftest import MRN, start_gateway
from tests.helpers import CN_TZ, gateways_caught_up, reading
from tests.smart_helpers import token_for
from tests.web.bulk_export_helpers import RESEARCH_SCOPES, Researcher, export

INIT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "init-roles.sh"


@dataclass(frozen=True)
class Roles:
    owner_dsn: str
    gateway_dsn: str
    gateway: str


def _as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, parts.fragment))


@pytest.fixture
async def roles(pg_server_dsn: str) -> AsyncIterator[Roles]:
    """A database owned by a fresh migration role, and a fresh gateway role (cluster-wide names,
    unique per test, dropped at the end)."""
    suffix = uuid.uuid4().hex[:10]
    owner, gateway, database = f"wg_owner_{suffix}", f"wg_app_{suffix}", f"wg_roles_{suffix}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{owner}" LOGIN')
        await admin.execute(f'CREATE ROLE "{gateway}" LOGIN')
        await admin.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        dsn = dsn_with_database(pg_server_dsn, database)
        yield Roles(_as_role(dsn, owner), _as_role(dsn, gateway), gateway)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (gateway, owner):
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_the_granted_gateway_role_runs_the_app_but_cannot_touch_the_audit_log(
    roles: Roles, zone_dsns: dict[str, str], key_files: dict[str, Path], aiohttp_client: Any
) -> None:
    await migrate_database(roles.owner_dsn, zone="cn", grant_to=roles.gateway)
    settings = Settings(
        zones={
            "cn": ZoneSettings("cn", roles.gateway_dsn, key_files["cn"]),
            "eu": ZoneSettings("eu", zone_dsns["eu"], key_files["eu"]),
        },
        pool_max_size=2,
    )
    gateway = await start_gateway(aiohttp_client, settings)
    await gateway.enrol("cn", "ROLE-1")
    # A month no partition exists for yet: created through the owner's function (0012).
    reading = {
        "subject": {"system": MRN["cn"], "value": "ROLE-1"},
        "device": {"id": "role-watch"},
        "type": "heart-rate",
        "value": 61,
        "unit": "/min",
        "time": datetime(2021, 3, 4, 5, 6, tzinfo=CN_TZ).isoformat(),
    }
    status, body = await gateway.ingest("cn", [reading])
    assert status == 200, body
    assert body["results"][0]["outcome"] == "created"

    conn = await asyncpg.connect(roles.gateway_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM observations") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_events") >= 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
            await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("UPDATE audit_events SET outcome = 'x' WHERE seq = 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("DELETE FROM audit_events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
            await conn.execute("ALTER TABLE observations ADD COLUMN x int")
    finally:
        await conn.close()


async def test_grant_to_refuses_the_tables_owner_and_a_missing_role(roles: Roles) -> None:
    owner = urlsplit(roles.owner_dsn).netloc.split("@")[0]
    with pytest.raises(ConfigurationError, match="owns tables"):
        await migrate_database(roles.owner_dsn, grant_to=owner)
    with pytest.raises(ConfigurationError, match="does not exist"):
        await migrate_database(roles.owner_dsn, grant_to="wg_no_such_role")


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return str(result.stdout)


async def test_the_operator_commands_run_with_the_gateway_roles_grants(
    roles: Roles, zone_dsns: dict[str, str], key_files: dict[str, Path], aiohttp_client: Any
) -> None:
    """Every command deploy/README.md runs through `gateway-<zone>` (the gateway role's DSN)."""
    await migrate_database(roles.owner_dsn, zone="cn", grant_to=roles.gateway)
    key_file = key_files["cn"]
    env = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": roles.gateway_dsn,
        "GATEWAY_ZONE_CN_KEY_FILE": str(key_file),
    }
    settings = Settings(
        zones={
            "cn": ZoneSettings("cn", roles.gateway_dsn, key_file),
            "eu": ZoneSettings("eu", zone_dsns["eu"], key_files["eu"]),
        },
        pool_max_size=2,
    )
    gateway = await start_gateway(aiohttp_client, settings)

    # Credentials: a vendor key, a researcher client, a study it may export.
    vendor = _ok(run(["vendors", "add", "--zone", "cn", "--name", "role-vendor"], env))
    assert vendor.strip().splitlines()[-1].startswith("wgk_cn_")
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "role-researcher"}
    jwks = key_file.parent / "jwks.json"
    jwks.write_bytes(orjson.dumps({"keys": [jwk]}))
    added = _ok(
        run(
            ["clients", "add", "--zone", "cn", "--site", "role-uni", "--role", "researcher",
             "--jwks", str(jwks), "--scopes", " ".join(RESEARCH_SCOPES)],
            env,
        )
    )  # fmt: skip
    client_id = added.strip().splitlines()[-1]
    expires = (datetime.now(UTC).date() + timedelta(days=365)).isoformat()
    _ok(
        run(
            ["studies", "add", "--zone", "cn", "--id", "role-study", "--title", "Role check",
             "--ethics", "IRB-1", "--recipient-org", "Example University",
             "--recipient-country", "CN", "--measures", "8867-4", "--shift-days", "30",
             "--k", "1", "--expires", expires, "--researcher-client", client_id],
            env,
        )
    )  # fmt: skip

    # Data, then a research export run by the gateway's own export worker.
    kept = await gateway.enrol("cn", "ROLE-KEPT")
    erased = await gateway.enrol("cn", "ROLE-ERASED")
    status, body = await gateway.ingest("cn", [reading("ROLE-KEPT"), reading("ROLE-ERASED")])
    assert status == 200, body
    token = await token_for(gateway, client_id, key, "role-researcher", RESEARCH_SCOPES)
    extract = await export(gateway, Researcher(client_id, token, "cn"), "role-study")
    assert len(extract.resources("Observation")) == 2

    # Keys: rotate the KEK (re-wraps every data key), re-wrap again, retire the old version.
    rotated = _ok(run(["keys", "rotate", "--zone", "cn", "--purpose", "kek"], env))
    assert "every data key is wrapped with kek version 2" in rotated
    _ok(run(["keys", "rewrap", "--zone", "cn"], env))
    # The in-process gateway reloads the rotated ring (NOTIFY) before retiring is allowed.
    await gateways_caught_up(roles.owner_dsn)
    retired = _ok(run(["keys", "retire", "--zone", "cn", "--version", "1"], env))
    assert "kek version 1 retired" in retired
    assert sorted(FileKeyProvider(key_file).load("cn").keys[KeyPurpose.KEK]) == [2]

    # Erasure, then the audit log's chain over everything above.
    gone = _ok(
        run(
            ["subjects", "erase", "--zone", "cn", "--pseudonym", erased,
             "--reason", "subject-request"],
            env,
        )
    )  # fmt: skip
    assert "erased; rows deleted: " in gone
    assert "ok: " in _ok(run(["audit", "verify", "--zone", "cn"], env))

    conn = await asyncpg.connect(roles.owner_dsn)
    try:
        subjects = await conn.fetch("SELECT pseudonym FROM subjects")
    finally:
        await conn.close()
    assert [row["pseudonym"] for row in subjects] == [kept]


async def test_migrate_and_storage_cluster_refuse_the_gateway_role_in_one_line(
    roles: Roles,
) -> None:
    """The two commands that need the tables' owner say so when given the gateway's DSN, and
    work with the owner's."""
    await migrate_database(roles.owner_dsn, zone="cn", grant_to=roles.gateway)
    conn = await asyncpg.connect(roles.gateway_dsn)
    try:  # a month long settled, so `storage cluster` has a partition to rewrite
        await conn.execute(
            "SELECT observations_ensure_partition($1)", datetime(2021, 3, 1, tzinfo=UTC)
        )
    finally:
        await conn.close()

    def env(dsn: str) -> dict[str, str]:
        return {"GATEWAY_ZONES": "cn", "GATEWAY_ZONE_CN_DATABASE_URL": dsn}

    for command in (
        ["storage", "cluster", "--zone", "cn"],
        ["migrate", "--grant-to", roles.gateway],
    ):
        refused = run(command, env(roles.gateway_dsn))
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines() == [
            "wearable-gateway: zone cn: this command needs the database role that owns the "
            "tables (the migration role's URL), not the gateway's role"
        ]
    clustered = _ok(run(["storage", "cluster", "--zone", "cn"], env(roles.owner_dsn)))
    assert "observations_y2021m03: clustered" in clustered


async def test_the_compose_init_script_creates_the_owner_and_gateway_roles(
    pg_server_dsn: str, tmp_path: Path
) -> None:
    """deploy/postgres/init-roles.sh, run as the postgres image runs it (the superuser, a fresh
    database), makes two non-superuser roles with the passwords of the secret files; `migrate`
    as the owner then works, and the gateway's role cannot touch the audit trigger."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("needs the psql client, which the postgres image runs the script with")
    suffix = uuid.uuid4().hex[:10]
    owner, app, database = f"wg_iowner_{suffix}", f"wg_iapp_{suffix}", f"wg_init_{suffix}"
    passwords = {owner: secrets.token_urlsafe(16), app: secrets.token_urlsafe(16)}
    for role, password in passwords.items():
        (tmp_path / role).write_text(password, encoding="utf-8")
    parts = urlsplit(pg_server_dsn)
    query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        env = {
            "PATH": os.environ["PATH"],
            "PGHOST": parts.hostname or query.get("host", ""),
            "PGPORT": str(parts.port or query.get("port", 5432)),
            "POSTGRES_USER": parts.username or "postgres",
            "POSTGRES_DB": database,
            "APP_DB_OWNER": owner,
            "APP_DB_OWNER_PASSWORD_FILE": str(tmp_path / owner),
            "APP_DB_USER": app,
            "APP_DB_USER_PASSWORD_FILE": str(tmp_path / app),
        }
        if parts.password:
            env["PGPASSWORD"] = parts.password
        process = await asyncio.create_subprocess_exec(
            str(INIT_SCRIPT), env=env, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        for password in passwords.values():
            assert password.encode() not in out + err

        rows = await admin.fetch(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolpassword "
            "FROM pg_authid WHERE rolname = ANY($1::text[])",
            [owner, app],
        )
        assert len(rows) == 2
        for row in rows:
            assert row["rolcanlogin"]
            assert not row["rolsuper"]
            assert not row["rolcreaterole"]
            assert not row["rolcreatedb"]
            assert row["rolpassword"].startswith("SCRAM-SHA-256$")
            assert passwords[row["rolname"]] not in row["rolpassword"]
        assert (
            await admin.fetchval(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
            )
            == owner
        )

        dsn = dsn_with_database(pg_server_dsn, database)
        await migrate_database(_as_role(dsn, owner), zone="cn", grant_to=app)
        conn = await asyncpg.connect(_as_role(dsn, app))
        try:
            assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
                await conn.execute(
                    "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"
                )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (app, owner):
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
