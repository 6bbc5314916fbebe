from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.web.keys import METRICS, ZONES
from gateway.web.responses import json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    zones = request.app[ZONES]
    answers = await asyncio.gather(*(zone.db.ping() for zone in zones.values()))
    states = {
        name: "ready" if ok else "unavailable" for name, ok in zip(zones, answers, strict=True)
    }
    ready = all(answers)
    return json_response(
        {"status": "ready" if ready else "unready", "zones": states}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
