"""The zones this process serves: for each, its database and its key-bound privacy tools. Built
once by the composition root; services receive it instead of reaching for globals."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from gateway.errors import ZoneNotServed
from gateway.privacy import IdentityVault, Pseudonymiser, ZoneKeyRing
from gateway.privacy.audit_chain import AuditChain
from gateway.privacy.cursors import CursorSigner
from gateway.privacy.provider import KeyProvider
from gateway.runtime.cache import DEFAULT_TTL_SECONDS, LookupCaches
from gateway.runtime.key_ring import Instance, ZoneKeys
from gateway.storage import ZoneDatabase


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    db: ZoneDatabase
    # The ring in use and the tools on it: replaced when the key file is rotated (key_ring.py),
    # so read them through the properties below at the moment of use, never keep them.
    keys: ZoneKeys
    lookups: LookupCaches = field(default_factory=LookupCaches)

    @classmethod
    def build(
        cls,
        db: ZoneDatabase,
        keyring: ZoneKeyRing,
        *,
        cache_seconds: float = DEFAULT_TTL_SECONDS,
        provider: KeyProvider | None = None,
        instance: Instance | None = None,
    ) -> Zone:
        lookups = LookupCaches.with_ttl(cache_seconds)
        # Blind indexes depend on the ring's versions: recompute them under a reloaded one.
        keys = ZoneKeys(
            db.zone,
            db,
            keyring,
            provider=provider,
            instance=instance,
            on_reload=(lookups.blind_indexes.clear,),
        )
        return cls(db.zone, db, keys, lookups)

    @property
    def keyring(self) -> ZoneKeyRing:
        return self.keys.ring

    @property
    def pseudonyms(self) -> Pseudonymiser:
        return self.keys.tools.pseudonyms

    @property
    def vault(self) -> IdentityVault:
        return self.keys.tools.vault

    @property
    def cursors(self) -> CursorSigner:  # FHIR search paging
        return self.keys.tools.cursors

    @property
    def audit(self) -> AuditChain:  # seals the zone's audit log
        return self.keys.tools.audit


class ZoneDirectory(Mapping[str, Zone]):
    def __init__(self, zones: Mapping[str, Zone]) -> None:
        self._zones = dict(zones)

    def __getitem__(self, name: str) -> Zone:
        return self._zones[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._zones)

    def __len__(self) -> int:
        return len(self._zones)

    def require(self, name: str) -> Zone:
        zone = self._zones.get(name)
        if zone is None:
            raise ZoneNotServed(f"zone {name} is not served by this gateway")
        return zone

    def others(self, name: str) -> list[Zone]:
        return [zone for zone_name, zone in self._zones.items() if zone_name != name]
