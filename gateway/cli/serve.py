"""`wearable-gateway serve`: HTTP against the configured zone databases, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc

from aiohttp import web

from gateway.app import create_app
from gateway.cli.zones import settings_of
from gateway.logs import configure_logging
from gateway.web.server import listen, run_until_signalled, serving


def _use_uvloop() -> bool:
    """uvloop (the `speed` extra) makes the event loop itself cheaper; asyncio otherwise."""
    try:
        import uvloop  # noqa: PLC0415 — optional
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_of(args)
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


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="serve HTTP against the configured zone databases")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--grace", type=float, default=30.0, help="seconds to finish in-flight work")
    serve.set_defaults(func=cmd_serve)
