"""Key rotation and the start-up check that a zone's key ring covers its data.

What rotating each purpose does (README "Key management"):

- `kek`: a new version wraps every subject data key from now on, and `rewrap_data_keys` re-wraps
  the stored ones. Data keys, identity ciphertexts and pseudonyms do not change.
- `subject-pseudonym`, `blind-index`, `study-pseudonym`, `date-shift`, `audit`, `cursor`: the new
  version makes NEW values only (new enrolments, new studies, new audit records, new cursors);
  every older version stays in the ring, so older values keep verifying or matching.
- `kek` versions can then be retired (`retire_kek_version`): once no data key is wrapped under an
  old version and every running gateway has reloaded the new ring (runtime/key_ring.py),
  destroying it makes every older backup of `subject_keys` unopenable, which is what
  turns an erasure into crypto-shredding for backups too (README "Key management").
- `dedup` and `device-pseudonym` are not rotatable: they are recomputed from every incoming
  reading, so a new version would give a replayed reading a second id (breaking idempotency) and
  a device a second pseudonym (splitting its history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.errors import ConfigurationError
from gateway.privacy import IdentityVault, KeyPurpose, ZoneKeyRing
from gateway.privacy.provider import KeyProvider
from gateway.runtime.key_ring import published
from gateway.runtime.zones import Zone
from gateway.services.audit import AuditAction, AuditOutcome, record
from gateway.services.credentials import OPERATOR
from gateway.storage import ZoneDatabase
from gateway.storage.key_ring import LiveInstance
from gateway.storage.subjects import WrappedKey

ROTATABLE: Final = tuple(
    p for p in KeyPurpose if p not in {KeyPurpose.DEDUP, KeyPurpose.DEVICE_PSEUDONYM}
)
DEFAULT_BATCH: Final = 500


async def check_keys_cover_data(db: ZoneDatabase, ring: ZoneKeyRing) -> None:
    """Refuse a key ring that lacks a version stored data was made with: identities under a
    missing kek could not be opened, identifiers under a missing blind-index key could not be
    found, and a missing subject-pseudonym version means the ring is not this zone's."""
    in_use = await db.subjects.key_versions_in_use()
    needed = {
        KeyPurpose.KEK: in_use.kek,
        KeyPurpose.BLIND_INDEX: in_use.blind_index,
        KeyPurpose.SUBJECT_PSEUDONYM: in_use.subject_pseudonym,
    }
    for purpose, versions in needed.items():
        missing = sorted(versions - set(ring.keys[purpose]))
        if missing:
            raise ConfigurationError(
                f"zone {ring.zone}: stored data uses {purpose} key version(s) "
                f"{', '.join(map(str, missing))}, which the key ring (fingerprint "
                f"{ring.fingerprint()}) does not hold; refusing to start with the wrong or an "
                "outdated key file"
            )


@dataclass(frozen=True, slots=True)
class RewrapProgress:
    kek_version: int  # the version keys are being re-wrapped to
    total: int  # keys under older versions when the run started
    done: int  # re-wrapped by this run so far
    batches: int


ProgressObserver = Callable[[RewrapProgress], None]


async def rewrap_data_keys(
    db: ZoneDatabase,
    ring: ZoneKeyRing,
    *,
    batch: int = DEFAULT_BATCH,
    on_batch: ProgressObserver | None = None,
) -> RewrapProgress:
    """Re-wrap every subject data key under an older kek version with the ring's active one.

    Online: each batch is one read and one compare-and-set UPDATE, each its own short
    transaction, so enrolments, erasures and reads carry on; a row changed meanwhile is skipped
    by the UPDATE and counted as remaining. Resumable without saved state: progress is in the
    data itself (`kek_version` below the active one means "not yet"), so re-running after a
    crash simply continues with what is left, and a row re-wrapped twice is harmless."""
    if batch < 1:
        raise ValueError("the batch size must be positive")
    vault = IdentityVault(ring)
    target = ring.active_version(KeyPurpose.KEK)
    total = await db.subjects.count_wrapped_below(target)
    progress = RewrapProgress(kek_version=target, total=total, done=0, batches=0)
    after: str | None = None
    while rows := await db.subjects.wrapped_keys_batch(after, batch, below=target):
        rewrapped = [
            WrappedKey(row.subject, version, wrapped)
            for row in rows
            for wrapped, version in [
                vault.rewrap_key(row.subject, row.wrapped_key, row.kek_version)
            ]
        ]
        replaced = await db.subjects.rewrap(rows, rewrapped)
        after = rows[-1].subject
        progress = RewrapProgress(
            kek_version=target,
            total=total,
            done=progress.done + replaced,
            batches=progress.batches + 1,
        )
        if on_batch is not None:
            on_batch(progress)
    return progress


@dataclass(frozen=True, slots=True)
class Retirement:
    still_wrapped: int  # data keys under the version: when not 0, nothing was retired
    ring: ZoneKeyRing | None  # the ring without the version, when it was retired
    was_in_ring: bool  # False: retired before (this run only made sure no copy is left)
    # Live gateways that could still wrap under the version, or have not yet loaded the zone's
    # current ring: when any, nothing was retired.
    blocking: tuple[LiveInstance, ...] = ()
    generation: int = 0  # the zone's key ring generation the decision was made at


