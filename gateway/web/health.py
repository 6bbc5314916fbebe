from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.web.appkeys import METRICS, SETTINGS, ZONES
from gateway.web.responses import json_response

# How long /readyz waits for a zone's database, everything included (a connection, `SELECT 1`,
# handing it back); all zones are probed at once, so /readyz answers within this (or within
# `db_timeout_seconds` if that is shorter) whatever the databases do. Kubernetes' default probe
# timeout is 1 s.
READINESS_PROBE_SECONDS = 1.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    zones = request.app[ZONES]
    limit = min(READINESS_PROBE_SECONDS, request.app[SETTINGS].db_timeout_seconds)
    answers = await asyncio.gather(*(zone.db.ping(limit) for zone in zones.values()))
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
