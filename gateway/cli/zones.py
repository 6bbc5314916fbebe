"""What a command opens: its settings and the zone databases with their key rings, closed again
however the command ends. Every command that works on zone data opens them here."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway import app
from gateway.errors import GatewayError
from gateway.privacy import ZoneKeyRing
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.key_rotation import check_keys_cover_data
from gateway.settings import Settings, load_settings
from gateway.storage import ZoneDatabase


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(config_path=args.config)


def configured_zone(settings: Settings, name: str) -> None:
    if name not in settings.zones:
        raise GatewayError(f"zone {name} is not configured")


@asynccontextmanager
async def open_zones(settings: Settings) -> AsyncIterator[ZoneDirectory]:
    """Every configured zone, with the ring of its key file, as `serve` opens them."""
    zones = await app.open_zones(settings, app.load_keyrings(settings))
    try:
        yield zones
    finally:
        for zone in zones.values():
            await zone.db.close()


@asynccontextmanager
async def open_key_zone(settings: Settings, name: str, ring: ZoneKeyRing) -> AsyncIterator[Zone]:
    """The zone's database with `ring` (which must cover its data), for one key command."""
    db = await ZoneDatabase.connect(name, settings.zones[name].database_url, max_size=2)
    try:
        await check_keys_cover_data(db, ring)
        zone = Zone.build(db, ring)
        # A key file behind the zone's published ring is refused; one ahead is published (a
        # rotation that stopped between writing the file and publishing it is finished here).
        await zone.keys.start()
        yield zone
    finally:
        await db.close()
