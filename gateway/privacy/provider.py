"""Where a zone's key ring comes from: the `KeyProvider` interface and its file implementation.

Callers (`gateway/app.py`, the CLI, the demo) ask a provider for a zone's `ZoneKeyRing` and, when
rotating, hand it back a ring with one more version. Nothing else about storage leaks out, so a
KMS or HSM can replace the file without touching callers:

- **Vault transit / a cloud KMS**: `load` asks the service to unwrap a key file whose key bytes are
  themselves wrapped by a KMS key that never leaves the service (`vault write transit/decrypt/…`),
  and `store` wraps the new ring before writing it. The ring still lives in process memory, which
  is what the hot path needs: HMAC pseudonyms are computed per reading, and a network round trip
  per reading would cost far more than the ingest itself.
- **PKCS#11 HSM**: keys stay inside the token. That needs the privacy classes to call the token
  instead of holding bytes (`KeyedHash` → `C_Sign` with `CKM_SHA256_HMAC`, AES-GCM unwrap →
  `C_UnwrapKey`); the provider then returns a ring of handles. The `ZoneKeyRing` surface
  (`key(purpose, version)`, `active_version`, `keys`) is the seam such a change would cut along.

Either way the rules stay the provider's: a ring is for exactly one zone, never loses a version
the data may still need (`store` refuses), and key bytes never reach logs or error messages.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from gateway.errors import ConfigurationError
from gateway.privacy.keys import KeyPurpose, ZoneKeyRing, _fsync_directory, _read_private_file


@runtime_checkable
class KeyProvider(Protocol):
    """The source of one zone's keys."""

    def load(self, zone: str) -> ZoneKeyRing:
        """The zone's complete key ring; `ConfigurationError` if it is missing, incomplete or
        belongs to another zone."""
        ...

    def store(self, ring: ZoneKeyRing) -> None:
        """Persist `ring` (a rotation's result): durably, atomically, and only if it keeps every
        key version the provider already holds."""
        ...

    def retire(self, zone: str, purpose: KeyPurpose, version: int) -> ZoneKeyRing:
        """Destroy `purpose` key `version` and every copy of it the provider keeps, leaving every
        other key as it was; returns the ring without it. Idempotent: retiring a version that is
        already gone only makes sure no copy is left. Whether stored data still needs the
        version is the caller's question (`gateway/services/key_rotation.py`)."""
        ...


class FileKeyProvider:
    """A JSON key file (mode 0600, `gateway/privacy/keys.py`), e.g. a mounted Kubernetes secret or
    a file on the zone's own host. Replacing it keeps the previous file as `<name>.bak` (0600)."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"FileKeyProvider({str(self.path)!r})"

    def load(self, zone: str) -> ZoneKeyRing:
        return ZoneKeyRing.load(self.path, expected_zone=zone)

    def store(self, ring: ZoneKeyRing) -> None:
        if not os.path.lexists(self.path):
            ring.write(self.path)
            return
        previous_bytes = _read_private_file(self.path)
        previous, _ = ZoneKeyRing.load_upgraded(self.path, expected_zone=ring.zone)
        _refuse_lost_keys(self.path, previous, ring)
        self._replace(ring.to_json(), previous_bytes)

    def retire(self, zone: str, purpose: KeyPurpose, version: int) -> ZoneKeyRing:
        """Rewrite the key file without the version, then its `.bak` with the same content: the
        backup is the only other copy this provider made. A crash between the two writes leaves
        the key in `.bak` alone, and running `retire` again removes it there too. Overwriting a
        file does not scrub the disk blocks beneath it: the volume's encryption, and purging
        other copies (secret-store history, backups of the key file), are the operator's."""
        ring = self.load(zone)
        if version in ring.keys[purpose]:
            ring = ring.without_version(purpose, version)
            _atomic_write(self.path, ring.to_json())
        _atomic_write(self.path.with_name(self.path.name + ".bak"), ring.to_json())
        return ring

    def upgrade(self, zone: str) -> tuple[KeyPurpose, ...]:
        """Add a fresh version-1 key for every purpose the file lacks (it predates them), keeping
        every other key byte for byte. Returns the purposes added; writes nothing when none."""
        previous_bytes = _read_private_file(self.path)
        ring, added = ZoneKeyRing.load_upgraded(self.path, expected_zone=zone)
        if added:
            self._replace(ring.to_json(), previous_bytes)
        return added

    def _replace(self, data: bytes, previous: bytes) -> None:
        # The backup first: if we crash between the two renames, the old file is still in place
        # and the backup is a copy of it; after both, `.bak` holds exactly the replaced file.
        _atomic_write(self.path.with_name(self.path.name + ".bak"), previous)
        _atomic_write(self.path, data)


def _refuse_lost_keys(path: Path, previous: ZoneKeyRing, ring: ZoneKeyRing) -> None:
    # Dropping or changing a version would make data under it unreadable (identities) or
    # unfindable (blind indexes) for good: rotation only ever adds versions.
    for purpose in KeyPurpose:
        for version, key in previous.keys[purpose].items():
            if ring.keys[purpose].get(version) != key:
                raise ConfigurationError(
                    f"refusing to replace key file {path}: the new ring drops or changes "
                    f"{purpose} key version {version}"
                )


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old or the new content, never a mix:
    a 0600 temp file in the same folder, fsync, rename(2) over the target, fsync the folder."""
    try:
        # mkstemp creates the file with mode 0600, so the secret is never readable by others.
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigurationError(f"cannot create a file beside {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from None
    _fsync_directory(path.parent)
