"""Which partitions to rewrite in subject order, and when (gateway/storage/maintenance.py says
why and what it costs)."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.storage.maintenance import ClusterResult, Partition, PartitionMaintenance

DEFAULT_SETTLE_DAYS = 7


def settled(
    partitions: list[Partition], *, now: datetime, settle_days: int, again: bool
) -> list[Partition]:
    """Partitions whose month ended at least `settle_days` ago (late uploads have mostly
    arrived), oldest first; already clustered ones only with `again`."""
    if settle_days < 0:
        raise ValueError("settle_days must not be negative")
    cutoff = now - timedelta(days=settle_days)
    return [
        p
        for p in sorted(partitions, key=lambda p: p.month)
        if p.ends <= cutoff and (again or not p.clustered)
    ]


async def cluster_settled_partitions(
    maintenance: PartitionMaintenance,
    *,
    now: datetime,
    settle_days: int = DEFAULT_SETTLE_DAYS,
    again: bool = False,
    lock_timeout_seconds: float = 2.0,
) -> list[ClusterResult]:
    """Rewrite each settled partition in search-index order, one at a time; a partition whose
    lock is not granted in time is skipped (outcome `busy`) and the next one is tried."""
    chosen = settled(await maintenance.partitions(), now=now, settle_days=settle_days, again=again)
    return [
        await maintenance.cluster(partition, lock_timeout_seconds=lock_timeout_seconds)
        for partition in chosen
    ]
