"""Key rotation across processes (issue 11, item 9): a running gateway follows the key file the
`keys` CLI rotates, through what the zone database records, and `keys retire` waits for it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from gateway.app import load_keyrings, open_zones
from gateway.errors import ConfigurationError, StaleKeyRing
from gateway.privacy import KeyPurpose, SealedIdentity
from gateway.privacy.provider import FileKeyProvider
from gateway.runtime.key_ring import Instance, ZoneKeys
from gateway.runtime.zones import Zone
from gateway.services.key_rotation import publish_rotation, retire_kek_version
from gateway.settings import Settings
from gateway.storage import StoredSubject, ZoneDatabase
from gateway.storage.key_ring import InstanceReport
from gateway.web.appkeys import ZONES
from tests.cli.test_commands import run
from tests.cli.test_keys_cli import zone_env
from tests.conftest import Gateway
from tests.helpers import fetch, gateways_caught_up


async def cli(settings: Settings, *args: str) -> str:
    """Run a `wearable-gateway` command as the operator would, without blocking the event loop
    the gateway under test runs on."""
    done = await asyncio.to_thread(run, list(args), zone_env(settings))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def kek_versions(dsn: str) -> dict[str, int]:
    rows = await fetch(dsn, "SELECT subject, kek_version FROM subject_keys")
    return {row["subject"]: row["kek_version"] for row in rows}


def key_file(settings: Settings) -> Path:
    path = settings.zones["cn"].key_file
    assert path is not None
    return path


async def test_a_running_gateway_wraps_enrolments_after_a_cli_rotation_under_the_new_kek(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    before = await gateway.enrol("cn", "MRN-1")
    await cli(settings, "keys", "rotate", "--zone", "cn", "--purpose", "kek", "--no-rewrap")

    after = await gateway.enrol("cn", "MRN-2")  # whether or not the NOTIFY has arrived yet

    assert await kek_versions(zone_dsns["cn"]) == {before: 1, after: 2}
    assert gateway.client.app[ZONES]["cn"].keyring.active_version(KeyPurpose.KEK) == 2


async def test_a_running_gateway_reads_identities_the_cli_rewrapped_under_a_new_kek(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await gateway.enrol("cn", "MRN-1")
    zone = gateway.client.app[ZONES]["cn"]
    stale = zone.keys.tools
    await cli(settings, "keys", "rotate", "--zone", "cn", "--purpose", "kek")
    assert await kek_versions(zone_dsns["cn"]) == {pseudonym: 2}
    # However far the gateway's own reload has got: a version its ring lacks makes it reload.
    zone.keys._tools = stale

    subject = await zone.db.subjects.get(pseudonym)
    assert subject is not None
    identity = await zone.keys.open_identity(
        pseudonym, SealedIdentity(subject.wrapped_key, subject.kek_version, subject.identity)
    )
    assert identity["identifiers"] == [{"system": "urn:oid:1.2.156.999.1", "value": "MRN-1"}]
    assert zone.keyring.active_version(KeyPurpose.KEK) == 2


async def test_the_database_refuses_a_data_key_wrapped_under_a_kek_older_than_published(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await gateway.enrol("cn", "MRN-1")
    await cli(settings, "keys", "rotate", "--zone", "cn", "--purpose", "kek", "--no-rewrap")
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        # Re-wrapping is allowed forward, never back under the version being rotated away from.
        with pytest.raises(asyncpg.PostgresError) as refused:
            await conn.execute("UPDATE subject_keys SET kek_version = 0")
        assert refused.value.sqlstate == "WGK01"
    finally:
        await conn.close()
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"], max_size=1)
    try:
        with pytest.raises(StaleKeyRing):
            await db.subjects.insert(
                StoredSubject("s-new", "hainan-general", True, False, 1, b"k" * 60, b"i"), []
            )
    finally:
        await db.close()
    assert await kek_versions(zone_dsns["cn"]) == {pseudonym: 1}


async def test_retire_waits_for_a_live_gateway_whose_key_file_is_behind_and_not_for_a_dead_one(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str], tmp_path: Path
) -> None:
    await gateway.enrol("cn", "MRN-1")
    # A second gateway on another host, whose copy of the key file is not updated.
    other_host = tmp_path / "other-host.keys.json"
    shutil.copy2(key_file(settings), other_host)
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"], max_size=2)
    try:
        lagging = ZoneKeys(
            "cn",
            db,
            FileKeyProvider(other_host).load("cn"),
            provider=FileKeyProvider(other_host),
            instance=Instance.this_process(lease_seconds=600),
        )
        await lagging.start()
        await cli(settings, "keys", "rotate", "--zone", "cn", "--purpose", "kek")
        # It sees the new generation, but its file is behind: it keeps its ring, and says so.
        assert not await lagging.refresh()
        assert lagging.ring.active_version(KeyPurpose.KEK) == 1

        refused = await asyncio.to_thread(
            run, ["keys", "retire", "--zone", "cn", "--version", "1"], zone_env(settings)
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "holds kek version 1 as active" in refused.stdout
        assert sorted(FileKeyProvider(key_file(settings)).load("cn").keys[KeyPurpose.KEK]) == [
            1,
            2,
        ]
        # Nor can a gateway start with that stale file once the rotation is published.
        with pytest.raises(ConfigurationError, match="behind the zone's published keys"):
            await ZoneKeys("cn", db, FileKeyProvider(other_host).load("cn")).start()

        # That host crashes: its row stays, but its lease runs out and no longer counts.
        await db.key_ring.heartbeat(_expired(lagging), lease_seconds=0)
        await gateways_caught_up(zone_dsns["cn"])
        out = await cli(settings, "keys", "retire", "--zone", "cn", "--version", "1")
        assert "kek version 1 retired" in out
    finally:
        await db.close()
    assert sorted(FileKeyProvider(key_file(settings)).load("cn").keys[KeyPurpose.KEK]) == [2]
    # The running gateway dropped the retired version from memory.
    zone = gateway.client.app[ZONES]["cn"]
    await gateways_caught_up(zone_dsns["cn"])
    assert sorted(zone.keyring.keys[KeyPurpose.KEK]) == [2]


def _expired(keys: ZoneKeys) -> InstanceReport:
    instance = keys._instance
    assert instance is not None
    return InstanceReport(
        instance.id,
        instance.host,
        instance.pid,
        keys.generation,
        keys.ring.active_version(KeyPurpose.KEK),
        sorted(keys.ring.keys[KeyPurpose.KEK]),
        keys.ring.fingerprint(),
    )


async def test_retire_refuses_while_a_live_gateway_has_not_loaded_the_current_generation(
    settings: Settings, zone_dsns: dict[str, str]
) -> None:
    zones = await open_zones(settings, load_keyrings(settings))
    try:
        zone = zones["cn"]
        # A live gateway that registered at the start and has not checked since.
        sleeper = ZoneKeys(
            "cn", zone.db, zone.keyring, instance=Instance.this_process(lease_seconds=600)
        )
        await sleeper.start()
        provider = FileKeyProvider(key_file(settings))
        ring = provider.load("cn").with_new_version(KeyPurpose.KEK)
        provider.store(ring)
        current = Zone.build(zone.db, ring)
        await publish_rotation(current, ring)

        retired = await retire_kek_version(current, provider, ring, 1)

        assert retired.ring is None
        assert retired.still_wrapped == 0
        assert [i.generation for i in retired.blocking] == [sleeper.generation]
        assert sorted(provider.load("cn").keys[KeyPurpose.KEK]) == [1, 2]
        # Once it has checked (and reloaded: its ring has no provider, so it only acknowledges),
        # the version can go.
        sleeper = ZoneKeys("cn", zone.db, ring, instance=sleeper._instance)
        await sleeper.refresh()
        assert (await retire_kek_version(current, provider, ring, 1)).ring is not None
    finally:
        for opened in zones.values():
            await opened.db.close()
