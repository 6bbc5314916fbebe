"""`wearable-gateway audit verify|export`: check a zone's hash-chained audit log, or write it as
FHIR AuditEvent NDJSON (services/audit.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import BinaryIO

from gateway.cli.zones import open_zones, settings_of
from gateway.errors import GatewayError
from gateway.services.audit import export_fhir, verify


def cmd_audit_verify(args: argparse.Namespace) -> int:
    settings = settings_of(args)

    async def run() -> int:
        async with open_zones(settings) as zones:
            report = await verify(zones.require(args.zone))
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
    settings = settings_of(args)

    async def run(out: BinaryIO) -> int:
        async with open_zones(settings) as zones:
            async for line in export_fhir(zones.require(args.zone)):
                out.write(line)
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


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
