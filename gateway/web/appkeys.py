"""Typed application state (aiohttp AppKeys); set by `gateway.app.create_app` only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.adapters.base import Adapter
from gateway.metrics import GatewayMetrics
from gateway.runtime.zones import ZoneDirectory
from gateway.services.exports.workers import ExportWorkers
from gateway.settings import Settings

if TYPE_CHECKING:  # gateway.web.ratelimit reads its AppKey from here
    from gateway.web.ratelimit import TokenBuckets

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", GatewayMetrics)
ZONES = web.AppKey("zones", ZoneDirectory)
ADAPTERS: web.AppKey[Mapping[str, Adapter]] = web.AppKey("adapters")
RATE_LIMITS: web.AppKey[TokenBuckets] = web.AppKey("rate_limits")
EXPORT_WORKERS = web.AppKey("export_workers", ExportWorkers)
