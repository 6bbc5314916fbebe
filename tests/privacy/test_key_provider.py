"""FileKeyProvider: loading, storing a rotated ring, upgrading an older key file; and blind-index
lookups across versions."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import orjson
import pytest

from gateway.demo import ensure_demo_key_file
from gateway.errors import ConfigurationError
from gateway.models import Identifier
from gateway.privacy import KeyPurpose, Pseudonymiser, ZoneKeyRing
from gateway.privacy.provider import FileKeyProvider, KeyProvider

OLD_PURPOSES = ("kek", "subject-pseudonym", "device-pseudonym", "blind-index", "dedup")


def old_key_file(path: Path) -> dict[str, object]:
    """A key file from before the audit log, research extracts and cursors: five purposes."""
    document = orjson.loads(ZoneKeyRing.generate("cn").to_json())
    document["keys"] = {p: v for p, v in document["keys"].items() if p in OLD_PURPOSES}
    document["active"] = {p: v for p, v in document["active"].items() if p in OLD_PURPOSES}
    path.write_bytes(orjson.dumps(document))
    path.chmod(0o600)
    return document


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_file_provider_is_a_key_provider_and_loads_only_its_zone(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    ring = ZoneKeyRing.generate("cn")
    provider = FileKeyProvider(path)
    provider.store(ring)

    assert isinstance(provider, KeyProvider)
    assert provider.load("cn").fingerprint() == ring.fingerprint()
    with pytest.raises(ConfigurationError, match="is for zone cn, not eu"):
        provider.load("eu")


def test_storing_a_rotated_ring_replaces_the_file_and_keeps_the_previous_one_as_bak(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cn.keys.json"
    ring = ZoneKeyRing.generate("cn")
    ring.write(path)
    before = path.read_bytes()
    rotated = ring.with_new_version(KeyPurpose.KEK)

    FileKeyProvider(path).store(rotated)

    backup = path.with_name("cn.keys.json.bak")
    assert backup.read_bytes() == before
    assert mode(path) == mode(backup) == 0o600
    loaded = FileKeyProvider(path).load("cn")
    assert loaded.active_version(KeyPurpose.KEK) == 2
    assert loaded.key(KeyPurpose.KEK, 1) == ring.key(KeyPurpose.KEK, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cn.keys.json", "cn.keys.json.bak"]


def test_storing_a_ring_that_drops_a_key_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    ZoneKeyRing.generate("cn").with_new_version(KeyPurpose.KEK).write(path)
    before = path.read_bytes()

    with pytest.raises(ConfigurationError, match="drops or changes kek key version 1"):
        FileKeyProvider(path).store(ZoneKeyRing.generate("cn"))
    assert path.read_bytes() == before


def _b64(key: bytes) -> bytes:
    return base64.urlsafe_b64encode(key).rstrip(b"=")


def test_retiring_a_version_removes_it_from_the_file_and_its_backup_and_nothing_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cn.keys.json"
    ring = ZoneKeyRing.generate("cn")
    ring.write(path)
    provider = FileKeyProvider(path)
    rotated = ring.with_new_version(KeyPurpose.KEK)
    provider.store(rotated)  # the .bak now holds the ring with only kek version 1
    old_key = ring.key(KeyPurpose.KEK, 1)
    backup = path.with_name("cn.keys.json.bak")
    assert _b64(old_key) in backup.read_bytes()  # the check below can fail

    retired = provider.retire("cn", KeyPurpose.KEK, 1)

    assert sorted(retired.keys[KeyPurpose.KEK]) == [2]
    for file in (path, backup):
        assert _b64(old_key) not in file.read_bytes()
        assert mode(file) == 0o600
    loaded = provider.load("cn")
    assert loaded.fingerprint() == retired.fingerprint()
    assert loaded.key(KeyPurpose.KEK, 2) == rotated.key(KeyPurpose.KEK, 2)
    for purpose in KeyPurpose:
        if purpose is not KeyPurpose.KEK:
            assert loaded.keys[purpose] == ring.keys[purpose]
    with pytest.raises(ConfigurationError, match="no kek key version 1"):
        loaded.key(KeyPurpose.KEK, 1)


def test_retiring_the_active_version_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    ZoneKeyRing.generate("cn").write(path)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="active one"):
        FileKeyProvider(path).retire("cn", KeyPurpose.KEK, 1)
    assert path.read_bytes() == before
    assert not path.with_name("cn.keys.json.bak").exists()


def test_retiring_again_after_a_crash_removes_the_copy_left_in_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    ring = ZoneKeyRing.generate("cn").with_new_version(KeyPurpose.KEK)
    ring.write(path)
    provider = FileKeyProvider(path)
    provider.retire("cn", KeyPurpose.KEK, 1)
    # As if the process died between the key file's rewrite and its backup's.
    backup = path.with_name("cn.keys.json.bak")
    backup.write_bytes(ring.to_json())
    retired_file = path.read_bytes()

    again = provider.retire("cn", KeyPurpose.KEK, 1)

    assert path.read_bytes() == retired_file == backup.read_bytes()
    assert sorted(again.keys[KeyPurpose.KEK]) == [2]


def test_an_old_key_file_is_refused_with_a_pointer_to_keys_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    old_key_file(path)
    with pytest.raises(ConfigurationError, match="keys upgrade"):
        FileKeyProvider(path).load("cn")


def test_upgrade_adds_missing_purposes_and_keeps_old_keys_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "cn.keys.json"
    old = old_key_file(path)
    old_bytes = path.read_bytes()

    added = FileKeyProvider(path).upgrade("cn")

    assert set(added) == set(KeyPurpose) - {KeyPurpose(p) for p in OLD_PURPOSES}
    upgraded = orjson.loads(path.read_bytes())
    for purpose in OLD_PURPOSES:
        assert upgraded["keys"][purpose] == old["keys"][purpose]  # type: ignore[index]
        assert upgraded["active"][purpose] == old["active"][purpose]  # type: ignore[index]
    assert upgraded["created"] == old["created"]
    assert path.with_name("cn.keys.json.bak").read_bytes() == old_bytes
    assert mode(path) == 0o600
    FileKeyProvider(path).load("cn")
    # Nothing left to add: the file (and its backup) stay as they are.
    upgraded_bytes = path.read_bytes()
    assert FileKeyProvider(path).upgrade("cn") == ()
    assert path.read_bytes() == upgraded_bytes


def test_the_demo_upgrades_its_own_old_key_folder(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "cn.keys.json"
    path.parent.mkdir()
    old = old_key_file(path)

    ensure_demo_key_file(path, "cn")

    ring = FileKeyProvider(path).load("cn")
    assert orjson.loads(path.read_bytes())["keys"]["kek"] == old["keys"]["kek"]  # type: ignore[index]
    assert ring.active_version(KeyPurpose.AUDIT) == 1


def test_blind_indexes_cover_every_version_active_first() -> None:
    ring = ZoneKeyRing.generate("cn")
    rotated = ring.with_new_version(KeyPurpose.BLIND_INDEX)
    identifier = Identifier("urn:oid:1.2.156.999.1", "MRN-1")

    indexes = Pseudonymiser(rotated).blind_indexes(identifier)

    assert [i[:3] for i in indexes] == ["b2-", "b1-"]
    assert indexes[0] == Pseudonymiser(rotated).blind_index(identifier)
    # The crosswalk is the ring itself: version 1's value is still computable inside the zone.
    assert indexes[1] == Pseudonymiser(ring).blind_index(identifier)
    assert Pseudonymiser(ring).blind_indexes(identifier) == [indexes[1]]
