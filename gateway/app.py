"""The only composition root: builds the aiohttp application and everything it uses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from gateway.adapters import build_adapters
from gateway.errors import ConfigurationError
from gateway.logs import event
from gateway.metrics import GatewayMetrics
from gateway.privacy import ZoneKeyRing
from gateway.privacy.provider import FileKeyProvider, KeyProvider
from gateway.runtime.key_ring import Instance, KeyRingWatch
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.exports.workers import ExportWorkers
from gateway.services.key_rotation import check_keys_cover_data
from gateway.settings import Settings, ZoneSettings
from gateway.storage import WriterSettings, ZoneDatabase
from gateway.web.appkeys import ADAPTERS, EXPORT_WORKERS, METRICS, RATE_LIMITS, SETTINGS, ZONES
from gateway.web.middleware import observe
from gateway.web.ratelimit import TokenBuckets
from gateway.web.request_line import refuse_control_characters
from gateway.web.routes import setup_routes
from gateway.web.timeouts import deadline

log = logging.getLogger("gateway.app")


def key_provider(zone: ZoneSettings) -> KeyProvider:
    """Where the zone's keys come from. Only files today; a KMS or HSM provider would be chosen
    here from settings, and nothing that uses the rings would change (privacy/provider.py)."""
    if zone.key_file is None:
        raise ConfigurationError(f"zone {zone.name}: no key file is configured")
    return FileKeyProvider(zone.key_file)


def load_keyrings(settings: Settings) -> dict[str, ZoneKeyRing]:
    return {name: key_provider(zone).load(name) for name, zone in settings.zones.items()}


async def open_zones(
    settings: Settings,
    keyrings: Mapping[str, ZoneKeyRing],
    metrics: GatewayMetrics | None = None,
    *,
    providers: Mapping[str, KeyProvider] | None = None,
    instance: Instance | None = None,
) -> ZoneDirectory:
    """Connect to each zone and check its key ring against the data and against the ring the
    zone has published (a ring behind it does not open; one ahead of it is published). With
    `providers`, a zone's ring can later be reloaded from its key file; with `instance`, this
    process registers as a live gateway of each zone (runtime/key_ring.py)."""
    writer = WriterSettings(
        max_batch_rows=settings.write_batch_rows,
        max_wait_seconds=settings.write_max_wait_seconds,
        max_queued_rows=settings.write_queue_rows,
        concurrent_batches=settings.write_concurrency,
    )
    opened: dict[str, Zone] = {}
    try:
        for name, zone_settings in settings.zones.items():
            db = await ZoneDatabase.connect(
                name,
                zone_settings.database_url,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                command_timeout=settings.db_timeout_seconds,
                writer_settings=writer,
                on_batch=metrics.batch_size.labels(name).observe if metrics else None,
                on_transaction=metrics.transaction_ended if metrics else None,
            )
            try:
                # Before serving: a ring lacking a key version the data needs must not start.
                await check_keys_cover_data(db, keyrings[name])
                zone = Zone.build(
                    db,
                    keyrings[name],
                    cache_seconds=settings.lookup_cache_seconds,
                    provider=(providers or {}).get(name),
                    instance=instance,
                )
                await zone.keys.start()
            except BaseException:
                await db.close()
                raise
            opened[name] = zone
    except BaseException:
        for zone in opened.values():
            await zone.db.close()
        raise
    return ZoneDirectory(opened)


def create_app(
    settings: Settings, *, keyrings: Mapping[str, ZoneKeyRing] | None = None
) -> web.Application:
    if settings.port == 0 and not settings.public_base_url:
        # Port 0 is only a request for some free port: the URL clients must use is not known
        # until `listen` has bound one.
        raise ConfigurationError("the base URL is unknown before the port is bound (listen())")
    # Keys are read before anything listens: a gateway without its zone keys does not start.
    rings = dict(keyrings) if keyrings is not None else load_keyrings(settings)
    # Rings read from key files are reloaded from them when the `keys` CLI rotates.
    providers = (
        {name: key_provider(zone) for name, zone in settings.zones.items()}
        if keyrings is None
        else {}
    )
    missing = set(settings.zones) - set(rings)
    if missing:
        raise ConfigurationError(f"no key ring for zones {', '.join(sorted(missing))}")

    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[observe, deadline, refuse_control_characters],
    )
    app[SETTINGS] = settings
    metrics = GatewayMetrics()
    app[METRICS] = metrics
    app[ADAPTERS] = build_adapters(max_readings=settings.max_readings)
    app[RATE_LIMITS] = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)

    async def zones_ctx(app: web.Application) -> AsyncIterator[None]:
        instance = Instance.this_process(settings.key_lease_seconds)
        zones = await open_zones(settings, rings, metrics, providers=providers, instance=instance)
        app[ZONES] = zones
        watch = KeyRingWatch(
            {name: zone.keys for name, zone in zones.items()},
            {name: zone.db for name, zone in zones.items()},
            check_seconds=settings.key_check_seconds,
        )
        watch.start()
        metrics.watch_pools(
            lambda: {
                name: (u.size, u.idle, u.max_size, u.queued_rows)
                for name, u in ((name, zone.db.usage()) for name, zone in zones.items())
            }
        )
        event(log, "app.started", zones=sorted(zones))
        yield
        await watch.stop()  # also removes this process's lease rows
        for zone in zones.values():
            await zone.db.close()
        event(log, "app.stopped")

    async def exports_ctx(app: web.Application) -> AsyncIterator[None]:
        # Research export jobs run in the background, one task per served zone; stopped before
        # the zones close (cleanup contexts unwind in reverse), handing running jobs back.
        workers = ExportWorkers(app[ZONES], on_job_end=metrics.export_ended)
        workers.start()
        app[EXPORT_WORKERS] = workers
        yield
        await workers.stop()

    app.cleanup_ctx.append(zones_ctx)
    app.cleanup_ctx.append(exports_ctx)
    setup_routes(app)
    return app
