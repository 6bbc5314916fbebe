from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigurationError
from gateway.privacy import KeyPurpose, ZoneKeyRing


def secret_forms(ring: ZoneKeyRing) -> list[str]:
    """Every way a key could show up in text, whole or as a 12-character prefix."""
    forms: list[str] = []
    for versions in ring.keys.values():
        for key in versions.values():
            for text in (
                key.hex(),
                key.hex().upper(),
                base64.urlsafe_b64encode(key).decode().rstrip("="),
                base64.b64encode(key).decode().rstrip("="),
                repr(key),
            ):
                forms += [text, text[:12]]
    return forms


def assert_no_key_material(text: str, ring: ZoneKeyRing) -> None:
    leaked = [form for form in secret_forms(ring) if form in text]
    assert not leaked


@pytest.fixture
def ring() -> ZoneKeyRing:
    return ZoneKeyRing.generate("cn")


@pytest.fixture
def key_file(tmp_path: Path, ring: ZoneKeyRing) -> Path:
    path = tmp_path / "cn.keys.json"
    ring.write(path)
    return path


def rewrite(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document))
    path.chmod(0o600)


def test_generate_makes_one_distinct_32_byte_key_per_purpose_at_version_1(
    ring: ZoneKeyRing,
) -> None:
    keys = [ring.key(purpose) for purpose in KeyPurpose]
    assert {len(key) for key in keys} == {32}
    assert len(set(keys)) == len(KeyPurpose)
    assert {ring.active_version(purpose) for purpose in KeyPurpose} == {1}


def test_generate_makes_new_keys_each_time() -> None:
    assert ZoneKeyRing.generate("cn").key(KeyPurpose.KEK) != ZoneKeyRing.generate("cn").key(
        KeyPurpose.KEK
    )


def test_purposes_are_the_documented_set() -> None:
    assert [str(p) for p in KeyPurpose] == [
        "kek",
        "subject-pseudonym",
        "device-pseudonym",
        "blind-index",
        "dedup",
        "audit",
        "study-pseudonym",
        "date-shift",
        "cursor",
    ]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_write_creates_a_file_only_its_owner_can_access(key_file: Path) -> None:
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_write_produces_the_documented_format(key_file: Path, ring: ZoneKeyRing) -> None:
    document = json.loads(key_file.read_text())
    assert document["format"] == "wearable-gateway-zone-keys/1"
    assert document["zone"] == "cn"
    assert datetime.fromisoformat(document["created"]).utcoffset() is not None
    assert document["active"] == {str(p): 1 for p in KeyPurpose}
    encoded = document["keys"]["blind-index"]["1"]
    assert base64.urlsafe_b64decode(encoded + "=") == ring.key(KeyPurpose.BLIND_INDEX)


def test_write_leaves_no_temporary_file_behind(key_file: Path) -> None:
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]


def test_write_refuses_to_overwrite_an_existing_file(key_file: Path) -> None:
    before = key_file.read_bytes()
    with pytest.raises(ConfigurationError, match="already exists"):
        ZoneKeyRing.generate("cn").write(key_file)
    assert key_file.read_bytes() == before
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]


def test_write_never_replaces_a_file_created_after_its_check(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = key_file.read_bytes()
    monkeypatch.setattr(os.path, "lexists", lambda _: False)
    with pytest.raises(ConfigurationError, match="already exists"):
        ZoneKeyRing.generate("cn").write(key_file)
    assert key_file.read_bytes() == before
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]


def test_write_into_a_missing_folder_is_a_configuration_error(
    tmp_path: Path, ring: ZoneKeyRing
) -> None:
    with pytest.raises(ConfigurationError, match="cannot create key file"):
        ring.write(tmp_path / "absent" / "cn.keys.json")


def test_load_returns_the_keys_that_were_written(key_file: Path, ring: ZoneKeyRing) -> None:
    loaded = ZoneKeyRing.load(key_file, expected_zone="cn")
    assert loaded.zone == "cn"
    assert all(loaded.key(p) == ring.key(p) for p in KeyPurpose)
    assert loaded.fingerprint() == ring.fingerprint()
    assert loaded.created == ring.created.replace(microsecond=0)


def test_load_keeps_every_version_and_the_active_one(tmp_path: Path, ring: ZoneKeyRing) -> None:
    rotated = ring.with_new_version(KeyPurpose.KEK)
    rotated.write(tmp_path / "keys.json")
    loaded = ZoneKeyRing.load(tmp_path / "keys.json", expected_zone="cn")
    assert loaded.active_version(KeyPurpose.KEK) == 2
    assert loaded.key(KeyPurpose.KEK, 1) == ring.key(KeyPurpose.KEK)
    assert loaded.key(KeyPurpose.KEK) == rotated.key(KeyPurpose.KEK)


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        ZoneKeyRing.load(tmp_path / "nope.json", expected_zone="cn")


