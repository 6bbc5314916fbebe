"""Short-lived in-process caches for lookups on the hot path (API keys, subject resolution).

Every request would otherwise read the zone database twice before its own write. Entries live
for `ttl_seconds` (0 disables caching) and the number of entries is bounded, so a flood of
distinct keys cannot grow memory. Changes made by this process (revoking a key, erasing a
subject) invalidate the entry at once; changes made by another process take effect within the
TTL — the documented bound on how long a revoked key keeps working elsewhere.
"""

from __future__ import annotations

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
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
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

    def put(self, key: K, value: V) -> None:
        if self._ttl <= 0:
            return
        self._entries[key] = (self._clock() + self._ttl, value)
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

    @classmethod
    def with_ttl(cls, ttl_seconds: float) -> LookupCaches:
        return cls(TTLCache(ttl_seconds), TTLCache(ttl_seconds))
