"""The whole URL map."""

from __future__ import annotations

from aiohttp import web

from gateway.web import health, ingest, subjects


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_post("/v1/subjects", subjects.post_subject)
    app.router.add_post("/v1/ingest/{format}", ingest.post_readings)
