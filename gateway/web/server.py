"""How the gateway listens: the one way `serve` and `demo` (and the tests that stand in for them)
start the HTTP server, so that they cannot diverge.

aiohttp's `web.run_app(handler_args=...)` hands its handler options to a request-handler
constructor that does not take them; aiohttp then logs "Failed to create request handler with
custom kwargs" and drops them all, the head timeout and the access-log setting included (issue 11).
Here every option goes to `web.AppRunner` by name, where aiohttp applies it to each connection.
"""

from __future__ import annotations

import asyncio
import errno
import signal
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.web import health
from gateway.web.keys import METRICS
from gateway.web.timeouts import HANDLER_ARGS

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class Listening:
    """Where the server is reachable: the public port, and the metrics port when `/metrics` has a
    listener of its own (settings.metrics_port), else None."""

    host: str
    port: int
    metrics_port: int | None


def metrics_app(app: web.Application) -> web.Application:
    """`/metrics` alone, over the same registry as `app`: for a listener that only Prometheus
    reaches (deploy/README.md, "Metrics and alerts")."""
    scrape = web.Application()
    scrape[METRICS] = app[METRICS]
    scrape.router.add_get("/metrics", health.metrics)
    return scrape


def _runner(app: web.Application, settings: Settings, shutdown_timeout: float) -> web.AppRunner:
    return web.AppRunner(
        app,
        access_log=None,  # requests are logged (ids and codes only) by gateway/web/middleware.py
        # aiohttp's keep-alive timer also runs from the moment a connection opens until its first
        # request head is complete: it is the head timeout.
        keepalive_timeout=settings.header_timeout_seconds,
        shutdown_timeout=shutdown_timeout,
        handle_signals=False,  # run_until_signalled handles them, for serve and demo alike
        **HANDLER_ARGS,
    )


async def _start_site(runner: web.AppRunner, host: str, port: int) -> int:
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None
    return int(runner.addresses[0][1])  # one site per runner


@asynccontextmanager
async def serving(
    app: web.Application,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    shutdown_timeout: float = 30.0,
) -> AsyncIterator[Listening]:
    """Serve `app` on `host`:`port` (default: the settings'; port 0 picks a free one) until the
    block ends; then stop accepting, give requests in flight `shutdown_timeout` seconds, and run
    the app's cleanup. A port that cannot be bound is a one-line `ConfigurationError`."""
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    runners: list[web.AppRunner] = []
    try:
        runner = _runner(app, settings, shutdown_timeout)
        runners.append(runner)
        await runner.setup()  # the app's start-up: zone pools opened, keys checked
        bound = await _start_site(runner, host, port)
        metrics_port = None
        if settings.metrics_port:
            scrape = _runner(metrics_app(app), settings, shutdown_timeout)
            runners.append(scrape)
            await scrape.setup()
            metrics_port = await _start_site(
                scrape, settings.metrics_host or host, settings.metrics_port
            )
        yield Listening(host, bound, metrics_port)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def run_until_signalled(main: Coroutine[Any, Any, T]) -> T | None:
    """Run `main` in a new event loop until it returns or SIGINT or SIGTERM arrives. A signal
    cancels it, so its cleanup (`async with serving`, `finally`) runs as on Ctrl-C: requests in
    flight drain, pools close, the demo's embedded PostgreSQL stops. None when signalled."""

    async def guarded() -> T | None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 — always inside asyncio.run
        signalled: list[signal.Signals] = []

        def stop(sig: signal.Signals) -> None:
            # Only the first: a repeated SIGTERM must not cut the graceful shutdown it started.
            if not signalled:
                task.cancel()
            signalled.append(sig)

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await main
        except asyncio.CancelledError:
            if not signalled:
                raise
            return None
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    return asyncio.run(guarded())
