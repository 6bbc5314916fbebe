"""`wearable-gateway vendors add`, `clinics add` and `credentials revoke`: API keys, one zone each
(services/credentials.py). A key is printed once and never stored in the clear."""

from __future__ import annotations

import argparse
import asyncio

from gateway.cli.zones import open_zones, settings_of
from gateway.services.credentials import add_credential, revoke_credential


def _credential_command(kind: str) -> object:
    def command(args: argparse.Namespace) -> int:
        settings = settings_of(args)

        async def run() -> int:
            owner = args.name if kind == "vendor" else args.site
            async with open_zones(settings) as zones:
                issued = await add_credential(zones, zone=args.zone, kind=kind, owner=owner)  # type: ignore[arg-type]
            print(f"{kind} API key for {owner} in zone {args.zone} (key id {issued.key_id}).")
            print("It is shown once and cannot be recovered; store it now:")
            print(issued.token)
            return 0

        return asyncio.run(run())

    return command


def cmd_credentials_revoke(args: argparse.Namespace) -> int:
    settings = settings_of(args)

    async def run() -> int:
        async with open_zones(settings) as zones:
            revoked = await revoke_credential(zones, zone=args.zone, key_id=args.key_id)
        print(f"key {args.key_id}: {'revoked' if revoked else 'not found or already revoked'}")
        return 0 if revoked else 1

    return asyncio.run(run())


def add_issue_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vendors` and `clinics`; `credentials` comes after `clients` in the help
    (add_commands)."""
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


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    creds = sub.add_parser("credentials", help="API keys").add_subparsers(
        dest="credentials", required=True
    )
    revoke = creds.add_parser("revoke", help="revoke an API key")
    revoke.add_argument("--zone", required=True)
    revoke.add_argument("--key-id", required=True)
    revoke.set_defaults(func=cmd_credentials_revoke)
