"""Builders for native readings and direct reads of zone databases (for assertions only)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import orjson

CN_TZ = timezone(timedelta(hours=8))


def reading(
    subject: str,
    *,
    system: str = "urn:oid:1.2.156.999.1",
    kind: str = "heart-rate",
    value: float = 72,
    unit: str = "/min",
    time: datetime | str | None = None,
    device: str = "SN-0001",
    **extra: Any,
) -> dict[str, Any]:
    moment = (
        time
        if time is not None
        else datetime.now(CN_TZ).replace(microsecond=0) - timedelta(minutes=1)
    )
    return {
        "subject": {"system": system, "value": subject},
        "device": {"id": device, "model": "Watch 5", "manufacturer": "Acme"},
        "type": kind,
        "value": value,
        "unit": unit,
        "time": moment if isinstance(moment, str) else moment.isoformat(),
        **extra,
    }


def blood_pressure(subject: str, systolic: float, diastolic: float, **extra: Any) -> dict[str, Any]:
    body = reading(subject, kind="blood-pressure", **extra)
    del body["value"], body["unit"]
    body["components"] = {
        "systolic": {"value": systolic, "unit": "mm[Hg]"},
        "diastolic": {"value": diastolic, "unit": "mm[Hg]"},
    }
    return body


def steps(subject: str, count: int, minutes: int = 60, **extra: Any) -> dict[str, Any]:
    end = datetime.now(CN_TZ).replace(microsecond=0) - timedelta(minutes=1)
    body = reading(subject, kind="step-count", value=count, unit="{steps}", **extra)
    del body["time"]
    body["start"] = (end - timedelta(minutes=minutes)).isoformat()
    body["end"] = end.isoformat()
    return body


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def stored_observations(dsn: str) -> list[dict[str, Any]]:
    rows = await fetch(dsn, "SELECT resource::text AS r FROM observations ORDER BY id")
    return [orjson.loads(row["r"]) for row in rows]


async def dump_database(dsn: str) -> str:
    """Every row of every table in the public schema, as text (for leak scans)."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        parts = []
        for table in tables:
            name = table["tablename"]
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{name}" t')
            parts.append(f"-- {name}\n" + "\n".join(row["row"] for row in rows))
        return "\n".join(parts)
    finally:
        await conn.close()


def utc_now() -> datetime:
    return datetime.now(UTC)


async def gateways_caught_up(dsn: str, *, timeout: float = 60.0) -> int:  # noqa: ASYNC109
    """Wait (at most `timeout` s) until every live gateway of the zone at `dsn` reports the zone's
    current key ring generation, as `keys retire` requires; returns that generation."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await fetch(
            dsn,
            "SELECT s.generation, count(*) FILTER (WHERE g.generation < s.generation) AS behind "
            "FROM key_ring_state s LEFT JOIN gateway_instances g ON g.expires_at > now() "
            "GROUP BY s.generation",
        )
        if rows[0]["behind"] == 0:
            return int(rows[0]["generation"])
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("a live gateway did not load the zone's current key ring in time")
        await asyncio.sleep(0.05)
