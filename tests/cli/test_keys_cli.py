"""`wearable-gateway keys upgrade|rotate|rewrap`, run as an operator would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import load_keyrings, open_zones
from gateway.privacy import IdentityUnreadable, IdentityVault, KeyPurpose, SealedIdentity
from gateway.privacy.provider import FileKeyProvider
from gateway.settings import Settings
from tests.cli.test_commands import run
from tests.conftest import DatabaseFactory, Gateway
from tests.helpers import fetch, gateways_caught_up
from tests.privacy.test_key_provider import old_key_file


def zone_env(settings: Settings) -> dict[str, str]:
    return {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": settings.zones["cn"].database_url,
        "GATEWAY_ZONE_CN_KEY_FILE": str(settings.zones["cn"].key_file),
    }


async def zone_with_subjects(
    gateway: Gateway, settings: Settings, *mrns: str
) -> tuple[dict[str, str], Path]:
    """Enrol `mrns` in zone cn; the zone's CLI environment and key file."""
    for mrn in mrns:
        await gateway.enrol("cn", mrn)
    key_file = settings.zones["cn"].key_file
    assert key_file is not None
    return zone_env(settings), key_file


async def test_rotating_the_kek_rewraps_every_data_key_in_batches_showing_progress(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    for mrn in ("MRN-1", "MRN-2", "MRN-3"):
        await gateway.enrol("cn", mrn)
    env = zone_env(settings)

    rotated = run(["keys", "rotate", "--zone", "cn", "--purpose", "kek", "--batch", "2"], env)

    assert rotated.returncode == 0, rotated.stderr
    assert "kek key version 2 added and active" in rotated.stdout
    assert "re-wrapped 2/3 data keys to kek version 2 (1 batches)" in rotated.stdout
    assert "re-wrapped 3/3 data keys to kek version 2 (2 batches)" in rotated.stdout
    rows = await fetch(zone_dsns["cn"], "SELECT DISTINCT kek_version FROM subject_keys")
    assert [row["kek_version"] for row in rows] == [2]
    again = run(["keys", "rewrap", "--zone", "cn"], env)
    assert again.returncode == 0, again.stderr
    assert "every data key is wrapped with kek version 2" in again.stdout


async def test_rotating_a_pseudonym_purpose_only_adds_a_version(
    gateway: Gateway, settings: Settings
) -> None:
    env = zone_env(settings)
    rotated = run(["keys", "rotate", "--zone", "cn", "--purpose", "blind-index"], env)
    assert rotated.returncode == 0, rotated.stderr
    assert settings.zones["cn"].key_file is not None
    ring = FileKeyProvider(settings.zones["cn"].key_file).load("cn")
    assert sorted(ring.keys[KeyPurpose.BLIND_INDEX]) == [1, 2]
    assert ring.active_version(KeyPurpose.KEK) == 1
    # Recomputed from every reading: a new version would break dedup and split devices.
    refused = run(["keys", "rotate", "--zone", "cn", "--purpose", "dedup"], env)
    assert refused.returncode == 2
    assert "invalid choice" in refused.stderr


async def key_events(dsn: str) -> list[dict[str, Any]]:
    rows = await fetch(
        dsn,
        "SELECT action, actor, outcome, key_version, detail::text AS detail FROM audit_events "
        "WHERE action IN ('key-rotate', 'key-init') ORDER BY seq",
    )
    return [{**dict(row), "detail": orjson.loads(row["detail"])} for row in rows]


def key_strings(key_file: Path) -> list[str]:
    document = orjson.loads(key_file.read_bytes())
    return [key for versions in document["keys"].values() for key in versions.values()]


async def test_key_rotations_and_rewraps_are_audited_and_the_chain_still_verifies(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    env, key_file = await zone_with_subjects(gateway, settings, "MRN-1", "MRN-2", "MRN-3")
    fingerprint = FileKeyProvider(key_file).load("cn").fingerprint()

    for args in (
        ["keys", "rotate", "--zone", "cn", "--purpose", "kek", "--batch", "2"],
        ["keys", "rewrap", "--zone", "cn"],
        ["keys", "rotate", "--zone", "cn", "--purpose", "audit"],
        ["keys", "rotate", "--zone", "cn", "--purpose", "blind-index"],
    ):
        done = run(args, env)
        assert done.returncode == 0, done.stderr

    events = await key_events(zone_dsns["cn"])
    assert [e["detail"]["operation"] for e in events] == [
        "rotate",
        "rewrap",
        "rewrap",
        "rotate",
        "rotate",
    ]
    assert {e["actor"] for e in events} == {"operator"}
    assert {e["outcome"] for e in events} == {"success"}
    kek, rewrap, again, audit, blind = (e["detail"] for e in events)
    assert (kek["purpose"], kek["old_version"], kek["new_version"]) == ("kek", 1, 2)
    assert kek["old_fingerprint"] == fingerprint
    assert kek["new_fingerprint"] != fingerprint
    assert rewrap == {
        "operation": "rewrap",
        "purpose": "kek",
        "kek_version": 2,
        "pending_at_start": 3,
        "rewrapped": 3,
        "batches": 2,
        "remaining": 0,
        "complete": True,
    }
    assert (again["rewrapped"], again["remaining"]) == (0, 0)
    assert (audit["purpose"], audit["new_version"]) == ("audit", 2)
    # The audit rotation's own record is sealed with the new audit key, the ones before it not.
    assert [e["key_version"] for e in events] == [1, 1, 1, 2, 2]
    assert (blind["purpose"], blind["old_version"], blind["new_version"]) == ("blind-index", 1, 2)

    verified = run(["audit", "verify", "--zone", "cn"], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok: ")
    # Never key material: no key of the file (in any version) appears in the log.
    log = "\n".join(str(e["detail"]) for e in events)
    for key in key_strings(key_file):
        assert key not in log


async def test_keys_upgrade_of_a_configured_zone_is_audited(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    dsn = await databases.create("cli_upgrade")
    path = tmp_path / "cn.keys.json"
    old_key_file(path)
    env = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": dsn,
        "GATEWAY_ZONE_CN_KEY_FILE": str(path),
    }

    upgraded = run(["keys", "upgrade", "--zone", "cn", "--file", str(path)], env)

    assert upgraded.returncode == 0, upgraded.stderr
    assert "Recorded in zone cn's audit log." in upgraded.stdout
    [event] = await key_events(dsn)
    assert event["action"] == "key-init"
    assert event["detail"] == {
        "operation": "upgrade",
        "purposes_added": ["audit", "study-pseudonym", "date-shift", "cursor"],
        "fingerprint": FileKeyProvider(path).load("cn").fingerprint(),
    }
    verified = run(["audit", "verify", "--zone", "cn"], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_keys_init_writes_a_file_and_records_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    created = run(["keys", "init", "--zone", "cn", "--out", str(path)], {})
    assert created.returncode == 0, created.stderr
    assert "Nothing is recorded in the audit log" in created.stdout


def test_keys_upgrade_adds_what_an_old_file_lacks(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    old_key_file(path)
    upgraded = run(["keys", "upgrade", "--zone", "cn", "--file", str(path)], {})
    assert upgraded.returncode == 0, upgraded.stderr
    assert "added audit, study-pseudonym, date-shift, cursor keys" in upgraded.stdout
    # No zone is configured here: the file is upgraded, and the output says nothing was audited.
    assert "Not recorded in the zone's audit log" in upgraded.stdout
    unchanged = run(["keys", "upgrade", "--zone", "cn", "--file", str(path)], {})
    assert "already has keys for every purpose; unchanged" in unchanged.stdout
    wrong_zone = run(["keys", "upgrade", "--zone", "eu", "--file", str(path)], {})
    assert wrong_zone.returncode == 2
    assert "is for zone cn, not eu" in wrong_zone.stderr


async def subject_key_backup(dsn: str) -> list[tuple[str, SealedIdentity]]:
    """What a backup of `subjects` and `subject_keys` taken now would hold."""
    rows = await fetch(
        dsn,
        "SELECT s.pseudonym, k.wrapped_key, k.kek_version, s.identity "
        "FROM subjects s JOIN subject_keys k ON k.subject = s.pseudonym ORDER BY 1",
    )
    return [
        (r["pseudonym"], SealedIdentity(r["wrapped_key"], r["kek_version"], r["identity"]))
        for r in rows
    ]


async def test_retiring_the_old_kek_makes_a_backup_from_before_the_rotation_unreadable(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    env, key_file = await zone_with_subjects(gateway, settings, "MRN-1", "MRN-2", "MRN-3")
    backup = await subject_key_backup(zone_dsns["cn"])  # taken before the rotation
    rotated = run(["keys", "rotate", "--zone", "cn", "--purpose", "kek"], env)
    assert rotated.returncode == 0, rotated.stderr
    # Until retirement, the rotated ring still opens the old backup: the check below can fail.
    before = FileKeyProvider(key_file).load("cn")
    vault = IdentityVault(before)
    assert [vault.open(subject, sealed)["identifiers"] for subject, sealed in backup]
    # The running gateway reloads the rotated file (NOTIFY) before retiring is allowed.
    await gateways_caught_up(zone_dsns["cn"])

    retired = run(["keys", "retire", "--zone", "cn", "--version", "1"], env)

    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert "kek version 1 retired; no data key used it" in retired.stdout
    ring = FileKeyProvider(key_file).load("cn")
    assert sorted(ring.keys[KeyPurpose.KEK]) == [2]
    for subject, sealed in backup:
        with pytest.raises(IdentityUnreadable):
            IdentityVault(ring).open(subject, sealed)
    # Today's rows open, the zone starts with the file, and the retirement is in the audit log.
    for subject, sealed in await subject_key_backup(zone_dsns["cn"]):
        assert IdentityVault(ring).open(subject, sealed)["identifiers"]
    zones = await open_zones(settings, load_keyrings(settings))  # start-up's check passes
    for zone in zones.values():
        await zone.db.close()
    events = await key_events(zone_dsns["cn"])
    assert events[-1]["detail"] == {
        "operation": "retire",
        "purpose": "kek",
        "retired_version": 1,
        "was_in_ring": True,
        "old_fingerprint": before.fingerprint(),
        "new_fingerprint": ring.fingerprint(),
    }
    verified = run(["audit", "verify", "--zone", "cn"], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Retiring again is a no-op that says so in the log too.
    again = run(["keys", "retire", "--zone", "cn", "--version", "1"], env)
    assert again.returncode == 0, again.stderr
    assert "kek version 1 was already retired" in again.stdout
    assert (await key_events(zone_dsns["cn"]))[-1]["detail"]["was_in_ring"] is False


async def test_retiring_a_kek_version_still_in_use_or_active_is_refused(
    gateway: Gateway, settings: Settings
) -> None:
    env, key_file = await zone_with_subjects(gateway, settings, "MRN-1", "MRN-2")
    added = run(["keys", "rotate", "--zone", "cn", "--purpose", "kek", "--no-rewrap"], env)
    assert added.returncode == 0, added.stderr
    before = key_file.read_bytes()

    in_use = run(["keys", "retire", "--zone", "cn", "--version", "1"], env)
    assert in_use.returncode == 1
    assert "2 data keys are still wrapped under kek version 1; nothing was retired" in in_use.stdout
    active = run(["keys", "retire", "--zone", "cn", "--version", "2"], env)
    assert active.returncode == 2
    assert "kek version 2 is the active one" in active.stderr
    never = run(["keys", "retire", "--zone", "cn", "--version", "3"], env)
    assert never.returncode == 2
    assert "never had kek version 3" in never.stderr
    assert key_file.read_bytes() == before

    assert run(["keys", "rewrap", "--zone", "cn"], env).returncode == 0
    await gateways_caught_up(settings.zones["cn"].database_url)
    assert run(["keys", "retire", "--zone", "cn", "--version", "1"], env).returncode == 0
