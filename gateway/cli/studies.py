"""`wearable-gateway studies add`: register a research study (a FHIR Group for Bulk Data export)
with its de-identification settings and transfer mechanism (services/studies.py)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime

from gateway.cli.zones import open_zones, settings_of
from gateway.errors import GatewayError
from gateway.residency.export_policy import TransferMechanism
from gateway.services.studies import NewStudy, add_study


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
    settings = settings_of(args)
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
        async with open_zones(settings) as zones:
            await add_study(zones, zone=args.zone, study=study, today=datetime.now(UTC).date())
        print(f"study {args.id} registered in zone {args.zone}.")
        print(f"Researchers export it with GET /fhir/Group/{args.id}/$export.")
        return 0

    return asyncio.run(run())


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
