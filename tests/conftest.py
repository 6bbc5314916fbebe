"""Test infrastructure: a real PostgreSQL for every test that needs one.

The server is the one named by GATEWAY_TEST_DATABASE_URL (any database on it; the suite creates
and drops its own, under names carrying a uuid, so concurrent sessions never share one),
otherwise an embedded server from `pgserver` started once per test session — once per xdist
worker, each in its own folder — with durability off (its data is scratch).

A migrated template database is built once per session. `zone_dsns` are two zone databases
cloned from it once per session and emptied before every test by
`gateway.storage.testing.reset_for_tests` (a TRUNCATE: milliseconds, where a clone and a drop
cost ~0.7 s); `databases` still clones fresh ones for tests that need a pristine or unusual
database (migrations, their own servers, extra zones).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import settings

from gateway.app import create_app
from gateway.privacy import ZoneKeyRing
from gateway.services.credentials import add_credential
from gateway.settings import Settings, ZoneSettings
from gateway.storage import dsn_with_database, migrate_database
from gateway.storage.testing import reset_for_tests
from gateway.web.appkeys import ZONES

# Property tests: random examples by default (they find what nobody thought of); `ci` replays the
# same examples every run, so a build's result depends on its change alone; `thorough` explores
# twenty times further, for a local run after touching parsing, times or keys.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("thorough", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Parallel by default (`pytest` as the README says it): one xdist worker more than there
    are CPUs, since much of a test's time is spent waiting on PostgreSQL, which runs in processes
    of its own (on 2 cores: 3 workers took 3:09, 2 took 3:37). `-n`/`--numprocesses` overrides
    it (`-n0` runs in one process), `-p no:xdist` turns it off; `--pdb` runs in one process.
    Not an `addopts = -n …`: with xdist disabled pytest would refuse `-n`. Runs before
    xdist's own hook of the same name, which then builds the workers."""
    if not config.pluginmanager.hasplugin("xdist") or "PYTEST_XDIST_WORKER" in os.environ:
        return
    if config.option.numprocesses is None and not config.option.collectonly:
        if config.getoption("usepdb", False):
            config.option.numprocesses = 0
        else:
            config.option.numprocesses = _usable_cpus() + 1


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    configured = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="wg-test-pg-") as folder:
        server = pgserver.get_server(Path(folder), cleanup_mode="stop")
        try:
            # Our own scratch server: nothing in it must survive a crash, so no flushes at all
            # (psql runs each line in its own transaction; ALTER SYSTEM refuses to be in one).
            # A server named by GATEWAY_TEST_DATABASE_URL is someone else's and keeps its own.
            server.psql(
                "ALTER SYSTEM SET fsync = off;\n"
                "ALTER SYSTEM SET synchronous_commit = off;\n"
                "ALTER SYSTEM SET full_page_writes = off;\n"
                "SELECT pg_reload_conf();\n"
            )
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
async def template_database(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"wg_template_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate_database(dsn_with_database(pg_server_dsn, name))
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class DatabaseFactory:
    """Creates migrated databases cloned from the session template; drops them at teardown."""

    def __init__(self, server_dsn: str, template: str) -> None:
        self._server_dsn = server_dsn
        self._template = template
        self._created: list[str] = []

    async def create(self, label: str, *, migrated: bool = True) -> str:
        name = f"wg_{label}_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self._server_dsn)
        try:
            template = f' TEMPLATE "{self._template}"' if migrated else ""
            await admin.execute(f'CREATE DATABASE "{name}"{template}')
        finally:
            await admin.close()
        self._created.append(name)
        return dsn_with_database(self._server_dsn, name)

    async def drop_all(self) -> None:
        admin = await asyncpg.connect(self._server_dsn)
        try:
            for name in self._created:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def databases(pg_server_dsn: str, template_database: str) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(pg_server_dsn, template_database)
    yield factory
    await factory.drop_all()


@pytest.fixture(scope="session")
async def shared_zone_dsns(
    pg_server_dsn: str, template_database: str
) -> AsyncIterator[dict[str, str]]:
    """The session's (the xdist worker's) two zone databases, reused by every `zone_dsns`."""
    factory = DatabaseFactory(pg_server_dsn, template_database)
    try:
        yield {zone: await factory.create(f"shared_{zone}") for zone in ("cn", "eu")}
    finally:
        await factory.drop_all()


@pytest.fixture
async def zone_dsns(shared_zone_dsns: dict[str, str]) -> dict[str, str]:
    """Two migrated, empty zone databases, one for `cn`, one for `eu`, that only this test uses
    while it runs: the session's pair, reset before the test (not after, so a test that failed
    half-way cannot leave anything to the next one)."""
    for dsn in shared_zone_dsns.values():
        await reset_for_tests(dsn)
    return dict(shared_zone_dsns)


# --- a gateway on real databases, driven over HTTP ---------------------------------------------

MRN = {"cn": "urn:oid:1.2.156.999.1", "eu": "urn:oid:1.3.6.1.4.1.99999.1"}
SITE = {"cn": "hainan-general", "eu": "eu-partner-clinic"}


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for zone in ("cn", "eu"):
        path = tmp_path / f"{zone}.keys.json"
        ZoneKeyRing.generate(zone).write(path)
        files[zone] = path
    return files


@pytest.fixture
def settings(zone_dsns: dict[str, str], key_files: dict[str, Path]) -> Settings:
    return Settings(
        zones={
            zone: ZoneSettings(name=zone, database_url=zone_dsns[zone], key_file=key_files[zone])
            for zone in ("cn", "eu")
        },
        pool_max_size=4,
    )


@dataclass
class Gateway:
    """A running gateway app behind aiohttp's test client, with credentials in both zones."""

    client: TestClient
    vendor: dict[str, str] = field(default_factory=dict)
    clinic: dict[str, str] = field(default_factory=dict)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def enrol(
        self, zone: str, value: str, *, extra: list[dict[str, str]] | None = None, **fields: Any
    ) -> str:
        body = {
            "zone": zone,
            "site": SITE[zone],
            "identifiers": [{"system": MRN[zone], "value": value}, *(extra or [])],
            "birth_date": "1970-01-02",
            "sex": "female",
            "consent": {"research": True, "cross_border": False},
            **fields,
        }
        response = await self.client.post(
            "/v1/subjects", json=body, headers=self.auth(self.clinic[zone])
        )
        assert response.status == 201, await response.text()
        return str((await response.json())["pseudonym"])

    async def ingest(
        self, zone: str, readings: list[dict[str, Any]] | dict[str, Any], *, fmt: str = "native"
    ) -> tuple[int, dict[str, Any]]:
        body = {"readings": readings} if isinstance(readings, list) else readings
        response = await self.client.post(
            f"/v1/ingest/{fmt}", json=body, headers=self.auth(self.vendor[zone])
        )
        return response.status, await response.json()


async def start_gateway(aiohttp_client: Any, settings: Settings) -> Gateway:
    app = create_app(settings)
    client = await aiohttp_client(app)
    gateway = Gateway(client)
    for zone in ("cn", "eu"):
        vendor = await add_credential(app[ZONES], zone=zone, kind="vendor", owner="acme-wearables")
        clinic = await add_credential(app[ZONES], zone=zone, kind="clinic", owner=SITE[zone])
        gateway.vendor[zone] = vendor.token
        gateway.clinic[zone] = clinic.token
    return gateway


@pytest.fixture
async def gateway(aiohttp_client: Any, settings: Settings) -> Gateway:
    return await start_gateway(aiohttp_client, settings)
