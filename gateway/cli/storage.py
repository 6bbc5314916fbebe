"""`wearable-gateway storage cluster`: physical upkeep of a zone database."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from gateway.cli.zones import configured_zone
from gateway.services.maintenance import DEFAULT_SETTLE_DAYS, cluster_settled_partitions
from gateway.settings import load_settings
from gateway.storage.maintenance import ClusterOutcome, ClusterResult, open_maintenance


def cmd_storage_cluster(args: argparse.Namespace) -> int:
    settings = load_settings(config_path=args.config, require_keys=False)
    configured_zone(settings, args.zone)

    async def run() -> list[ClusterResult]:
        async with open_maintenance(
            settings.zones[args.zone].database_url, zone=args.zone
        ) as maintenance:
            return await cluster_settled_partitions(
                maintenance,
                now=datetime.now(UTC),
                settle_days=args.settle_days,
                again=args.again,
                lock_timeout_seconds=args.lock_timeout,
            )

    results = asyncio.run(run())
    for result in results:
        print(f"{result.partition}: {result.outcome} ({result.seconds:.1f} s)")
    busy = sum(1 for r in results if r.outcome is ClusterOutcome.BUSY)
    print(
        f"zone {args.zone}: {len(results) - busy} partitions clustered, {busy} busy (run again)"
        if results
        else f"zone {args.zone}: no settled partition left to cluster"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    storage = sub.add_parser("storage", help="physical upkeep of a zone database").add_subparsers(
        dest="storage", required=True
    )
    cluster = storage.add_parser(
        "cluster",
        help="rewrite settled monthly partitions in subject order (fast searches at scale)",
    )
    cluster.add_argument("--zone", required=True)
    cluster.add_argument(
        "--settle-days",
        type=int,
        default=DEFAULT_SETTLE_DAYS,
        help=f"only months that ended this many days ago ({DEFAULT_SETTLE_DAYS})",
    )
    cluster.add_argument("--again", action="store_true", help="also partitions clustered before")
    cluster.add_argument(
        "--lock-timeout", type=float, default=2.0, help="skip a partition busy this long (s)"
    )
    cluster.set_defaults(func=cmd_storage_cluster)