def test_load_refuses_a_key_file_of_another_zone(key_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="is for zone cn, not eu"):
        ZoneKeyRing.load(key_file, expected_zone="eu")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_load_refuses_a_file_others_can_access(key_file: Path, mode: int) -> None:
    key_file.chmod(mode)
    with pytest.raises(ConfigurationError, match=f"mode {mode:04o}.*chmod 600"):
        ZoneKeyRing.load(key_file, expected_zone="cn")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_load_accepts_an_owner_read_only_file(key_file: Path) -> None:
    key_file.chmod(0o400)
    assert ZoneKeyRing.load(key_file, expected_zone="cn").zone == "cn"


def test_load_refuses_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        ZoneKeyRing.load(folder, expected_zone="cn")


def test_load_refuses_invalid_json(key_file: Path) -> None:
    key_file.write_bytes(key_file.read_bytes()[:-20])
    with pytest.raises(ConfigurationError, match="is not valid JSON"):
        ZoneKeyRing.load(key_file, expected_zone="cn")


DELETE = object()


def shorten(encoded: str) -> str:
    return base64.urlsafe_b64encode(base64.urlsafe_b64decode(encoded + "=")[:31]).decode()


def lengthen(encoded: str) -> str:
    return base64.urlsafe_b64encode(base64.urlsafe_b64decode(encoded + "=") + b"\0").decode()


# (what is wrong, where in the document, new value or a function of the old one, message)
CORRUPTIONS = [
    ("not-an-object", (), ["a list"], "is not a JSON object"),
    ("format", ("format",), "wearable-gateway-zone-keys/2", "is not a wearable-gateway-zone-k"),
    ("zone-missing", ("zone",), DELETE, "has no valid zone name"),
    ("zone-invalid", ("zone",), "c/n", "has no valid zone name"),
    ("missing-purpose", ("keys", "dedup"), DELETE, "no dedup keys"),
    ("predates-audit", ("keys", "audit"), DELETE, "no audit keys: the file predates the audit"),
    ("missing-active", ("active", "kek"), DELETE, "no active kek version"),
    ("active-absent", ("active", "blind-index"), 2, "active blind-index version 2 has no key"),
    ("active-not-int", ("active", "kek"), "1", "active kek version is not a positive integer"),
    ("active-bool", ("active", "kek"), True, "active kek version is not a positive integer"),
    ("truncated-key", ("keys", "kek", "1"), shorten, "kek key version 1 is not 32 bytes"),
    ("long-key", ("keys", "kek", "1"), lengthen, "kek key version 1 is not 32 bytes"),
    ("not-base64", ("keys", "dedup", "1"), "!" * 43, "dedup key version 1 is not base64url"),
    ("key-not-string", ("keys", "dedup", "1"), 1, "dedup key version 1 is not base64url"),
    ("bad-version", ("keys", "dedup", "01"), "A" * 43, "dedup has a key version that is not a"),
    ("keys-not-object", ("keys", "dedup"), ["A" * 43], "dedup keys are not an object"),
    ("unknown-purpose", ("keys", "study"), {"1": "A" * 43}, "unknown key purpose 'study'"),
    ("key-as-name", ("keys", "Zm9vYmFyQmF6MTIz_-4"), {}, "unknown key purpose$"),
    ("created", ("created",), "yesterday", "'created' is not an ISO 8601 time"),
    ("created-naive", ("created",), "2025-01-01T00:00:00", "'created' is not an ISO 8601 time"),
]


