"""Clustering settled partitions: rows and searches unchanged, pages in subject order, a busy
partition skipped rather than waited for, and the operator command."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from gateway.models import ObservationRow
from gateway.services.maintenance import cluster_settled_partitions, settled
from gateway.storage import ZoneDatabase
from gateway.storage.maintenance import ClusterOutcome, Partition, open_maintenance
from tests.cli.test_commands import run

SEPTEMBER = datetime(2026, 9, 1, tzinfo=UTC)
SUBJECTS = [f"s1-{n:032d}" for n in range(6)]
ALL_ROWS = "SELECT id, subject, code, resource FROM observations ORDER BY id"


def row(n: int, subject: str, moment: datetime) -> ObservationRow:
    return ObservationRow(
        id=f"o1-{n:032d}",
        dedup_key=f"o1-{n:032d}",
        subject=subject,
        device="d1-device",
        code="8867-4" if n % 3 else "59408-5",
        effective_start=moment,
        effective_end=None,
        issued=moment,
        source_format="native",
        resource=b'{"resourceType": "Observation"}',
    )


def interleaved_rows() -> list[ObservationRow]:
    """Readings of all subjects in arrival order, over September, October and November."""
    rows = []
    for n in range(900):
        moment = SEPTEMBER + timedelta(hours=2 * n)  # 900 x 2 h = 75 days
        rows.append(row(n, SUBJECTS[n % len(SUBJECTS)], moment))
    return rows


async def store_in_arrival_order(dsn: str, rows: list[ObservationRow]) -> None:
    """As readings arrive: a few at a time, every subject in turn (one `insert_many` orders its
    own rows, so one call with everything would already be in subject order)."""
    db = await ZoneDatabase.connect("cn", dsn)
    try:
        for start in range(0, len(rows), len(SUBJECTS)):
            await db.observations.insert_many(rows[start : start + len(SUBJECTS)])
    finally:
        await db.close()


def partition(name: str, month: datetime, *, clustered: bool = False) -> Partition:
    return Partition(name, month, 0, clustered)


def test_settled_months_are_those_that_ended_settle_days_ago_oldest_first() -> None:
    months = [
        partition("observations_y2026m10", datetime(2026, 10, 1, tzinfo=UTC)),
        partition("observations_y2026m09", SEPTEMBER, clustered=True),
        partition("observations_y2026m08", datetime(2026, 8, 1, tzinfo=UTC)),
        partition("observations_y2026m11", datetime(2026, 11, 1, tzinfo=UTC)),
    ]
    now = datetime(2026, 11, 7, 12, tzinfo=UTC)
    names = [p.name for p in settled(months, now=now, settle_days=7, again=False)]
    assert names == ["observations_y2026m08"]  # October ended 6.5 days ago; September is done
    names = [p.name for p in settled(months, now=now, settle_days=6, again=True)]
    assert names == ["observations_y2026m08", "observations_y2026m09", "observations_y2026m10"]
    with pytest.raises(ValueError, match="settle_days"):
        settled(months, now=now, settle_days=-1, again=False)


async def physical_subjects(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(f"SELECT subject FROM {table} ORDER BY ctid")
    return [r["subject"] for r in rows]


async def test_clustering_rewrites_settled_months_in_subject_order_and_keeps_every_row(
    zone_dsns: dict[str, str],
) -> None:
    await store_in_arrival_order(zone_dsns["cn"], interleaved_rows())
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        before = await conn.fetch(ALL_ROWS)
        assert await physical_subjects(conn, "observations_y2026m09") != sorted(
            await physical_subjects(conn, "observations_y2026m09")
        )
        async with open_maintenance(zone_dsns["cn"]) as maintenance:
            results = await cluster_settled_partitions(
                maintenance, now=datetime(2026, 11, 10, tzinfo=UTC), settle_days=7
            )
            assert [(r.partition, r.outcome) for r in results] == [
                ("observations_y2026m09", ClusterOutcome.CLUSTERED),
                ("observations_y2026m10", ClusterOutcome.CLUSTERED),
            ]
            state = {p.name: p.clustered for p in await maintenance.partitions()}
            assert state == {
                "observations_y2026m09": True,
                "observations_y2026m10": True,
                "observations_y2026m11": False,  # still receiving readings
            }
            # A second run finds nothing left to do.
            assert (
                await cluster_settled_partitions(
                    maintenance, now=datetime(2026, 11, 10, tzinfo=UTC), settle_days=7
                )
                == []
            )
        after = await conn.fetch(ALL_ROWS)
        assert after == before
        for table in ("observations_y2026m09", "observations_y2026m10"):
            physical = await physical_subjects(conn, table)
            assert physical == sorted(physical)  # one subject's rows now lie together
        # Index-only scans need the visibility map the VACUUM after CLUSTER set.
        frozen = await conn.fetchval(
            "SELECT relallvisible = relpages FROM pg_class WHERE relname = 'observations_y2026m09'"
        )
        assert frozen
    finally:
        await conn.close()


async def test_a_busy_partition_is_skipped_not_waited_for(zone_dsns: dict[str, str]) -> None:
    await store_in_arrival_order(zone_dsns["cn"], interleaved_rows()[:450])  # Sept. and Oct.
    holder = await asyncpg.connect(zone_dsns["cn"])
    try:
        transaction = holder.transaction()
        await transaction.start()
        # A search reading September holds ACCESS SHARE until it finishes.
        await holder.execute("SELECT count(*) FROM observations_y2026m09")
        async with open_maintenance(zone_dsns["cn"]) as maintenance:
            results = await cluster_settled_partitions(
                maintenance,
                now=datetime(2026, 12, 31, tzinfo=UTC),
                settle_days=7,
                lock_timeout_seconds=0.2,
            )
            assert [(r.partition, r.outcome) for r in results] == [
                ("observations_y2026m09", ClusterOutcome.BUSY),
                ("observations_y2026m10", ClusterOutcome.CLUSTERED),
            ]
            assert results[0].seconds < 5
        await transaction.rollback()
    finally:
        await holder.close()


async def test_a_partition_name_from_outside_the_catalogue_is_refused(
    zone_dsns: dict[str, str],
) -> None:
    async with open_maintenance(zone_dsns["cn"]) as maintenance:
        with pytest.raises(ValueError, match="partition"):
            await maintenance.cluster(
                replace(partition("observations_y2026m09", SEPTEMBER), name="observations; DROP"),
                lock_timeout_seconds=1,
            )


async def test_the_storage_cluster_command(zone_dsns: dict[str, str], tmp_path: Path) -> None:
    await store_in_arrival_order(zone_dsns["cn"], interleaved_rows()[:450])
    env = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": zone_dsns["cn"],
        "GATEWAY_ZONE_CN_KEY_FILE": str(tmp_path / "absent.keys.json"),  # not needed
    }
    done = run(["storage", "cluster", "--zone", "cn"], {**os.environ, **env})
    assert done.returncode == 0, done.stderr
    assert "observations_y2026m09: clustered" in done.stdout
    assert "2 partitions clustered, 0 busy" in done.stdout
    again = run(["storage", "cluster", "--zone", "cn"], env)
    assert "no settled partition left to cluster" in again.stdout
    unknown = run(["storage", "cluster", "--zone", "eu"], env)
    assert unknown.returncode != 0
    assert "zone eu is not configured" in unknown.stderr
