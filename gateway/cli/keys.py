"""`wearable-gateway keys init|upgrade|rotate|rewrap|retire`: the zone key files, and the zone's
data and audit log kept in step with them (services/key_rotation.py)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from gateway.app import key_provider
from gateway.cli.zones import configured_zone, open_key_zone, settings_of
from gateway.errors import GatewayError
from gateway.privacy import KeyPurpose, ZoneKeyRing
from gateway.privacy.provider import FileKeyProvider
from gateway.runtime.zones import Zone
from gateway.services.key_rotation import (
    DEFAULT_BATCH,
    ROTATABLE,
    Retirement,
    RewrapProgress,
    publish_rotation,
    record_rewrap,
    record_rotation,
    record_upgrade,
    retire_kek_version,
    rewrap_data_keys,
)
from gateway.settings import load_settings


def cmd_keys_init(args: argparse.Namespace) -> int:
    out: Path = args.out or Path(f"{args.zone}.keys.json")
    ring = ZoneKeyRing.generate(args.zone)
    ring.write(out)
    print(
        f"zone {args.zone}: key file written to {out} (mode 0600, fingerprint {ring.fingerprint()})"
    )
    print("Keep it in the zone's secret store; losing it makes the zone's identities unreadable.")
    # No audit record: init only writes a file, typically before the zone's database exists, and
    # the file holds the audit key a record would be sealed with (key_rotation.py, key events).
    print("Nothing is recorded in the audit log: the file is new and no database is touched.")
    return 0


def cmd_keys_upgrade(args: argparse.Namespace) -> int:
    added = FileKeyProvider(args.file).upgrade(args.zone)
    if not added:
        print(f"zone {args.zone}: {args.file} already has keys for every purpose; unchanged")
        return 0
    print(
        f"zone {args.zone}: added {', '.join(added)} keys to {args.file}; every existing key is "
        f"unchanged and the previous file is kept as {args.file.name}.bak"
    )
    # Recorded when the file is the configured key file of a reachable, migrated zone database.
    # The file is upgraded first and regardless: an older file may lack the audit key itself,
    # and upgrading usually comes before `migrate` on an older deployment.
    try:
        settings = load_settings(config_path=args.config, require_keys=False)
        configured_zone(settings, args.zone)
        configured = settings.zones[args.zone].key_file
        if configured is None or Path(configured).resolve() != args.file.resolve():
            raise GatewayError(f"{args.file} is not the key file configured for zone {args.zone}")
        ring = FileKeyProvider(args.file).load(args.zone)

        async def run() -> None:
            async with open_key_zone(settings, args.zone, ring) as zone:
                await record_upgrade(zone, added=added, ring=ring)

        asyncio.run(run())
    except GatewayError as error:
        print(f"Not recorded in the zone's audit log ({error.message}).")
        return 0
    print(f"Recorded in zone {args.zone}'s audit log.")
    return 0


def _print_rewrap(progress: RewrapProgress) -> None:
    print(
        f"re-wrapped {progress.done}/{progress.total} data keys to kek version "
        f"{progress.kek_version} ({progress.batches} batches)",
        flush=True,
    )


async def _rewrap(zone: Zone, ring: ZoneKeyRing, batch: int) -> int:
    progress = await rewrap_data_keys(zone.db, ring, batch=batch, on_batch=_print_rewrap)
    remaining = await zone.db.subjects.count_wrapped_below(progress.kek_version)
    await record_rewrap(zone, progress=progress, remaining=remaining)
    if remaining:
        # Rows written meanwhile by processes still holding the previous ring.
        print(f"{remaining} data keys still under older kek versions: run `keys rewrap` again")
        return 1
    print(f"zone {zone.name}: every data key is wrapped with kek version {progress.kek_version}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    configured_zone(settings, args.zone)
    purpose = KeyPurpose(args.purpose)
    provider = key_provider(settings.zones[args.zone])
    previous = provider.load(args.zone)
    ring = previous.with_new_version(purpose)

    async def run() -> int:
        # The database is opened (and the current ring checked against it) before the key file
        # changes: a rotation that cannot be audited does not start.
        async with open_key_zone(settings, args.zone, previous) as old:
            provider.store(ring)
            zone = Zone.build(old.db, ring)
            # File first, then the database: a gateway that sees the new generation and reads
            # the file finds the new version there.
            generation = await publish_rotation(zone, ring)
            await record_rotation(zone, purpose=purpose, previous=previous, ring=ring)
            version = ring.active_version(purpose)
            print(
                f"zone {args.zone}: {purpose} key version {version} added and active "
                f"(key ring generation {generation}); running gateways reload the key file."
            )
            if purpose is not KeyPurpose.KEK:
                print("Older versions stay in the key file.")
                return 0
            if args.no_rewrap:
                print("Run `wearable-gateway keys rewrap` next.")
                return 0
            return await _rewrap(zone, ring, args.batch)

    return asyncio.run(run())


def cmd_keys_rewrap(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    configured_zone(settings, args.zone)
    ring = key_provider(settings.zones[args.zone]).load(args.zone)

    async def run() -> int:
        async with open_key_zone(settings, args.zone, ring) as zone:
            return await _rewrap(zone, ring, args.batch)

    return asyncio.run(run())


def _print_blocked(zone: str, version: int, retired: Retirement) -> None:
    if retired.still_wrapped:
        print(
            f"zone {zone}: {retired.still_wrapped} data keys are still wrapped under kek "
            f"version {version}; nothing was retired. Run `wearable-gateway keys rewrap`, "
            "then retire again."
        )
    for instance in retired.blocking:
        print(
            f"zone {zone}: gateway {instance.instance} (host {instance.host}, pid "
            f"{instance.pid}) holds kek version {instance.kek_active} as active at key ring "
            f"generation {instance.generation} of {retired.generation}; nothing was retired. "
            "It has not loaded the current key file: install it on that host (or stop that "
            "gateway; its lease then expires), then retire again."
        )


def cmd_keys_retire(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    configured_zone(settings, args.zone)
    provider = key_provider(settings.zones[args.zone])
    ring = provider.load(args.zone)

    async def run() -> Retirement:
        deadline = time.monotonic() + args.wait
        async with open_key_zone(settings, args.zone, ring) as zone:
            while True:
                retired = await retire_kek_version(zone, provider, ring, args.version)
                # Gateways catch up by themselves (NOTIFY, or their next check); data keys
                # under the version need `keys rewrap`, which waiting does not run.
                if retired.ring is not None or retired.still_wrapped:
                    return retired
                if time.monotonic() >= deadline:
                    return retired
                await asyncio.sleep(0.5)

    retired = asyncio.run(run())
    if retired.ring is None:
        _print_blocked(args.zone, args.version, retired)
        return 1
    done = "retired; no data key used it" if retired.was_in_ring else "was already retired"
    print(
        f"zone {args.zone}: kek version {args.version} {done}. It is gone from the key file "
        f"and its .bak (fingerprint {retired.ring.fingerprint()}); every running gateway "
        "drops it from memory when it reloads (key ring generation "
        f"{retired.generation})."
    )
    print(
        "Destroy other copies of the old key file (secret-store history, backups): with them, "
        "a backup of subject_keys from before the re-wrap could still be opened."
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="zone key files").add_subparsers(dest="keys", required=True)
    init = keys.add_parser("init", help="create a new zone key file")
    init.add_argument("--zone", required=True)
    init.add_argument("--out", type=Path, help="path of the key file (default: ZONE.keys.json)")
    init.set_defaults(func=cmd_keys_init)
    upgrade = keys.add_parser(
        "upgrade", help="add keys for purposes an older key file lacks; keep every other key"
    )
    upgrade.add_argument("--zone", required=True)
    upgrade.add_argument("--file", required=True, type=Path, help="the zone's key file")
    upgrade.set_defaults(func=cmd_keys_upgrade)
    rotate = keys.add_parser(
        "rotate", help="add a new active key version (kek: then re-wrap every data key)"
    )
    rotate.add_argument("--zone", required=True)
    rotate.add_argument("--purpose", required=True, choices=[str(p) for p in ROTATABLE])
    rotate.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="data keys per batch")
    rotate.add_argument(
        "--no-rewrap",
        action="store_true",
        help="kek: only add the version (restart gateways, then `keys rewrap`)",
    )
    rotate.set_defaults(func=cmd_keys_rotate)
    rewrap = keys.add_parser(
        "rewrap", help="re-wrap data keys under older kek versions (resumes a rotation)"
    )
    rewrap.add_argument("--zone", required=True)
    rewrap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="data keys per batch")
    rewrap.set_defaults(func=cmd_keys_rewrap)
    retire = keys.add_parser(
        "retire",
        help="destroy an old kek version once no data key uses it (old backups become unreadable)",
    )
    retire.add_argument("--zone", required=True)
    retire.add_argument(
        "--purpose", choices=[str(KeyPurpose.KEK)], default=str(KeyPurpose.KEK), help="kek only"
    )
    retire.add_argument("--version", required=True, type=int, help="the kek version to destroy")
    retire.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="while live gateways have not yet loaded the current key file, retry this long",
    )
    retire.set_defaults(func=cmd_keys_retire)
