"""A zone's key ring: versioned random keys, one set per purpose, and the key file that holds them.

Key file (JSON, mode 0600):

    {"format": "wearable-gateway-zone-keys/1", "zone": "cn", "created": "<ISO 8601 UTC>",
     "active": {"kek": 1, ...}, "keys": {"kek": {"1": "<base64url, RFC 4648 §5>"}, ...}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final

import orjson

from gateway.errors import ConfigurationError
from gateway.privacy._primitives import KeyedHash, b64url, encode_fields

KEY_FILE_FORMAT: Final = "wearable-gateway-zone-keys/1"
KEY_BYTES: Final = 32
# No underscore: zones are a field of `wgk_<zone>_<key_id>_<secret>` API keys.
ZONE_PATTERN: Final = re.compile(r"[a-z][a-z0-9]{0,15}")

_MAX_KEY_FILE_BYTES: Final = 1 << 20
_VERSION_PATTERN: Final = re.compile(r"[1-9][0-9]{0,8}")
_PURPOSE_NAME_PATTERN: Final = re.compile(r"[a-z][a-z-]{0,31}")
_BASE64URL_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_FINGERPRINT_LABEL: Final = encode_fields("wearable-gateway/key-fingerprint/1")


class KeyPurpose(StrEnum):
    """What a key is for. Purposes never share a key, so a value made for one purpose (a blind
    index, say) can never be passed off as another (a pseudonym)."""

    KEK = "kek"  # wraps per-subject data keys
    SUBJECT_PSEUDONYM = "subject-pseudonym"
    DEVICE_PSEUDONYM = "device-pseudonym"
    BLIND_INDEX = "blind-index"
    DEDUP = "dedup"
    AUDIT = "audit"  # keys the audit log's hash chain (gateway/privacy/audit_chain.py)
    # Research extracts: per-(study, recipient) pseudonyms and per-(study, subject)
    # date offsets, each under its own key so neither can be computed from the other.
    STUDY_PSEUDONYM = "study-pseudonym"
    DATE_SHIFT = "date-shift"
    CURSOR = "cursor"  # signs FHIR search paging cursors (gateway/privacy/cursors.py)


@dataclass(frozen=True, eq=False, repr=False)
class ZoneKeyRing:
    """The secret keys of one zone: for each purpose, keys by version and the active version.

    Values derived from a key carry its version, so keys can be rotated by adding a version
    (`with_new_version`) while older values stay readable. `repr()` never shows key bytes."""

    zone: str
    keys: Mapping[KeyPurpose, Mapping[int, bytes]]
    active: Mapping[KeyPurpose, int]
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        problem = _find_problem(self.zone, self.keys, self.active, self.created)
        if problem is not None:
            raise ConfigurationError(f"zone key ring: {problem}")
        # Frozen all the way down: callers get read-only views of private copies.
        frozen_keys = {p: MappingProxyType(dict(self.keys[p])) for p in KeyPurpose}
        object.__setattr__(self, "keys", MappingProxyType(frozen_keys))
        object.__setattr__(
            self, "active", MappingProxyType({p: self.active[p] for p in KeyPurpose})
        )

    @classmethod
    def generate(cls, zone: str) -> ZoneKeyRing:
        """A new key ring with one fresh random key (version 1) per purpose."""
        return cls(
            zone=zone,
            keys={p: {1: secrets.token_bytes(KEY_BYTES)} for p in KeyPurpose},
            active=dict.fromkeys(KeyPurpose, 1),
        )

    def with_new_version(self, purpose: KeyPurpose) -> ZoneKeyRing:
        """A copy with a fresh random key for `purpose` as its new active version; older versions
        are kept so existing values can still be verified, unwrapped or rewrapped."""
        version = max(self.keys[purpose]) + 1
        keys = {p: dict(versions) for p, versions in self.keys.items()}
        keys[purpose][version] = secrets.token_bytes(KEY_BYTES)
        return ZoneKeyRing(
            zone=self.zone,
            keys=keys,
            active={**self.active, purpose: version},
            created=self.created,
        )

    def without_version(self, purpose: KeyPurpose, version: int) -> ZoneKeyRing:
        """A copy lacking `purpose` key `version` (retiring it); never the active version."""
        if version == self.active[purpose]:
            raise ConfigurationError(
                f"zone {self.zone}: {purpose} key version {version} is the active one; rotate "
                "first, then retire the old version"
            )
        if version not in self.keys[purpose]:
            raise ConfigurationError(f"zone {self.zone} has no {purpose} key version {version}")
        keys = {p: dict(versions) for p, versions in self.keys.items()}
        del keys[purpose][version]
        return ZoneKeyRing(zone=self.zone, keys=keys, active=self.active, created=self.created)

    def key(self, purpose: KeyPurpose, version: int | None = None) -> bytes:
        """The key for `purpose` at `version` (the active one when None)."""
        wanted = self.active[purpose] if version is None else version
        try:
            return self.keys[purpose][wanted]
        except KeyError:
            raise ConfigurationError(
                f"zone {self.zone} has no {purpose} key version {wanted}"
            ) from None

    def active_version(self, purpose: KeyPurpose) -> int:
        return self.active[purpose]

    def fingerprint(self) -> str:
        """16 hex characters identifying every key and active version in this ring, so operators
        can check two deployments hold the same keys without showing them."""
        # HMAC is a PRF (RFC 2104 §6): its output under a fixed label reveals nothing of the key.
        digest = hashlib.sha256(encode_fields(KEY_FILE_FORMAT, self.zone))
        for purpose in KeyPurpose:
            digest.update(encode_fields(purpose, str(self.active[purpose])))
            for version in sorted(self.keys[purpose]):
                digest.update(encode_fields(str(version)))
                digest.update(KeyedHash(self.keys[purpose][version]).digest(_FINGERPRINT_LABEL))
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        active = ", ".join(f"{p}: {v}" for p, v in self.active.items())
        return (
            f"ZoneKeyRing(zone={self.zone!r}, active={{{active}}}, "
            f"fingerprint={self.fingerprint()!r})"
        )

    def to_json(self) -> bytes:
        """The key file's content (see the module docstring). Secret: never log it."""
        document = {
            "format": KEY_FILE_FORMAT,
            "zone": self.zone,
            "created": self.created.astimezone(UTC).isoformat(timespec="seconds"),
            "active": {str(p): v for p, v in self.active.items()},
            "keys": {
                str(p): {str(v): b64url(key) for v, key in sorted(versions.items())}
                for p, versions in self.keys.items()
            },
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)

    def write(self, path: Path) -> None:
        """Write a new key file readable by the owner only; never replaces an existing file."""
        data = self.to_json()
        if os.path.lexists(path):
            raise ConfigurationError(f"key file {path} already exists; refusing to overwrite it")
        try:
            # mkstemp creates the file with mode 0600 in the target folder, so no other user can
            # ever open it and the final link stays on one file system.
            fd, temp_name = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot create key file {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            # link(2) fails with EEXIST atomically, where os.replace would silently clobber a key
            # file created since the check above; the name appears only once fully written.
            os.link(temp_name, path)
        except FileExistsError:
            raise ConfigurationError(
                f"key file {path} already exists; refusing to overwrite it"
            ) from None
        except OSError as exc:
            raise ConfigurationError(f"cannot write key file {path}: {exc.strerror}") from None
        finally:
            os.unlink(temp_name)
        _fsync_directory(path.parent)

    @classmethod
    def load(cls, path: Path, *, expected_zone: str) -> ZoneKeyRing:
        """Read a key file, refusing it unless it is private to its owner, well-formed, complete
        and for `expected_zone`. Errors name the file and the problem, never key bytes."""
        zone, keys, active, created = _read_key_file(path, expected_zone)
        found = _find_problem(zone, keys, active, created)
        if found is not None:
            raise ConfigurationError(f"key file {path}: {found}")
        return cls(zone=zone, keys=keys, active=active, created=created)

    @classmethod
    def load_upgraded(
        cls, path: Path, *, expected_zone: str
    ) -> tuple[ZoneKeyRing, tuple[KeyPurpose, ...]]:
        """Read a key file as `load` does, except that purposes the file lacks entirely (it
        predates them) get a fresh random version-1 key. Returns the ring and the purposes added;
        every key the file holds is kept exactly as it was."""
        zone, keys, active, created = _read_key_file(path, expected_zone)
        added = tuple(p for p in KeyPurpose if not keys.get(p))
        for purpose in added:
            keys[purpose] = {1: secrets.token_bytes(KEY_BYTES)}
            active.setdefault(purpose, 1)
        found = _find_problem(zone, keys, active, created)
        if found is not None:
            raise ConfigurationError(f"key file {path}: {found}")
        return cls(zone=zone, keys=keys, active=active, created=created), added


def _read_key_file(
    path: Path, expected_zone: str
) -> tuple[str, dict[KeyPurpose, dict[int, bytes]], dict[KeyPurpose, int], datetime]:
    document = _parse_json(path, _read_private_file(path))
    if not isinstance(document, dict):
        raise ConfigurationError(f"key file {path} is not a JSON object")
    if document.get("format") != KEY_FILE_FORMAT:
        raise ConfigurationError(f"key file {path} is not a {KEY_FILE_FORMAT} file")
    zone = document.get("zone")
    if not isinstance(zone, str) or not ZONE_PATTERN.fullmatch(zone):
        raise ConfigurationError(f"key file {path} has no valid zone name")
    if zone != expected_zone:
        raise ConfigurationError(f"key file {path} is for zone {zone}, not {expected_zone}")
    try:
        created = _parse_created(document.get("created"))
        active = _parse_active(document.get("active"))
        keys = _parse_keys(document.get("keys"))
    except _FileProblem as problem:
        raise ConfigurationError(f"key file {path}: {problem}") from None
    return zone, keys, active, created


class _FileProblem(Exception):
    pass


_PURPOSES_BY_NAME: Final = {str(p): p for p in KeyPurpose}


def _find_problem(
    zone: str,
    keys: Mapping[KeyPurpose, Mapping[int, bytes]],
    active: Mapping[KeyPurpose, int],
    created: datetime,
) -> str | None:
    return next(_problems(zone, keys, active, created), None)


def _problems(
    zone: str,
    keys: Mapping[KeyPurpose, Mapping[int, bytes]],
    active: Mapping[KeyPurpose, int],
    created: datetime,
) -> Iterator[str]:
    if not ZONE_PATTERN.fullmatch(zone):
        yield "zone names are 1-16 lowercase letters and digits, starting with a letter"
    if created.tzinfo is None:
        yield "creation time must be timezone-aware"
    extra = (set(keys) | set(active)) - set(KeyPurpose)
    if extra:
        yield f"unknown key purposes {sorted(map(str, extra))}"
    for purpose in KeyPurpose:
        versions = keys.get(purpose, {})
        if not versions:
            # A file written before this purpose existed: `keys upgrade` adds what is missing
            # and keeps every existing key byte for byte.
            what = "the audit log" if purpose is KeyPurpose.AUDIT else "them"
            yield (
                f"no {purpose} keys: the file predates {what}; add them with "
                "`wearable-gateway keys upgrade --zone ZONE --file PATH`"
            )
        elif purpose not in active:
            yield f"no active {purpose} version"
        elif active[purpose] not in versions:
            yield f"active {purpose} version {active[purpose]} has no key"
        for version, key in versions.items():
            if version < 1:
                yield f"{purpose} key versions must be positive"
            if len(key) != KEY_BYTES:
                yield f"{purpose} key version {version} is not {KEY_BYTES} bytes"


def _read_private_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigurationError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"key file {path} cannot be opened: {exc.strerror}") from None
    # Checks use fstat on the open descriptor, so they apply to the file actually read even when
    # `path` is a symlink (as Kubernetes secret volumes are) or is swapped meanwhile.
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"key file {path} is not a regular file")
        if os.name == "posix" and mode & 0o077:
            raise ConfigurationError(
                f"key file {path} has mode {stat.S_IMODE(mode):04o}: group and others must have "
                "no access to it (chmod 600)"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_KEY_FILE_BYTES:
                raise ConfigurationError(
                    f"key file {path} is larger than {_MAX_KEY_FILE_BYTES} bytes"
                )
    except OSError as exc:
        raise ConfigurationError(f"key file {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _parse_json(path: Path, data: bytes) -> object:
    invalid = False
    try:
        document: object = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Raised outside the handler: JSONDecodeError.doc holds the whole file, keys included, and
        # must not ride along as __context__ into logs or error reporters.
        invalid = True
    if invalid:
        raise ConfigurationError(f"key file {path} is not valid JSON")
    return document


def _parse_created(value: object) -> datetime:
    created = None
    if isinstance(value, str):
        try:
            created = datetime.fromisoformat(value)
        except ValueError:
            created = None
    if created is None or created.tzinfo is None:
        raise _FileProblem("'created' is not an ISO 8601 time with an offset")
    return created


def _parse_purpose(name: object) -> KeyPurpose:
    if isinstance(name, str) and name in _PURPOSES_BY_NAME:
        return _PURPOSES_BY_NAME[name]
    # Echo the name only when it cannot be a misplaced key.
    if isinstance(name, str) and _PURPOSE_NAME_PATTERN.fullmatch(name):
        raise _FileProblem(f"unknown key purpose {name!r}")
    raise _FileProblem("unknown key purpose")


def _parse_active(value: object) -> dict[KeyPurpose, int]:
    if not isinstance(value, dict):
        raise _FileProblem("'active' is not an object")
    active: dict[KeyPurpose, int] = {}
    for name, version in value.items():
        purpose = _parse_purpose(name)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _FileProblem(f"active {purpose} version is not a positive integer")
        active[purpose] = version
    return active


def _parse_keys(value: object) -> dict[KeyPurpose, dict[int, bytes]]:
    if not isinstance(value, dict):
        raise _FileProblem("'keys' is not an object")
    keys: dict[KeyPurpose, dict[int, bytes]] = {}
    for name, versions in value.items():
        purpose = _parse_purpose(name)
        if not isinstance(versions, dict):
            raise _FileProblem(f"{purpose} keys are not an object")
        keys[purpose] = {}
        for version, encoded in versions.items():
            if not _VERSION_PATTERN.fullmatch(version):
                raise _FileProblem(f"{purpose} has a key version that is not a positive integer")
            keys[purpose][int(version)] = _parse_key(purpose, version, encoded)
    return keys


def _parse_key(purpose: KeyPurpose, version: str, encoded: object) -> bytes:
    key = None
    if isinstance(encoded, str) and _BASE64URL_PATTERN.fullmatch(encoded):
        padded = encoded.rstrip("=") + "=" * (-len(encoded.rstrip("=")) % 4)
        try:
            key = base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError):
            key = None
    if key is None:
        raise _FileProblem(f"{purpose} key version {version} is not base64url")
    if len(key) != KEY_BYTES:
        raise _FileProblem(f"{purpose} key version {version} is not {KEY_BYTES} bytes")
    return key


def _fsync_directory(directory: Path) -> None:
    # Persist the new directory entry too; without this a crash can lose a file already reported
    # as written (fsync(2), "Calling fsync() does not necessarily ensure that the entry in the
    # directory containing the file has also reached disk").
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
