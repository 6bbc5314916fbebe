"""How the gateway listens: the one way `serve` and `demo` (and the tests that stand in for them)
bind their port and start the HTTP server, so that they cannot diverge.

`listen` binds first and returns the settings naming the address actually bound, so the base URL
every link and token audience uses is decided once, before the app is built (with
`--port N` or `--port 0` the gateway used to advertise 127.0.0.1:8080). `serving` then runs the
app on that socket.

aiohttp's `web.run_app(handler_args=...)` hands its handler options to a request-handler
constructor that does not take them; aiohttp then logs "Failed to create request handler with
custom kwargs" and drops them all, the head timeout and the access-log setting included.
Here every option goes to `web.AppRunner` by name, where aiohttp applies it to each connection.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.web import health
from gateway.web.appkeys import METRICS
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


def _cannot_listen(host: str, port: int, exc: OSError) -> ConfigurationError:
    reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
    return ConfigurationError(f"cannot listen on {host}:{port}: {reason}")


def listen(
    settings: Settings, *, host: str | None = None, port: int | None = None
) -> tuple[socket.socket, Settings]:
    """Bind the listening socket, then return settings whose address is the one bound.

    This is where the gateway's base URL is decided, once: the SMART configuration and token
    `aud`, paging links, `fullUrl`s and Bulk Data URLs all read `Settings.base_url` of the
    settings `create_app` gets, so they name the port actually listened on (`--port 0`
    included). An explicit `public_base_url` still wins. A port that cannot be bound is a
    one-line `ConfigurationError`, raised before any zone is opened.
    """
    host = host or settings.host
    port = settings.port if port is None else port
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
            0
        ][0]
        # SO_REUSEADDR (create_server's default on POSIX), as aiohttp's own sites do: a restart
        # right after a stop or crash may rebind the port.
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    sock.setblocking(False)
    return sock, settings.with_overrides(host=host, port=sock.getsockname()[1])


async def _start_site(runner: web.AppRunner, host: str, port: int) -> int:
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    return int(runner.addresses[0][1])  # one site per runner


@asynccontextmanager
async def serving(
    app: web.Application,
    settings: Settings,
    sock: socket.socket,
    *,
    shutdown_timeout: float = 30.0,
) -> AsyncIterator[Listening]:
    """Serve `app` on `sock` (bound by `listen`, whose settings built `app`) until the block
    ends; then stop accepting, give requests in flight `shutdown_timeout` seconds, and run the
    app's cleanup. A metrics port that cannot be bound is a one-line `ConfigurationError`."""
    host, bound = settings.host, int(sock.getsockname()[1])
    runners: list[web.AppRunner] = []
    try:
        runner = _runner(app, settings, shutdown_timeout)
        runners.append(runner)
        await runner.setup()  # the app's start-up: zone pools opened, keys checked
        await web.SockSite(runner, sock).start()
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
