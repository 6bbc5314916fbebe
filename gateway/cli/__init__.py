"""`wearable-gateway` commands, one module per command group: serve, migrate, keys, storage,
vendors/clinics/credentials (credentials.py), clients and token (clients.py), audit, studies,
subjects and residency (subjects.py), demo. What they open, and close, is in zones.py.

`main` is the entry point of the `wearable-gateway` script (pyproject.toml) and of
`python -m gateway`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.cli import (
    audit,
    clients,
    credentials,
    demo,
    keys,
    migrate,
    serve,
    storage,
    studies,
    subjects,
)
from gateway.errors import GatewayError

# In the order `--help` lists them.
_COMMAND_GROUPS = (
    serve.add_commands,
    migrate.add_commands,
    keys.add_commands,
    storage.add_commands,
    credentials.add_issue_commands,  # vendors, clinics
    clients.add_commands,  # clients, token
    credentials.add_commands,  # credentials
    audit.add_commands,
    studies.add_commands,
    subjects.add_commands,  # subjects, residency
    demo.add_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wearable-gateway",
        description="Wearable readings in, pseudonymised FHIR R4 Observations out, per zone.",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (else GATEWAY_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_commands in _COMMAND_GROUPS:
        add_commands(sub)
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
