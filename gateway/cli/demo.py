"""`wearable-gateway demo`: run everything on an embedded PostgreSQL (gateway/demo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo  # noqa: PLC0415 — keeps the embedded server out of `serve`

    return run_demo(data_dir=args.data_dir, port=args.port, once=args.once)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run everything on an embedded PostgreSQL with demo data")
    demo.add_argument("--data-dir", type=Path, default=Path(".wearable-gateway-demo"))
    demo.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    demo.add_argument("--once", action="store_true", help="run the scenario, print, and exit")
    demo.set_defaults(func=cmd_demo)
