"""The request-rate baseline: a bare aiohttp handler that parses the same JSON body with orjson
and answers 200, with nothing of the gateway in between (no auth, no database).

    python -m bench.bare_server      # binds 127.0.0.1 on a free port and prints it on stdout

Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal

import orjson
from aiohttp import web

_OK = b'{"ok":true}'


async def _handle(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=_OK, content_type="application/json")


async def _serve() -> None:
    app = web.Application()
    app.router.add_post("/v1/ingest/{format}", _handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_serve())
