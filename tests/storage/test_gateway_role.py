"""Issue 11: the gateway runs as a role that does not own its tables. `migrate --grant-to` gives it
what the app needs (it enrols, ingests into a new monthly partition and reads back), and the
audit log stays out of its reach: it cannot disable the append-only trigger or change a row."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.errors import ConfigurationError
from gateway.settings import Settings, ZoneSettings
from gateway.storage import migrate_database
from gateway.storage.database import dsn_with_database
from tests.conftest import MRN, start_gateway
from tests.helpers import CN_TZ


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