def blocking_instances(
    live: Sequence[LiveInstance], generation: int, version: int
) -> tuple[LiveInstance, ...]:
    """The live gateways that make retiring kek `version` unsafe: those whose ring was loaded at
    an older generation than the zone's current one (they may not have seen the rotation yet),
    and those whose active kek is still `version` or older (their key file is behind)."""
    return tuple(i for i in live if i.generation < generation or i.kek_active <= version)


async def retire_kek_version(
    zone: Zone,
    provider: KeyProvider,
    previous: ZoneKeyRing,
    version: int,
    *,
    actor: str = OPERATOR,
) -> Retirement:
    """Destroy kek `version` if no data key is wrapped under it and no live gateway could still
    use it, publish that, and audit it.

    Counted, checked and destroyed in one transaction holding a SHARE lock on `subject_keys` and
    the zone's `key_ring_state` row (`KeyRingStore.retiring_kek`): no enrolment, re-wrap or
    gateway registration can slip in between. Every live gateway must have loaded the current
    generation of the zone's ring with a newer active kek (`blocking_instances`); a gateway
    whose lease ran out is not waited for, and cannot serve again without re-reading its key
    file (`ZoneKeys.start`), while the database refuses any data key wrapped under an outdated
    kek (migration 0010). Running this again after a crash finishes the job (the provider's
    `retire` is idempotent)."""
    active = previous.active_version(KeyPurpose.KEK)
    if version == active:
        raise ConfigurationError(
            f"zone {zone.name}: kek version {version} is the active one; rotate first, then "
            "retire the old version"
        )
    if not 1 <= version < active:
        raise ConfigurationError(f"zone {zone.name} never had kek version {version}")
    was_in_ring = version in previous.keys[KeyPurpose.KEK]
    async with zone.db.key_ring.retiring_kek(version) as txn:
        generation = txn.state.generation
        blocking = blocking_instances(txn.live, generation, version)
        if txn.still_wrapped or blocking:
            return Retirement(
                still_wrapped=txn.still_wrapped,
                ring=None,
                was_in_ring=was_in_ring,
                blocking=blocking,
                generation=generation,
            )
        ring = provider.retire(zone.name, KeyPurpose.KEK, version)
        await txn.record(version, published(ring), ring.fingerprint())
    await _key_event(
        zone,
        AuditAction.KEY_ROTATE,
        actor,
        {
            "operation": "retire",
            "purpose": str(KeyPurpose.KEK),
            "retired_version": version,
            "was_in_ring": was_in_ring,
            "old_fingerprint": previous.fingerprint(),
            "new_fingerprint": ring.fingerprint(),
        },
    )
    return Retirement(
        still_wrapped=0,
        ring=ring,
        was_in_ring=was_in_ring,
        generation=txn.state.generation,
    )


async def publish_rotation(zone: Zone, ring: ZoneKeyRing) -> int:
    """After the key file holds `ring`: publish its active versions in the zone database, so
    running gateways reload it and the database refuses data keys wrapped under older keks.
    Returns the zone's new key ring generation."""
    state = await zone.db.key_ring.publish(published(ring), ring.fingerprint())
    return state.generation


# --- key events in the zone's audit log ---------------------------------------------------------
# What an operator did to the zone's keys, as `add_credential` records what it issued: purposes,
# version numbers, counts and the ring's fingerprint (a keyed digest that identifies the ring but
# reveals nothing of its keys: ZoneKeyRing.fingerprint). Never key material. `keys init` records
# nothing: it only writes a new file, before the zone's database need exist, and the first record
# sealed under that file's audit key is whatever the zone does first.


async def _key_event(
    zone: Zone, action: AuditAction, actor: str, detail: dict[str, object]
) -> None:
    await record(
        zone,
        action=action,
        actor=actor,
        subject=None,
        outcome=AuditOutcome.SUCCESS,
        detail=detail,
    )


async def record_rotation(
    zone: Zone,
    *,
    purpose: KeyPurpose,
    previous: ZoneKeyRing,
    ring: ZoneKeyRing,
    actor: str = OPERATOR,
) -> None:
    """A new active version of `purpose` (`previous` -> `ring`), after the key file holds it."""
    await _key_event(
        zone,
        AuditAction.KEY_ROTATE,
        actor,
        {
            "operation": "rotate",
            "purpose": str(purpose),
            "old_version": previous.active_version(purpose),
            "new_version": ring.active_version(purpose),
            "old_fingerprint": previous.fingerprint(),
            "new_fingerprint": ring.fingerprint(),
        },
    )


async def record_rewrap(
    zone: Zone, *, progress: RewrapProgress, remaining: int, actor: str = OPERATOR
) -> None:
    """The end of a re-wrap run: what it did and what is left (0 once the rotation is done)."""
    await _key_event(
        zone,
        AuditAction.KEY_ROTATE,
        actor,
        {
            "operation": "rewrap",
            "purpose": str(KeyPurpose.KEK),
            "kek_version": progress.kek_version,
            "pending_at_start": progress.total,
            "rewrapped": progress.done,
            "batches": progress.batches,
            "remaining": remaining,
            "complete": remaining == 0,
        },
    )


async def record_upgrade(
    zone: Zone, *, added: Sequence[KeyPurpose], ring: ZoneKeyRing, actor: str = OPERATOR
) -> None:
    """Keys created for purposes an older key file lacked (`keys upgrade`)."""
    await _key_event(
        zone,
        AuditAction.KEY_INIT,
        actor,
        {
            "operation": "upgrade",
            "purposes_added": [str(p) for p in added],
            "fingerprint": ring.fingerprint(),
        },
    )