def corrupt(document: dict[str, Any], path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    *parents, last = path
    target = document
    for name in parents:
        target = target[name]
    if value is DELETE:
        del target[last]
    elif callable(value):
        target[last] = value(target[last])
    else:
        target[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [pytest.param(*rest, id=name) for name, *rest in CORRUPTIONS],
)
def test_load_refuses_a_malformed_file_and_names_the_problem(
    key_file: Path, ring: ZoneKeyRing, path: tuple[str, ...], value: Any, message: str
) -> None:
    document = json.loads(key_file.read_text())
    rewrite(key_file, corrupt(document, path, value))
    with pytest.raises(ConfigurationError, match=message) as raised:
        ZoneKeyRing.load(key_file, expected_zone="cn")
    assert str(key_file) in raised.value.message
    assert_no_key_material(str(raised.value), ring)
    assert raised.value.__cause__ is None


def test_invalid_json_error_does_not_carry_the_file_contents(key_file: Path) -> None:
    key_file.write_bytes(key_file.read_bytes()[:-20])
    with pytest.raises(ConfigurationError) as raised:
        ZoneKeyRing.load(key_file, expected_zone="cn")
    assert raised.value.__context__ is None
    assert raised.value.__cause__ is None


def test_repr_and_str_show_no_key_material(ring: ZoneKeyRing) -> None:
    rotated = ring.with_new_version(KeyPurpose.DEDUP)
    for text in (repr(rotated), str(rotated), f"{rotated}", repr([rotated])):
        assert_no_key_material(text, rotated)
    assert "zone='cn'" in repr(rotated)
    assert rotated.fingerprint() in repr(rotated)


def test_key_defaults_to_the_active_version(ring: ZoneKeyRing) -> None:
    rotated = ring.with_new_version(KeyPurpose.BLIND_INDEX)
    assert rotated.key(KeyPurpose.BLIND_INDEX) == rotated.key(KeyPurpose.BLIND_INDEX, 2)


def test_key_of_a_missing_version_is_a_configuration_error(ring: ZoneKeyRing) -> None:
    with pytest.raises(ConfigurationError, match="zone cn has no kek key version 3"):
        ring.key(KeyPurpose.KEK, 3)


def test_with_new_version_changes_only_the_given_purpose(ring: ZoneKeyRing) -> None:
    rotated = ring.with_new_version(KeyPurpose.SUBJECT_PSEUDONYM)
    assert rotated.active_version(KeyPurpose.SUBJECT_PSEUDONYM) == 2
    assert rotated.key(KeyPurpose.SUBJECT_PSEUDONYM) != ring.key(KeyPurpose.SUBJECT_PSEUDONYM)
    assert rotated.key(KeyPurpose.SUBJECT_PSEUDONYM, 1) == ring.key(KeyPurpose.SUBJECT_PSEUDONYM)
    others = [p for p in KeyPurpose if p is not KeyPurpose.SUBJECT_PSEUDONYM]
    assert all(rotated.key(p) == ring.key(p) for p in others)
    assert ring.active_version(KeyPurpose.SUBJECT_PSEUDONYM) == 1
    assert rotated.fingerprint() != ring.fingerprint()


def test_key_ring_cannot_be_modified_through_its_mappings(ring: ZoneKeyRing) -> None:
    keys: Any = ring.keys
    active: Any = ring.active
    with pytest.raises(TypeError):
        keys[KeyPurpose.KEK][2] = bytes(32)
    with pytest.raises(TypeError):
        active[KeyPurpose.KEK] = 2


def test_key_ring_does_not_share_the_callers_dicts() -> None:
    keys = {p: {1: bytes([i]) * 32} for i, p in enumerate(KeyPurpose)}
    ring = ZoneKeyRing(zone="cn", keys=keys, active=dict.fromkeys(KeyPurpose, 1))
    keys[KeyPurpose.KEK][1] = bytes(32)
    assert ring.key(KeyPurpose.KEK) == bytes([0]) * 32


@pytest.mark.parametrize(
    ("zone", "key_length", "message"),
    [
        ("cn", 16, "kek key version 1 is not 32 bytes"),
        ("CN", 32, "zone names"),
        ("c_n", 32, "zone names"),
        ("", 32, "zone names"),
    ],
)
def test_constructor_refuses_invalid_key_rings(zone: str, key_length: int, message: str) -> None:
    keys = {p: {1: bytes(key_length if p is KeyPurpose.KEK else 32)} for p in KeyPurpose}
    with pytest.raises(ConfigurationError, match=message):
        ZoneKeyRing(zone=zone, keys=keys, active=dict.fromkeys(KeyPurpose, 1))


def test_constructor_refuses_a_naive_creation_time() -> None:
    keys = {p: {1: bytes(32)} for p in KeyPurpose}
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        ZoneKeyRing(
            zone="cn",
            keys=keys,
            active=dict.fromkeys(KeyPurpose, 1),
            created=datetime(2025, 1, 1),  # noqa: DTZ001 -- the naive time under test
        )


def test_fingerprint_is_16_hex_characters_stable_for_the_same_keys(ring: ZoneKeyRing) -> None:
    copy = ZoneKeyRing(zone="cn", keys=ring.keys, active=ring.active, created=datetime.now(UTC))
    assert len(ring.fingerprint()) == 16
    int(ring.fingerprint(), 16)
    assert copy.fingerprint() == ring.fingerprint()
    assert ZoneKeyRing.generate("cn").fingerprint() != ring.fingerprint()
