"""`wearable-gateway migrate`: apply pending SQL migrations to each zone database (and grant a
runtime role what `serve` needs)."""

from __future__ import annotations

import argparse
import asyncio

from gateway.cli.zones import configured_zone
from gateway.settings import load_settings
from gateway.storage import migrate_database


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings(config_path=args.config, require_keys=False)
    names = [args.zone] if args.zone else list(settings.zones)

    async def run() -> None:
        for name in names:
            configured_zone(settings, name)
            applied = await migrate_database(
                settings.zones[name].database_url, zone=name, grant_to=args.grant_to
            )
            done = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
            print(f"zone {name}: {done}")
            if args.grant_to:
                print(f"zone {name}: role {args.grant_to} has the gateway's grants")

    asyncio.run(run())
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = sub.add_parser("migrate", help="apply pending SQL migrations")
    migrate.add_argument("--zone", help="only this zone (default: every configured zone)")
    migrate.add_argument(
        "--grant-to",
        metavar="ROLE",
        help="then grant ROLE (not the tables' owner) what `serve` needs, and no more",
    )
    migrate.set_defaults(func=cmd_migrate)
