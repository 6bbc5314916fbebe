"""`wearable-gateway subjects consent|erase` and `wearable-gateway residency report`.
Operators act as the `operator` role, for any site."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from gateway.cli.zones import open_zones, settings_of
from gateway.runtime.zones import ZoneDirectory
from gateway.services.credentials import OPERATOR
from gateway.services.erase import Erasure, ErasureReason, erase
from gateway.services.subjects import change_consent

_YES_NO = {"yes": True, "no": False}


def _erasure_reason(value: str) -> ErasureReason:
    """argparse's own `choices` would echo a wrong value back, and a free-text reason may name
    the person: the message lists the codes only."""
    try:
        return ErasureReason(value)
    except ValueError:
        codes = ", ".join(r.value for r in ErasureReason)
        raise argparse.ArgumentTypeError(f"not a reason code; give one of: {codes}") from None


def cmd_subjects_consent(args: argparse.Namespace) -> int:
    research = None if args.research is None else _YES_NO[args.research]
    cross_border = None if args.cross_border is None else _YES_NO[args.cross_border]
    settings = settings_of(args)

    async def run() -> None:
        async with open_zones(settings) as zones:
            changed = await change_consent(
                zones,
                zone=args.zone,
                site=None,
                actor=OPERATOR,
                pseudonym=args.pseudonym,
                research=research,
                cross_border=cross_border,
            )
        print(
            f"subject {args.pseudonym} in zone {args.zone}: research consent "
            f"{'yes' if changed.research else 'no'}, cross-border consent "
            f"{'yes' if changed.cross_border else 'no'} (recorded {changed.changed_at.isoformat()})"
        )

    asyncio.run(run())
    return 0


def cmd_subjects_erase(args: argparse.Namespace) -> int:
    settings = settings_of(args)

    async def run() -> Erasure:
        async with open_zones(settings) as zones:
            return await erase(
                zones,
                zone=args.zone,
                site=None,
                actor=OPERATOR,
                pseudonym=args.pseudonym,
                reason=args.reason,
            )

    erased = asyncio.run(run())
    rows = ", ".join(f"{table} {count}" for table, count in sorted(erased.removed.items()))
    state = "already erased" if erased.already_erased else "erased"
    print(f"subject {args.pseudonym} in zone {args.zone}: {state}; rows deleted: {rows or 'none'}")
    return 0


def cmd_residency_report(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    now = datetime.now(UTC)
    since = datetime(now.year, 1, 1, tzinfo=UTC)
    year_start = since.date().isoformat()

    async def report(zones: ZoneDirectory) -> int:
        names = [zones.require(args.zone).name] if args.zone else sorted(zones)
        offending = 0
        for name in names:
            zone = zones[name]
            counts = await zone.db.residency.counts(since)
            foreign = await zone.db.residency.foreign_rows(name)
            print(f"zone {name}")
            print(f"  subjects: {counts.subjects}")
            print(f"  readings: {counts.readings}")
            print(f"  research extracts released since {year_start}: {counts.extracts}")
            print(f"  export requests refused since {year_start}: {counts.refused_exports}")
            print(
                f"  cross-border releases since {year_start}: "
                f"{sum(r.count for r in counts.cross_border)}"
            )
            for release in counts.cross_border:
                print(f"    {release.country} {release.mechanism}: {release.count}")
            if foreign:
                offending += sum(foreign.values())
                listed = ", ".join(f"{table} {count}" for table, count in sorted(foreign.items()))
                print(f"  residency check: FAILED, rows of no subject of this zone: {listed}")
            else:
                print("  residency check: ok, every row belongs to a subject of this zone")
        return 1 if offending else 0

    async def run() -> int:
        async with open_zones(settings) as zones:
            return await report(zones)

    return asyncio.run(run())


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subjects = sub.add_parser("subjects", help="consent changes and erasure").add_subparsers(
        dest="subjects", required=True
    )
    consent = subjects.add_parser(
        "consent", help="change a subject's research/cross-border consent"
    )
    consent.add_argument("--zone", required=True)
    consent.add_argument("--pseudonym", required=True)
    consent.add_argument("--research", choices=sorted(_YES_NO))
    consent.add_argument("--cross-border", choices=sorted(_YES_NO))
    consent.set_defaults(func=cmd_subjects_consent)
    erase_cmd = subjects.add_parser(
        "erase", help="erase a subject: destroy its data key, delete its rows (idempotent)"
    )
    erase_cmd.add_argument("--zone", required=True)
    erase_cmd.add_argument("--pseudonym", required=True)
    erase_cmd.add_argument(
        "--reason",
        required=True,
        type=_erasure_reason,
        metavar="{" + ",".join(r.value for r in ErasureReason) + "}",
    )
    erase_cmd.set_defaults(func=cmd_subjects_erase)

    residency = sub.add_parser("residency", help="where data lives").add_subparsers(
        dest="residency", required=True
    )
    report = residency.add_parser(
        "report",
        help="per zone: subjects, readings, exports and releases this year; exit 1 if any row "
        "belongs to no subject of its zone",
    )
    report.add_argument("--zone", help="only this zone (default: every configured zone)")
    report.set_defaults(func=cmd_residency_report)
