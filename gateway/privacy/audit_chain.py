"""The audit log's keyed hash chain.

    mac_0 = 32 zero bytes
    mac_n = HMAC-SHA256(audit key v_n, mac_{n-1} || canonical(event_n))

`canonical(event)` is the event's JSON with sorted keys and no whitespace (orjson
`OPT_SORT_KEYS`): a domain label, the zone, the time, action, actor, subject, outcome, detail and
the audit-key version `v_n` that made the MAC. `mac_{n-1}` is always 32 bytes, so the
concatenation is unambiguous. The sequence number is *not* covered: a record's place is fixed by
the MAC of its predecessor, which is what lets `verify` tell a moved record ("reordered") from an
edited one ("changed").

Why keyed: a plain hash chain can be recomputed end to end by anyone who can write to the
database, leaving no trace. With HMAC (RFC 2104) a rewrite also needs the zone's audit key, which
never enters the database.

What a chain cannot show by itself: records removed from the *end*. `verify` reports the head
(last seq and MAC) so an operator can anchor it elsewhere and compare later.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from gateway.privacy._primitives import KeyedHash
from gateway.privacy.keys import KeyPurpose, ZoneKeyRing

MAC_BYTES: Final = 32
GENESIS_MAC: Final = bytes(MAC_BYTES)
_LABEL: Final = "wearable-gateway/audit/1"
# Detail holds ids, codes, counts and query shapes only. Floats are refused: measured
# values are floats, and PostgreSQL's jsonb may rewrite a float's text (1e20 → 100000…), which
# would break the MAC over a detail read back from the database.
_MAX_DETAIL_DEPTH: Final = 4


class InvalidAuditDetail(ValueError):
    """The detail is not JSON of strings, integers, booleans, nulls, lists and objects."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """The fields of one audit record that its MAC covers."""

    zone: str
    recorded_at: datetime
    action: str
    actor: str
    subject: str | None
    outcome: str
    detail: Mapping[str, object]
    key_version: int


def check_detail(detail: Mapping[str, object]) -> None:
    """Raise `InvalidAuditDetail` unless `detail` survives a round trip through jsonb intact."""
    _check_value(detail, 0)


def _check_value(value: object, depth: int) -> None:
    if depth > _MAX_DETAIL_DEPTH:
        raise InvalidAuditDetail("audit detail is nested too deeply")
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and "\x00" in value:
            raise InvalidAuditDetail("audit detail strings cannot hold NUL (jsonb refuses it)")
        return
    if isinstance(value, int):
        # orjson and jsonb agree on 64-bit integers; beyond that orjson refuses.
        if not -(2**63) <= value < 2**63:
            raise InvalidAuditDetail("audit detail integers must fit in 64 bits")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidAuditDetail("audit detail keys must be strings")
            _check_value(item, depth + 1)
        return
    raise InvalidAuditDetail(f"audit detail cannot hold a {type(value).__name__}")


def canonical(entry: AuditEntry) -> bytes:
    """The bytes an entry's MAC covers (see the module docstring)."""
    return orjson.dumps(
        {
            "label": _LABEL,
            "zone": entry.zone,
            # timestamptz keeps microseconds, so this text is the same after a round trip.
            "recorded_at": entry.recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "action": entry.action,
            "actor": entry.actor,
            "subject": entry.subject,
            "outcome": entry.outcome,
            "detail": dict(entry.detail),
            "key_version": entry.key_version,
        },
        option=orjson.OPT_SORT_KEYS,
    )


class AuditChain:
    """Seals and checks audit records of one zone under its audit keys (every version, so records
    made before a rotation still verify)."""

    __slots__ = ("_active", "_hashes", "_zone")

    def __init__(self, keyring: ZoneKeyRing) -> None:
        self._zone = keyring.zone
        self._active = keyring.active_version(KeyPurpose.AUDIT)
        self._hashes = {
            version: KeyedHash(key) for version, key in keyring.keys[KeyPurpose.AUDIT].items()
        }

    @property
    def zone(self) -> str:
        return self._zone

    @property
    def key_version(self) -> int:
        """The version new records are sealed with."""
        return self._active

    def seal(self, prev_mac: bytes, entry: AuditEntry) -> bytes:
        """The MAC of `entry` following a record whose MAC is `prev_mac`."""
        if entry.zone != self._zone:
            raise ValueError(f"this audit chain serves zone {self._zone}, not {entry.zone}")
        if len(prev_mac) != MAC_BYTES:
            raise ValueError("the previous MAC is not 32 bytes")
        if entry.key_version != self._active:
            raise ValueError("new audit records are sealed with the active audit key only")
        check_detail(entry.detail)
        return self._hashes[self._active].digest(prev_mac + canonical(entry))

    def authentic(self, prev_mac: bytes, entry: AuditEntry, mac: bytes) -> bool:
        """Whether `mac` is the MAC of `entry` after `prev_mac` under the key version the entry
        names. False for an unknown version or a malformed MAC."""
        keyed = self._hashes.get(entry.key_version)
        if keyed is None or entry.zone != self._zone or len(prev_mac) != MAC_BYTES:
            return False
        return hmac.compare_digest(keyed.digest(prev_mac + canonical(entry)), mac)

    def __repr__(self) -> str:
        return f"AuditChain(zone={self._zone!r}, key_version={self._active})"
