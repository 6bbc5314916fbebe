"""Vendor data-update notifications: pending fetches, one row per (subject, category, window)."""

from __future__ import annotations

from datetime import datetime

from gateway.storage.pool import ZonePool


class NotificationStore:
    def __init__(self, pool: ZonePool) -> None:
        self._pool = pool

    async def add_withings(
        self, subject: str, appli: int, start_time: datetime, end_time: datetime
    ) -> bool:
        """Record a pending fetch; False when the same notification is already recorded."""
        inserted = await self._pool.fetchval(
            "notifications.add_withings",
            """
            INSERT INTO withings_notifications (subject, appli, start_time, end_time)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT ON CONSTRAINT withings_notifications_once DO NOTHING
            RETURNING id
            """,
            subject,
            appli,
            start_time,
            end_time,
        )
        return inserted is not None
