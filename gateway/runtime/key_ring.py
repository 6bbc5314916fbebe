"""The key ring a running gateway works with, kept in step with the zone's key file.

The `keys` CLI is a separate process: it rotates by writing the key file, then publishes the new
active versions in the zone database (`key_ring_state`, a new generation, NOTIFY). Each gateway

1. at start-up, reads its key file and refuses to serve if it is behind what the zone has
   published (a stale copy of the file: it would wrap new data keys under a version being
   retired), then registers itself in `gateway_instances` with the ring it holds;
2. reloads its ring from the file whenever the generation moves: at once on NOTIFY, and on a
   periodic check (`key_check_seconds`) should a notification be lost; every check renews its
   lease (`key_lease_seconds`) and reports the generation and kek versions it holds;
3. on a data key it cannot unwrap (a version its ring lacks), or an enrolment the database
   refuses as wrapped under an outdated kek (`StaleKeyRing`), reloads and retries once.

`keys retire` (`key_rotation.retire_kek_version`) reads those rows: a version is destroyed only
when every live gateway has loaded the current generation with a newer active kek.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway.errors import ConfigurationError, ZoneUnavailable
from gateway.logs import event
from gateway.privacy import (
    IdentityVault,
    KekVersionMissing,
    KeyPurpose,
    Pseudonymiser,
    SealedIdentity,
    ZoneKeyRing,
)
from gateway.privacy.audit_chain import AuditChain
from gateway.privacy.cursors import CursorSigner
from gateway.privacy.provider import KeyProvider
from gateway.storage import ZoneDatabase
from gateway.storage.key_ring import InstanceReport, KeyRingListener, KeyRingState

log = logging.getLogger("gateway.key_ring")

DEFAULT_CHECK_SECONDS: Final = 5.0
DEFAULT_LEASE_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class KeyTools:
    """Everything built on one ring; swapped as a whole, so a request sees one ring throughout
    each call it makes."""

    ring: ZoneKeyRing
    pseudonyms: Pseudonymiser
    vault: IdentityVault
    cursors: CursorSigner
    audit: AuditChain

    @classmethod
    def build(cls, ring: ZoneKeyRing) -> KeyTools:
        return cls(
            ring, Pseudonymiser(ring), IdentityVault(ring), CursorSigner(ring), AuditChain(ring)
        )


def published(ring: ZoneKeyRing) -> dict[str, int]:
    return {str(p): ring.active_version(p) for p in KeyPurpose}


def behind(ring: ZoneKeyRing, state: KeyRingState) -> list[str]:
    """The purposes whose active version in `ring` is older than the zone has published."""
    return [str(p) for p in KeyPurpose if ring.active_version(p) < state.active.get(str(p), 0)]


def _refuse_behind(ring: ZoneKeyRing, state: KeyRingState) -> None:
    late = behind(ring, state)
    if late:
        raise ConfigurationError(
            f"zone {ring.zone}: the key file (fingerprint {ring.fingerprint()}) is behind the "
            f"zone's published keys (generation {state.generation}) for {', '.join(late)}: it is "
            "an old copy; refusing to start with it. Install the zone's current key file."
        )


@dataclass(frozen=True, slots=True)
class Instance:
    """This process as a row of `gateway_instances`."""

    id: str
    host: str
    pid: int
    lease_seconds: float

    @classmethod
    def this_process(cls, lease_seconds: float) -> Instance:
        return cls(secrets.token_hex(8), socket.gethostname()[:64], os.getpid(), lease_seconds)


class ZoneKeys:
    """One zone's current ring and the tools on it, and how to bring them up to date.

    Without a provider (rings handed in by a caller, the CLI's own short-lived zones) it never
    reloads; without an instance it never registers or renews a lease."""

    def __init__(
        self,
        zone: str,
        db: ZoneDatabase,
        ring: ZoneKeyRing,
        *,
        provider: KeyProvider | None = None,
        instance: Instance | None = None,
        on_reload: Iterable[Callable[[], None]] = (),
    ) -> None:
        self.zone = zone
        self._db = db
        self._tools = KeyTools.build(ring)
        self._provider = provider
        self._instance = instance
        self._on_reload = tuple(on_reload)
        self._lock = asyncio.Lock()
        self.generation = -1  # the key_ring_state generation the ring was loaded at
        self.reloads = 0

    @property
    def tools(self) -> KeyTools:
        return self._tools

    @property
    def ring(self) -> ZoneKeyRing:
        return self._tools.ring

    async def start(self) -> None:
        """Before serving: the ring must not be behind the zone's published keys. A ring ahead
        of them (the file rotated by hand, or a `keys rotate` that stopped before publishing) is
        published, so that other gateways reload and the database refuses older wraps."""
        state = await self._db.key_ring.state()
        _refuse_behind(self.ring, state)
        state = await self._db.key_ring.publish(published(self.ring), self.ring.fingerprint())
        self.generation = state.generation
        await self.heartbeat()

    async def heartbeat(self) -> None:
        if self._instance is None:
            return
        ring = self.ring
        await self._db.key_ring.heartbeat(
            InstanceReport(
                instance=self._instance.id,
                host=self._instance.host,
                pid=self._instance.pid,
                generation=self.generation,
                kek_active=ring.active_version(KeyPurpose.KEK),
                kek_versions=sorted(ring.keys[KeyPurpose.KEK]),
                fingerprint=ring.fingerprint(),
            ),
            self._instance.lease_seconds,
        )

    async def stop(self) -> None:
        if self._instance is not None:
            with contextlib.suppress(Exception):
                await self._db.key_ring.deregister(self._instance.id)

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the ring from the key file if the zone's generation moved (or `force`), and
        renew this instance's lease. True when the ring in use changed. A file that cannot be read
        or is behind the published keys is not taken: the old ring stays, and the lease row keeps
        saying so, which is what holds `keys retire` back."""
        async with self._lock:
            state = await self._db.key_ring.state()
            changed = False
            if self._provider is not None and (force or state.generation != self.generation):
                changed = await self._reload(self._provider, state)
            elif self._provider is None:
                self.generation = state.generation
            await self.heartbeat()
            return changed

    async def _reload(self, provider: KeyProvider, state: KeyRingState) -> bool:
        try:
            # The state was read before the file: the CLI writes the file before it publishes,
            # so a file read now holds at least what generation `state` announced.
            ring = await asyncio.to_thread(provider.load, self.zone)
        except ConfigurationError as exc:
            event(log, "key_ring.reload_failed", logging.ERROR, zone=self.zone, code=exc.code)
            return False
        late = behind(ring, state)
        if late:
            event(
                log,
                "key_ring.reload_refused",
                logging.ERROR,
                zone=self.zone,
                generation=state.generation,
                behind=late,
            )
            return False
        changed = ring.fingerprint() != self.ring.fingerprint()
        if changed:
            self._tools = KeyTools.build(ring)
            self.reloads += 1
            for callback in self._on_reload:
                callback()
        if any(ring.active_version(p) > state.active.get(str(p), 0) for p in KeyPurpose):
            state = await self._db.key_ring.publish(published(ring), ring.fingerprint())
        self.generation = state.generation
        event(
            log,
            "key_ring.loaded",
            zone=self.zone,
            generation=self.generation,
            kek_active=ring.active_version(KeyPurpose.KEK),
            changed=changed,
        )
        return changed

    async def open_identity(self, subject: str, sealed: SealedIdentity) -> dict[str, object]:
        """Decrypt an identity record; a kek version this ring lacks means the ring may be older
        than the key file (rotated and re-wrapped by the CLI), so reload once and try again."""
        try:
            return self.tools.vault.open(subject, sealed)
        except KekVersionMissing:
            if self._provider is None:
                raise
        await self.refresh(force=True)
        return self.tools.vault.open(subject, sealed)


class KeyRingWatch:
    """The background task of a serving process: LISTEN for key ring changes on each zone, and
    check every `check_seconds` anyway, reloading rings and renewing leases."""

    def __init__(
        self,
        zones: Mapping[str, ZoneKeys],
        dbs: Mapping[str, ZoneDatabase],
        *,
        check_seconds: float,
    ) -> None:
        self._zones = dict(zones)
        self._dbs = dict(dbs)
        self._check = check_seconds
        self._wake = {name: asyncio.Event() for name in zones}
        self._listeners: dict[str, KeyRingListener | None] = dict.fromkeys(zones)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for name in self._zones:
            self._tasks.append(asyncio.create_task(self._loop(name), name=f"key-ring-{name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for name, listener in self._listeners.items():
            if listener is not None:
                await listener.close()
            self._listeners[name] = None
            await self._zones[name].stop()

    async def _listen(self, name: str) -> None:
        listener = self._listeners[name]
        if listener is None or listener.is_closed():
            self._listeners[name] = await self._dbs[name].listen_key_ring(self._wake[name].set)

    async def _loop(self, name: str) -> None:
        keys, wake = self._zones[name], self._wake[name]
        while True:
            wake.clear()
            try:
                # Listen first, then check: a change published between the two is caught by the
                # check, one published after it by the notification.
                await self._listen(name)
                await keys.refresh()
            except ZoneUnavailable:
                event(log, "key_ring.check_failed", logging.WARNING, zone=name)
            except Exception:
                event(log, "key_ring.check_failed", logging.ERROR, zone=name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._check)
