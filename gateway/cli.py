"""`wearable-gateway` commands: serve, migrate, keys, vendors, clinics, clients, token,
credentials, audit, studies, demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from gateway.app import create_app, key_provider, load_keyrings, open_zones
from gateway.cli_lifecycle import add_lifecycle_commands
from gateway.cli_smart import add_client_keygen_command, add_token_command
from gateway.errors import GatewayError
from gateway.logs import configure_logging
from gateway.privacy import KeyPurpose, ZoneKeyRing
from gateway.privacy.provider import FileKeyProvider
from gateway.residency.export_policy import TransferMechanism
from gateway.services.audit import export_fhir, verify
from gateway.services.auth import add_credential, revoke_credential
from gateway.services.key_rotation import (
    DEFAULT_BATCH,
    ROTATABLE,
    Retirement,
    RewrapProgress,
    check_keys_cover_data,
    publish_rotation,
    record_rewrap,
    record_rotation,
    record_upgrade,
    retire_kek_version,
    rewrap_data_keys,
)
from gateway.services.maintenance import DEFAULT_SETTLE_DAYS, cluster_settled_partitions
from gateway.services.smart import ROLES, register_client, revoke_client
from gateway.services.studies import NewStudy, add_study
from gateway.services.zones import Zone
from gateway.settings import Settings, load_settings
from gateway.storage import ZoneDatabase, migrate_database
from gateway.storage.maintenance import ClusterOutcome, ClusterResult, open_maintenance
from gateway.web.server import listen, run_until_signalled, serving


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path=args.config)


def _use_uvloop() -> bool:
    """uvloop (the `speed` extra) makes the event loop itself cheaper; asyncio otherwise."""
    try:
        import uvloop  # noqa: PLC0415 — optional
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level)
    _use_uvloop()
    sock, settings = listen(settings, host=args.host, port=args.port)
    app = create_app(settings)
    app.on_startup.append(_settle_heap)

    async def run() -> None:
        async with serving(app, settings, sock, shutdown_timeout=args.grace):
            await asyncio.Event().wait()  # until SIGTERM or SIGINT

    run_until_signalled(run())
    return 0


async def _settle_heap(_app: web.Application) -> None:
    """After start-up (modules, code tables, pools, caches all built), move every live object to
    the collector's permanent generation: full collections under load then walk only what
    requests allocate, not the ~75,000 start-up objects again (a full collection of those took
    ~15 ms, a pause every in-flight request shared)."""
    gc.collect()
    gc.freeze()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings(config_path=args.config, require_keys=False)
    names = [args.zone] if args.zone else list(settings.zones)

    async def run() -> None:
        for name in names:
            if name not in settings.zones:
                raise GatewayError(f"zone {name} is not configured")
            applied = await migrate_database(
                settings.zones[name].database_url, zone=name, grant_to=args.grant_to
            )
            done = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
            print(f"zone {name}: {done}")
            if args.grant_to:
                print(f"zone {name}: role {args.grant_to} has the gateway's grants")

    asyncio.run(run())
    return 0


def cmd_storage_cluster(args: argparse.Namespace) -> int:
    settings = load_settings(config_path=args.config, require_keys=False)
    if args.zone not in settings.zones:
        raise GatewayError(f"zone {args.zone} is not configured")

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


@asynccontextmanager
async def _key_zone(settings: Settings, name: str, ring: ZoneKeyRing) -> AsyncIterator[Zone]:
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


def _configured_zone(settings: Settings, name: str) -> None:
    if name not in settings.zones:
        raise GatewayError(f"zone {name} is not configured")


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
        _configured_zone(settings, args.zone)
        configured = settings.zones[args.zone].key_file
        if configured is None or Path(configured).resolve() != args.file.resolve():
            raise GatewayError(f"{args.file} is not the key file configured for zone {args.zone}")
        ring = FileKeyProvider(args.file).load(args.zone)

        async def run() -> None:
            async with _key_zone(settings, args.zone, ring) as zone:
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
    settings = _settings(args)
    _configured_zone(settings, args.zone)
    purpose = KeyPurpose(args.purpose)
    provider = key_provider(settings.zones[args.zone])
    previous = provider.load(args.zone)
    ring = previous.with_new_version(purpose)

    async def run() -> int:
        # The database is opened (and the current ring checked against it) before the key file
        # changes: a rotation that cannot be audited does not start.
        async with _key_zone(settings, args.zone, previous) as old:
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
    settings = _settings(args)
    _configured_zone(settings, args.zone)
    ring = key_provider(settings.zones[args.zone]).load(args.zone)

    async def run() -> int:
        async with _key_zone(settings, args.zone, ring) as zone:
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
    settings = _settings(args)
    _configured_zone(settings, args.zone)
    provider = key_provider(settings.zones[args.zone])
    ring = provider.load(args.zone)

    async def run() -> Retirement:
        deadline = time.monotonic() + args.wait
        async with _key_zone(settings, args.zone, ring) as zone:
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


def _credential_command(kind: str) -> object:
    def command(args: argparse.Namespace) -> int:
        settings = _settings(args)

        async def run() -> int:
            zones = await open_zones(settings, load_keyrings(settings))
            try:
                owner = args.name if kind == "vendor" else args.site
                issued = await add_credential(zones, zone=args.zone, kind=kind, owner=owner)  # type: ignore[arg-type]
            finally:
                for zone in zones.values():
                    await zone.db.close()
            print(f"{kind} API key for {owner} in zone {args.zone} (key id {issued.key_id}).")
            print("It is shown once and cannot be recovered; store it now:")
            print(issued.token)
            return 0

        return asyncio.run(run())

    return command


def cmd_clients_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        jwks = json.loads(args.jwks.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GatewayError(f"cannot read a JWKS (JSON) from {args.jwks}") from exc

    async def run() -> int:
        zones = await open_zones(settings, load_keyrings(settings))
        try:
            client_id = await register_client(
                zones,
                zone=args.zone,
                site=args.site,
                role=args.role,
                jwks=jwks,
                scopes=args.scopes.split(),
            )
        finally:
            for zone in zones.values():
                await zone.db.close()
        print(f"SMART backend client for {args.site} ({args.role}) in zone {args.zone}.")
        print("Its client_id (the iss and sub of its assertions; not a secret):")
        print(client_id)
        return 0

    return asyncio.run(run())


def cmd_clients_revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> int:
        zones = await open_zones(settings, load_keyrings(settings))
        try:
            revoked = await revoke_client(zones, zone=args.zone, client_id=args.client_id)
        finally:
            for zone in zones.values():
                await zone.db.close()
        outcome = "revoked, with its access tokens" if revoked else "not found or already revoked"
        print(f"client {args.client_id}: {outcome}")
        return 0 if revoked else 1

    return asyncio.run(run())


def cmd_credentials_revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> int:
        zones = await open_zones(settings, load_keyrings(settings))
        try:
            revoked = await revoke_credential(zones, zone=args.zone, key_id=args.key_id)
        finally:
            for zone in zones.values():
                await zone.db.close()
        print(f"key {args.key_id}: {'revoked' if revoked else 'not found or already revoked'}")
        return 0 if revoked else 1

    return asyncio.run(run())


def _transfer(args: argparse.Namespace) -> TransferMechanism | None:
    if args.transfer_mechanism is None:
        return None
    kind, _, reference = args.transfer_mechanism.partition(":")
    return TransferMechanism(
        kind=kind,
        reference=reference,
        tia=args.tia,
        expires_on=date.fromisoformat(args.transfer_expires) if args.transfer_expires else None,
    )


def cmd_studies_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        study = NewStudy(
            id=args.id,
            title=args.title,
            ethics_ref=args.ethics,
            recipient_org=args.recipient_org,
            recipient_country=args.recipient_country,
            measures=args.measures.split(","),
            shift_days=args.shift_days,
            keep_weekday=args.keep_weekday,
            resolution=args.resolution,
            k=args.k,
            expires_on=date.fromisoformat(args.expires),
            researcher_clients=args.researcher_client,
            transfer=_transfer(args),
        )
    except ValueError as exc:
        raise GatewayError("dates are YYYY-MM-DD") from exc

    async def run() -> int:
        zones = await open_zones(settings, load_keyrings(settings))
        try:
            await add_study(zones, zone=args.zone, study=study, today=datetime.now(UTC).date())
        finally:
            for zone in zones.values():
                await zone.db.close()
        print(f"study {args.id} registered in zone {args.zone}.")
        print(f"Researchers export it with GET /fhir/Group/{args.id}/$export.")
        return 0

    return asyncio.run(run())


def _add_study_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    studies = sub.add_parser("studies", help="research studies (FHIR Group export)").add_subparsers(
        dest="studies", required=True
    )
    add = studies.add_parser("add", help="register a study and its de-identification settings")
    add.add_argument("--zone", required=True)
    add.add_argument("--id", required=True, help="the study id (the FHIR Group id)")
    add.add_argument("--title", required=True)
    add.add_argument("--ethics", required=True, help="the ethics approval reference")
    add.add_argument("--recipient-org", required=True)
    add.add_argument("--recipient-country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")
    add.add_argument("--measures", required=True, help="LOINC codes, e.g. 8867-4,8480-6")
    add.add_argument("--shift-days", type=int, required=True, help="date-shift bound in days")
    add.add_argument("--keep-weekday", action="store_true", help="shift by whole weeks")
    add.add_argument("--resolution", default="minute", choices=("second", "minute", "hour", "day"))
    add.add_argument("--k", type=int, default=5, help="k of the k-anonymity gate")
    add.add_argument("--expires", required=True, help="the study's expiry date, YYYY-MM-DD")
    add.add_argument(
        "--transfer-mechanism",
        help="recipient outside the zone: cn standard-contract:ID | certification:ID | "
        "security-assessment:ID; eu scc:module-N",
    )
    add.add_argument("--tia", help="eu: the transfer impact assessment id")
    add.add_argument("--transfer-expires", help="the mechanism's expiry date, YYYY-MM-DD")
    add.add_argument(
        "--researcher-client",
        action="append",
        required=True,
        help="a researcher client id allowed to export the study (repeatable)",
    )
    add.set_defaults(func=cmd_studies_add)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> int:
        zones = await open_zones(settings, load_keyrings(settings))
        try:
            report = await verify(zones.require(args.zone))
        finally:
            for zone in zones.values():
                await zone.db.close()
        head = f"head seq {report.head_seq}, mac {report.head_mac.hex()[:16]}"
        if report.ok:
            print(f"ok: {report.checked} records ({head})")
            return 0
        print(
            f"zone {args.zone}: audit record {report.first_bad_seq} {report.problem} "
            f"({report.checked} records verified before it; {head})"
        )
        return 1

    return asyncio.run(run())


def cmd_audit_export(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run(out: BinaryIO) -> int:
        zones = await open_zones(settings, load_keyrings(settings))
        try:
            async for line in export_fhir(zones.require(args.zone)):
                out.write(line)
        finally:
            for zone in zones.values():
                await zone.db.close()
        out.flush()
        return 0

    if args.out is None:
        return asyncio.run(run(sys.stdout.buffer))
    try:
        # Exclusive create: an export never overwrites an earlier one.
        file = args.out.open("xb")
    except OSError as exc:
        raise GatewayError(f"cannot create {args.out}: {exc.strerror}") from None
    with file:
        return asyncio.run(run(file))


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo  # noqa: PLC0415 — keeps the embedded server out of `serve`

    return run_demo(data_dir=args.data_dir, port=args.port, once=args.once)


def _add_keys_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the zone's audit log").add_subparsers(
        dest="audit", required=True
    )
    audit_verify = audit.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first bad record"
    )
    audit_verify.add_argument("--zone", required=True)
    audit_verify.set_defaults(func=cmd_audit_verify)
    audit_export = audit.add_parser("export", help="write the log as FHIR AuditEvent NDJSON")
    audit_export.add_argument("--zone", required=True)
    audit_export.add_argument("--out", type=Path, help="a new file (default: standard output)")
    audit_export.set_defaults(func=cmd_audit_export)


def _add_storage_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_credential_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """vendors, clinics and credentials (API keys); clients (SMART) and `token`."""
    vendors = sub.add_parser("vendors", help="vendor API keys").add_subparsers(
        dest="vendors", required=True
    )
    vendor_add = vendors.add_parser("add", help="issue an API key for a vendor in a zone")
    vendor_add.add_argument("--zone", required=True)
    vendor_add.add_argument("--name", required=True, help="the vendor's name, e.g. acme-watch")
    vendor_add.set_defaults(func=_credential_command("vendor"))

    clinics = sub.add_parser("clinics", help="clinic API keys").add_subparsers(
        dest="clinics", required=True
    )
    clinic_add = clinics.add_parser("add", help="issue an API key for an enrolling site")
    clinic_add.add_argument("--zone", required=True)
    clinic_add.add_argument("--site", required=True, help="the site id, e.g. hainan-general")
    clinic_add.set_defaults(func=_credential_command("clinic"))

    clients = sub.add_parser(
        "clients", help="SMART Backend Services clients (clinics, research teams)"
    ).add_subparsers(dest="clients", required=True)
    client_add = clients.add_parser("add", help="register a client's public keys and scopes")
    client_add.add_argument("--zone", required=True)
    client_add.add_argument("--site", required=True, help="the site id, e.g. hainan-general")
    client_add.add_argument("--role", required=True, choices=ROLES)
    client_add.add_argument(
        "--jwks", required=True, type=Path, help="JSON file of the client's public keys (JWKS)"
    )
    client_add.add_argument(
        "--scopes", required=True, help='space-separated, e.g. "system/Observation.rs"'
    )
    client_add.set_defaults(func=cmd_clients_add)
    client_revoke = clients.add_parser("revoke", help="revoke a client and its access tokens")
    client_revoke.add_argument("--zone", required=True)
    client_revoke.add_argument("--client-id", required=True)
    client_revoke.set_defaults(func=cmd_clients_revoke)
    add_client_keygen_command(clients)  # and `token`: a client's side of SMART (cli_smart.py)
    add_token_command(sub)

    creds = sub.add_parser("credentials", help="API keys").add_subparsers(
        dest="credentials", required=True
    )
    revoke = creds.add_parser("revoke", help="revoke an API key")
    revoke.add_argument("--zone", required=True)
    revoke.add_argument("--key-id", required=True)
    revoke.set_defaults(func=cmd_credentials_revoke)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wearable-gateway",
        description="Wearable readings in, pseudonymised FHIR R4 Observations out, per zone.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (else GATEWAY_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve HTTP against the configured zone databases")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--grace", type=float, default=30.0, help="seconds to finish in-flight work")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending SQL migrations")
    migrate.add_argument("--zone", help="only this zone (default: every configured zone)")
    migrate.add_argument(
        "--grant-to",
        metavar="ROLE",
        help="then grant ROLE (not the tables' owner) what `serve` needs, and no more",
    )
    migrate.set_defaults(func=cmd_migrate)

    _add_keys_commands(sub)
    _add_storage_commands(sub)

    _add_credential_commands(sub)
    _add_audit_commands(sub)
    _add_study_commands(sub)
    add_lifecycle_commands(sub)  # subjects consent|erase, residency report (issue 6)

    demo = sub.add_parser("demo", help="run everything on an embedded PostgreSQL with demo data")
    demo.add_argument("--data-dir", type=Path, default=Path(".wearable-gateway-demo"))
    demo.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    demo.add_argument("--once", action="store_true", help="run the scenario, print, and exit")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GatewayError as error:
        print(f"wearable-gateway: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
