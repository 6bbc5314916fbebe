"""Short-lived in-process caches for lookups on the hot path (API keys, subject resolution).

Every request would otherwise read the zone database twice before its own write. Entries live
for `ttl_seconds` (0 disables caching) and the number of entries is bounded, so a flood of
distinct keys cannot grow memory. Changes made by this process (revoking a key, erasing a
subject) invalidate the entry at once; changes made by another process take effect within the
TTL — the documented bound on how long a revoked key keeps working elsewhere.

Each entry lives a random part of the TTL between `1 - spread` and all of it, so entries filled
together (every subject of a busy vendor in its first second) do not expire together and send a
burst of lookups to the database at one moment: that burst was a tail-latency spike every TTL.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.storage import StoredCredential

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        spread: float = 0.5,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if not 0 <= spread < 1:
            raise ValueError("spread must be in [0, 1)")
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._spread = spread
        self._draw = draw
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires < self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, else `make()`, cached (for values that never go stale)."""
        found = self.get(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found

    def put(self, key: K, value: V) -> None:
        if self._ttl <= 0:
            return
        lifetime = self._ttl * (1 - self._spread * self._draw())
        self._entries[key] = (self._clock() + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


DEFAULT_TTL_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LookupCaches:
    # key id -> stored credential (its hash, kind, owner, revocation)
    credentials: TTLCache[str, StoredCredential] = field(
        default_factory=lambda: TTLCache(DEFAULT_TTL_SECONDS)
    )
    # blind index -> subject pseudonym (only found subjects are cached: an enrolment must be
    # usable at once)
    subjects: TTLCache[str, str] = field(default_factory=lambda: TTLCache(DEFAULT_TTL_SECONDS))
    # Keyed pseudonyms computed on the ingest path, which a vendor's readings repeat request after
    # request: (system, value) -> the identifier's blind indexes, (vendor, device id) -> device
    # pseudonym. The values are deterministic (nothing to invalidate); the TTL bounds how long a
    # recently seen identifier stays in this process's memory (THREAT_MODEL.md).
    blind_indexes: TTLCache[tuple[str, str], tuple[str, ...]] = field(
        default_factory=lambda: TTLCache(DEFAULT_TTL_SECONDS)
    )
    devices: TTLCache[tuple[str, str], str] = field(
        default_factory=lambda: TTLCache(DEFAULT_TTL_SECONDS)
    )

    @classmethod
    def with_ttl(cls, ttl_seconds: float) -> LookupCaches:
        return cls(
            TTLCache(ttl_seconds),
            TTLCache(ttl_seconds),
            TTLCache(ttl_seconds),
            TTLCache(ttl_seconds),
        )
