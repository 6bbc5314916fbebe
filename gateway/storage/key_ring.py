"""Where a zone's gateways and its `keys` CLI agree on the key ring (migration 0010): the published
active versions and generation (`key_ring_state`), each running gateway's ring and lease
(`gateway_instances`), and the one transaction in which a kek version is retired.

Only version numbers, generations and ring fingerprints are stored here: never key material.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import asyncpg
import orjson

from gateway.errors import TableBusy
from gateway.storage.pool import ZonePool

# NOTIFY channel: every change of key_ring_state is announced here, after it commits.
KEY_RING_CHANNEL: Final = "wearable_gateway_key_ring"


@dataclass(frozen=True, slots=True)
class KeyRingState:
    generation: int
    active: Mapping[str, int]  # purpose -> published active version (empty before the first)
    retired_kek: frozenset[int]


@dataclass(frozen=True, slots=True)
class InstanceReport:
    """What one running gateway tells the zone about the ring it holds."""

    instance: str
    host: str
    pid: int
    generation: int  # the key_ring_state generation its ring was loaded at
    kek_active: int
    kek_versions: Sequence[int]
    fingerprint: str


@dataclass(frozen=True, slots=True)
class LiveInstance:
    instance: str
    host: str
    pid: int
    generation: int
    kek_active: int
    kek_versions: frozenset[int]


def _state(row: asyncpg.Record) -> KeyRingState:
    active = orjson.loads(row["active"])
    return KeyRingState(
        generation=int(row["generation"]),
        active={str(k): int(v) for k, v in active.items()},
        retired_kek=frozenset(row["retired_kek"]),
    )


_SELECT_STATE: Final = "SELECT generation, active, retired_kek FROM key_ring_state"
_LIVE: Final = """
    SELECT instance, host, pid, generation, kek_active, kek_versions FROM gateway_instances
    WHERE expires_at > now() ORDER BY started_at, instance
"""


def _live(rows: Sequence[asyncpg.Record]) -> list[LiveInstance]:
    return [
        LiveInstance(
            r["instance"],
            r["host"],
            r["pid"],
            int(r["generation"]),
            r["kek_active"],
            frozenset(r["kek_versions"]),
        )
        for r in rows
    ]


async def _publish(
    conn: asyncpg.Connection, active: Mapping[str, int], fingerprint: str, *, retired: int | None
) -> KeyRingState:
    row = await conn.fetchrow(_SELECT_STATE + " FOR UPDATE")
    state = _state(row)
    merged = dict(state.active)
    for purpose, version in active.items():
        merged[purpose] = max(version, merged.get(purpose, 0))
    retired_kek = state.retired_kek | ({retired} if retired is not None else set())
    if merged == dict(state.active) and retired_kek == state.retired_kek:
        return state
    row = await conn.fetchrow(
        """
        UPDATE key_ring_state
        SET generation = generation + 1, active = $1, retired_kek = $2, fingerprint = $3,
            changed_at = now()
        RETURNING generation, active, retired_kek
        """,
        orjson.dumps(merged),
        sorted(retired_kek),
        fingerprint,
    )
    # Delivered to listeners when this transaction commits (NOTIFY is transactional).
    await conn.execute("SELECT pg_notify($1, $2)", KEY_RING_CHANNEL, str(row["generation"]))
    return _state(row)


class KekRetirement:
    """The facts a retirement is decided on, read under its locks, and the step that records it."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        state: KeyRingState,
        still_wrapped: int,
        live: list[LiveInstance],
    ) -> None:
        self._conn = conn
        self.state = state
        self.still_wrapped = still_wrapped  # data keys wrapped under the version
        self.live = live  # gateway instances whose lease has not expired

    async def record(self, version: int, active: Mapping[str, int], fingerprint: str) -> None:
        """Publish the retirement (a new generation: gateways drop the key from memory)."""
        self.state = await _publish(self._conn, active, fingerprint, retired=version)


class KeyRingStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def state(self) -> KeyRingState:
        return _state(await self._pool.fetchrow("key_ring.state", _SELECT_STATE))

    async def publish(self, active: Mapping[str, int], fingerprint: str) -> KeyRingState:
        """Raise the published active versions to at least `active` (never lower one). When that
        changes anything: a new generation, announced on KEY_RING_CHANNEL. Returns the state."""
        async with self._pool.acquire("key_ring.publish") as conn, conn.transaction():
            return await _publish(conn, active, fingerprint, retired=None)

    async def heartbeat(self, report: InstanceReport, lease_seconds: float) -> None:
        """Record (or renew) a running gateway's ring and lease; drops rows whose lease ran out."""
        async with self._pool.acquire("key_ring.heartbeat") as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO gateway_instances AS g (instance, host, pid, expires_at, generation,
                    kek_active, kek_versions, fingerprint)
                VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7, $8)
                ON CONFLICT (instance) DO UPDATE
                SET seen_at = now(), expires_at = excluded.expires_at,
                    generation = excluded.generation, kek_active = excluded.kek_active,
                    kek_versions = excluded.kek_versions, fingerprint = excluded.fingerprint
                """,
                report.instance,
                report.host,
                report.pid,
                lease_seconds,
                report.generation,
                report.kek_active,
                sorted(report.kek_versions),
                report.fingerprint,
            )
            await conn.execute("DELETE FROM gateway_instances WHERE expires_at <= now()")

    async def deregister(self, instance: str) -> None:
        await self._pool.execute(
            "key_ring.deregister", "DELETE FROM gateway_instances WHERE instance = $1", instance
        )

    @asynccontextmanager
    async def retiring_kek(
        self, version: int, *, lock_timeout_seconds: float = 5.0
    ) -> AsyncIterator[KekRetirement]:
        """One transaction holding what a kek retirement must hold still: a SHARE lock on
        `subject_keys` (no enrolment, erasure or re-wrap can add or change a data key until it
        ends) and the `key_ring_state` row (no rotation or gateway registration in between).
        Yields the data keys still under `version` and the live gateway instances; whatever the
        caller does inside (destroying the key, `record`) happens before anyone can wrap again.
        `TableBusy` when the locks cannot be had in time."""
        async with self._pool.acquire("key_ring.retiring_kek") as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_seconds * 1000)}")
            try:
                await conn.execute("LOCK TABLE subject_keys IN SHARE MODE")
                state = _state(await conn.fetchrow(_SELECT_STATE + " FOR UPDATE"))
            except asyncpg.LockNotAvailableError:
                raise TableBusy("subject_keys") from None
            still_wrapped = int(
                await conn.fetchval(
                    "SELECT count(*) FROM subject_keys WHERE kek_version = $1", version
                )
            )
            live = _live(await conn.fetch(_LIVE))
            yield KekRetirement(conn, state, still_wrapped, live)


class KeyRingListener:
    """A dedicated connection LISTENing on KEY_RING_CHANNEL; `on_change` is called (without
    arguments) for each notification. Not pooled: a pooled connection goes back to the pool,
    and its LISTEN with it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(
        cls, dsn: str, on_change: Callable[[], None], *, timeout_seconds: float
    ) -> KeyRingListener:
        conn = await asyncpg.connect(
            dsn,
            timeout=timeout_seconds,
            server_settings={"application_name": "wearable-gateway/key-ring-listener"},
        )
        try:
            await conn.add_listener(
                KEY_RING_CHANNEL,
                lambda _conn, _pid, _channel, _payload: on_change(),
            )
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    def is_closed(self) -> bool:
        return bool(self._conn.is_closed())

    async def close(self) -> None:
        if not self._conn.is_closed():
            await self._conn.close()
