"""The devices each subject uses (table `devices`), recorded by ingest as readings are stored.
The FHIR Device reads and searches of them are site-scoped queries in `storage/fhir_search.py`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from gateway.storage.pool import ZonePool


class DeviceStore:
    """Records which devices each subject uses (filled by ingest). A process remembers the pairs
    it has recorded, so after a device's first reading this costs no round trip."""

    _REMEMBERED: Final = 100_000

    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool
        self._recorded: dict[tuple[str, str], None] = {}

    async def record(
        self, seen: Sequence[tuple[str, str, str | None, str | None, datetime]]
    ) -> None:
        """(subject, device pseudonym, model, manufacturer, first seen) per stored reading."""
        fresh: dict[tuple[str, str], tuple[str | None, str | None, datetime]] = {}
        for subject, device, model, manufacturer, moment in seen:
            key = (subject, device)
            if key not in self._recorded and key not in fresh:
                fresh[key] = (model, manufacturer, moment)
        if not fresh:
            return
        await self._pool.execute(
            "devices.record",
            """
            INSERT INTO devices (subject, pseudonym, model, manufacturer, first_seen)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                 $5::timestamptz[])
            ON CONFLICT (subject, pseudonym) DO UPDATE
                SET model = coalesce(devices.model, excluded.model),
                    manufacturer = coalesce(devices.manufacturer, excluded.manufacturer)
                WHERE devices.model IS NULL OR devices.manufacturer IS NULL
            """,
            [key[0] for key in fresh],
            [key[1] for key in fresh],
            [value[0] for value in fresh.values()],
            [value[1] for value in fresh.values()],
            [value[2] for value in fresh.values()],
        )
        if len(self._recorded) + len(fresh) > self._REMEMBERED:
            self._recorded.clear()  # bounded memory; forgetting only costs one idempotent upsert
        self._recorded.update(dict.fromkeys(fresh))
