"""Key rotation against real zone databases: KEK re-wrap (online, batched, resumable), blind-index
rotation, and the start-up check that a key ring covers the versions stored data uses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.app import open_zones
from gateway.errors import ConfigurationError, TableBusy
from gateway.privacy import IdentityVault, KeyPurpose, SealedIdentity, ZoneKeyRing
from gateway.privacy.provider import FileKeyProvider
from gateway.services.key_rotation import RewrapProgress, retire_kek_version, rewrap_data_keys
from gateway.settings import Settings
from gateway.storage import ZoneDatabase
from gateway.web.appkeys import ZONES
from tests.conftest import Gateway, start_gateway
from tests.helpers import fetch, reading

SUBJECTS = [f"MRN-{n}" for n in range(7)]


class InjectedCrash(Exception):
    pass


async def enrolled(gateway: Gateway) -> dict[str, str]:
    return {mrn: await gateway.enrol("cn", mrn) for mrn in SUBJECTS}


async def subject_rows(dsn: str) -> dict[str, dict[str, Any]]:
    rows = await fetch(
        dsn,
        "SELECT s.pseudonym, k.kek_version, k.wrapped_key, s.identity "
        "FROM subjects s JOIN subject_keys k ON k.subject = s.pseudonym ORDER BY 1",
    )
    return {row["pseudonym"]: dict(row) for row in rows}


def rotate(key_file: Path, purpose: KeyPurpose) -> ZoneKeyRing:
    provider = FileKeyProvider(key_file)
    ring = provider.load("cn").with_new_version(purpose)
    provider.store(ring)
    return ring


async def rewrap(
    dsn: str, ring: ZoneKeyRing, *, batch: int, crash_after: int | None = None
) -> list[RewrapProgress]:
    seen: list[RewrapProgress] = []

    def observe(progress: RewrapProgress) -> None:
        seen.append(progress)
        if crash_after is not None and progress.batches == crash_after:
            raise InjectedCrash

    db = await ZoneDatabase.connect("cn", dsn, max_size=2)
    try:
        await rewrap_data_keys(db, ring, batch=batch, on_batch=observe)
    finally:
        await db.close()
    return seen


async def assert_every_subject_resolves(gateway: Gateway) -> None:
    # A reading for each subject is accepted as a new Observation: never unknown-subject.
    for n, mrn in enumerate(SUBJECTS):
        status, body = await gateway.ingest("cn", [reading(mrn, value=60 + n)])
        assert status == 200, body
        assert body["results"][0]["outcome"] in {"created", "duplicate"}, body


def assert_identities_open(ring: ZoneKeyRing, rows: dict[str, dict[str, Any]]) -> None:
    vault = IdentityVault(ring)
    for pseudonym, row in rows.items():
        sealed = SealedIdentity(row["wrapped_key"], row["kek_version"], row["identity"])
        assert vault.open(pseudonym, sealed)["birth_date"] == "1970-01-02"


async def test_after_kek_rotation_every_subject_resolves_with_its_pseudonym_unchanged(
    gateway: Gateway, aiohttp_client: Any, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    pseudonyms = await enrolled(gateway)
    before = await subject_rows(zone_dsns["cn"])
    assert settings.zones["cn"].key_file is not None
    ring = rotate(settings.zones["cn"].key_file, KeyPurpose.KEK)

    progress = await rewrap(zone_dsns["cn"], ring, batch=3)

    assert [(p.done, p.total) for p in progress] == [(3, 7), (6, 7), (7, 7)]
    after = await subject_rows(zone_dsns["cn"])
    assert set(after) == set(before) == set(pseudonyms.values())
    assert {row["kek_version"] for row in after.values()} == {2}
    for pseudonym, row in after.items():
        # The identity ciphertext is untouched; only the 60-byte wrapped key changed.
        assert row["identity"] == before[pseudonym]["identity"]
        assert row["wrapped_key"] != before[pseudonym]["wrapped_key"]
    assert_identities_open(ring, after)
    restarted = await start_gateway(aiohttp_client, settings)
    await assert_every_subject_resolves(restarted)
    assert await restarted.enrol("cn", "MRN-new") not in pseudonyms.values()


async def test_a_rotation_that_crashes_mid_way_completes_when_run_again(
    gateway: Gateway, aiohttp_client: Any, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    await enrolled(gateway)
    assert settings.zones["cn"].key_file is not None
    ring = rotate(settings.zones["cn"].key_file, KeyPurpose.KEK)

    with pytest.raises(InjectedCrash):
        await rewrap(zone_dsns["cn"], ring, batch=2, crash_after=2)
    halfway = await subject_rows(zone_dsns["cn"])
    assert sorted(row["kek_version"] for row in halfway.values()) == [1, 1, 1, 2, 2, 2, 2]

    resumed = await rewrap(zone_dsns["cn"], ring, batch=2)

    # Progress comes from the data: the re-run sees only the 3 rows still under version 1.
    assert (resumed[-1].done, resumed[-1].total) == (3, 3)
    after = await subject_rows(zone_dsns["cn"])
    assert {row["kek_version"] for row in after.values()} == {2}
    assert set(after) == set(halfway)
    assert_identities_open(ring, after)
    await assert_every_subject_resolves(await start_gateway(aiohttp_client, settings))


async def test_subjects_enrolled_before_and_after_a_blind_index_rotation_both_resolve(
    gateway: Gateway, aiohttp_client: Any, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    old = await gateway.enrol("cn", SUBJECTS[0])
    assert settings.zones["cn"].key_file is not None
    rotate(settings.zones["cn"].key_file, KeyPurpose.BLIND_INDEX)
    restarted = await start_gateway(aiohttp_client, settings)
    new = await restarted.enrol("cn", SUBJECTS[1])

    indexes = await fetch(zone_dsns["cn"], "SELECT blind_index, subject FROM subject_identifiers")
    assert {(row["blind_index"][:3], row["subject"]) for row in indexes} == {
        ("b1-", old),
        ("b2-", new),
    }
    for n, mrn in enumerate(SUBJECTS[:2]):
        status, body = await restarted.ingest("cn", [reading(mrn, value=70 + n)])
        assert status == 200
        assert body["results"][0]["outcome"] == "created", body
    # The unique index sees b2- values only; the older version is checked on enrolment too.
    response = await restarted.client.post(
        "/v1/subjects",
        json={
            "zone": "cn",
            "site": "hainan-general",
            "identifiers": [{"system": "urn:oid:1.2.156.999.1", "value": SUBJECTS[0]}],
            "consent": {"research": True, "cross_border": False},
        },
        headers=restarted.auth(restarted.clinic["cn"]),
    )
    assert response.status == 409


async def test_start_up_refuses_a_key_ring_missing_a_version_the_data_needs(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    await enrolled(gateway)
    key_file = settings.zones["cn"].key_file
    assert key_file is not None
    outdated = FileKeyProvider(key_file).load("cn")
    await rewrap(zone_dsns["cn"], rotate(key_file, KeyPurpose.KEK), batch=500)
    eu = FileKeyProvider(settings.zones["eu"].key_file or Path()).load("eu")

    with pytest.raises(ConfigurationError, match=r"kek key version\(s\) 2, which the key ring"):
        await open_zones(settings, {"cn": outdated, "eu": eu})
    zones = await open_zones(settings, {"cn": FileKeyProvider(key_file).load("cn"), "eu": eu})
    for zone in zones.values():
        await zone.db.close()


async def lock_waited_for(
    conn: asyncpg.Connection, table: str, task: asyncio.Task[Any], limit: float = 30
) -> None:
    """Wait (`limit` seconds at most) until some session waits for a lock on `table`."""
    deadline = asyncio.get_running_loop().time() + limit
    while not await conn.fetchval(
        "SELECT count(*) > 0 FROM pg_locks WHERE relation = $1::regclass AND NOT granted", table
    ):
        assert not task.done(), "the retirement ended without waiting for the lock"
        assert asyncio.get_running_loop().time() < deadline, "nobody waited for the lock"
        await asyncio.sleep(0.01)


async def test_retirement_counts_under_a_lock_so_a_key_wrapped_meanwhile_blocks_it(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    await enrolled(gateway)
    key_file = settings.zones["cn"].key_file
    assert key_file is not None
    ring = rotate(key_file, KeyPurpose.KEK)
    await rewrap(zone_dsns["cn"], ring, batch=500)
    zone = gateway.client.app[ZONES]["cn"]
    provider = FileKeyProvider(key_file)
    # Another session wraps a key under version 1 (as a gateway still on the old ring would),
    # and has not committed yet when the retirement starts.
    other = await asyncpg.connect(zone_dsns["cn"])
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "UPDATE subject_keys SET kek_version = 1 "
            "WHERE subject = (SELECT min(subject) FROM subject_keys)"
        )
        with pytest.raises(TableBusy):
            async with zone.db.key_ring.retiring_kek(1, lock_timeout_seconds=0.2):
                pytest.fail("ran while the table was busy")
        retiring = asyncio.create_task(retire_kek_version(zone, provider, ring, 1))
        # Commit only once the retirement waits for the lock (a condition, not a guessed delay:
        # on a loaded machine it may not have reached its LOCK yet after any fixed sleep).
        await lock_waited_for(other, "subject_keys", retiring)
        assert not retiring.done()  # waiting for the lock, not counting yet
        await transaction.commit()
        retired = await asyncio.wait_for(retiring, 10)
    finally:
        await other.close()
    assert (retired.still_wrapped, retired.ring) == (1, None)
    assert sorted(provider.load("cn").keys[KeyPurpose.KEK]) == [1, 2]
