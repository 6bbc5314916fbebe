"""The zone's append-only audit log (`audit_events`, migration 0005).

Storage knows nothing of keys: `append` hands the place of the next record (its seq, the MAC
before it and the database's clock) to a `seal` callback from the privacy package and stores the
MAC it returns, all while holding the zone's append lock."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from gateway.storage.pool import ZonePool

# pg_advisory_xact_lock key for appends (any fixed value; advisory locks are per database, so per
# zone). Held until commit: the next append reads the row this one wrote.
_APPEND_LOCK_ID: Final = 0x5747_0002
_GENESIS_MAC: Final = bytes(32)
# Rows fetched per round trip while streaming: bounded memory at any log size.
_STREAM_PREFETCH: Final = 500


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """An audit record before it has a place in the chain. `detail` is JSON bytes."""

    action: str
    actor: str
    subject: str | None
    outcome: str
    detail: bytes
    key_version: int


@dataclass(frozen=True, slots=True)
class ChainLink:
    """Where the next record goes: its seq, the MAC of the record before it, and its time."""

    seq: int
    prev_mac: bytes
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredAuditEvent:
    seq: int
    recorded_at: datetime
    action: str
    actor: str
    subject: str | None
    outcome: str
    detail: bytes  # jsonb text as PostgreSQL renders it
    key_version: int
    prev_mac: bytes
    mac: bytes


_INSERT: Final = """
    INSERT INTO audit_events (seq, recorded_at, action, actor, subject, outcome, detail,
        key_version, prev_mac, mac)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
_SELECT_ALL: Final = """
    SELECT seq, recorded_at, action, actor, subject, outcome, detail, key_version, prev_mac, mac
    FROM audit_events ORDER BY seq
"""


class AuditStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def append(self, draft: AuditDraft, seal: Callable[[ChainLink], bytes]) -> int:
        """Append one record after the current last one; returns its seq. Appends of one zone
        are serialised, so the chain never forks, whatever the number of gateway processes."""
        async with self._pool.acquire("audit.append") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK_ID)
            # Read after the lock: under READ COMMITTED each statement sees every commit made
            # before it began, including the previous holder's append.
            row = await conn.fetchrow(
                """
                SELECT clock_timestamp() AS now, last.seq, last.mac
                FROM (SELECT 1) AS one
                LEFT JOIN LATERAL (
                    SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1
                ) AS last ON true
                """
            )
            if row is None:  # a SELECT over one row with a LEFT JOIN always returns one
                raise RuntimeError("audit_events: no chain head row")
            link = ChainLink(
                seq=(row["seq"] or 0) + 1,
                prev_mac=bytes(row["mac"]) if row["mac"] is not None else _GENESIS_MAC,
                recorded_at=row["now"],
            )
            mac = seal(link)
            await conn.execute(
                _INSERT,
                link.seq,
                link.recorded_at,
                draft.action,
                draft.actor,
                draft.subject,
                draft.outcome,
                draft.detail,
                draft.key_version,
                link.prev_mac,
                mac,
            )
        return link.seq

    async def stream(self) -> AsyncGenerator[StoredAuditEvent, None]:
        """Every record in seq order, from one snapshot, through a server-side cursor. Close the
        iterator (`contextlib.aclosing`) when stopping early, to release its connection."""
        async with (
            self._pool.stream("audit.stream") as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            async for row in conn.cursor(_SELECT_ALL, prefetch=_STREAM_PREFETCH):
                yield StoredAuditEvent(
                    seq=row["seq"],
                    recorded_at=row["recorded_at"],
                    action=row["action"],
                    actor=row["actor"],
                    subject=row["subject"],
                    outcome=row["outcome"],
                    detail=bytes(row["detail"]),
                    key_version=row["key_version"],
                    prev_mac=bytes(row["prev_mac"]),
                    mac=bytes(row["mac"]),
                )

    async def successor_seq(self, prev_mac: bytes) -> int | None:
        """The seq of the record that follows the one whose MAC is `prev_mac`, if any is stored
        (used by `verify` to tell a moved record from a deleted one)."""
        seq = await self._pool.fetchval(
            "audit.successor_seq", "SELECT seq FROM audit_events WHERE prev_mac = $1", prev_mac
        )
        return None if seq is None else int(seq)

    async def count(self) -> int:
        return int(await self._pool.fetchval("audit.count", "SELECT count(*) FROM audit_events"))
