"""The zones this process serves: for each, its database and its key-bound privacy tools. Built
once by the composition root; services receive it instead of reaching for globals."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from gateway.errors import ZoneNotServed
from gateway.privacy import IdentityVault, Pseudonymiser, ZoneKeyRing
from gateway.privacy.audit_chain import AuditChain
from gateway.privacy.cursors import CursorSigner
from gateway.services.cache import DEFAULT_TTL_SECONDS, LookupCaches
from gateway.storage import ZoneDatabase


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    db: ZoneDatabase
    pseudonyms: Pseudonymiser
    vault: IdentityVault
    cursors: CursorSigner  # FHIR search paging
    audit: AuditChain  # seals the zone's audit log (issue 6)
    lookups: LookupCaches = field(default_factory=LookupCaches)

    @classmethod
    def build(
        cls, db: ZoneDatabase, keyring: ZoneKeyRing, *, cache_seconds: float = DEFAULT_TTL_SECONDS
    ) -> Zone:
        return cls(
            db.zone,
            db,
            Pseudonymiser(keyring),
            IdentityVault(keyring),
            CursorSigner(keyring),
            AuditChain(keyring),
            LookupCaches.with_ttl(cache_seconds),
        )


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
