"""Prometheus metrics, one registry per application (no module-level singletons). Names follow
`gateway_<area>_<what>_<unit>`; labels are low-cardinality (zone, format, outcome, code, route)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# zone -> (pool size, idle connections, pool maximum, rows queued for the group-commit writer)
PoolUsageSource = Callable[[], Mapping[str, tuple[int, int, int, int]]]


class _PoolCollector(Collector):
    def __init__(self, source: PoolUsageSource) -> None:
        self._source = source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        in_use = GaugeMetricFamily(
            "gateway_db_pool_connections",
            "Database pool connections by state",
            labels=["zone", "state"],
        )
        queued = GaugeMetricFamily(
            "gateway_storage_queued_rows",
            "Rows waiting for the group-commit writer",
            labels=["zone"],
        )
        for zone, (size, idle, max_size, waiting) in sorted(self._source().items()):
            in_use.add_metric([zone, "in_use"], size - idle)
            in_use.add_metric([zone, "idle"], idle)
            in_use.add_metric([zone, "max"], max_size)
            queued.add_metric([zone], waiting)
        yield in_use
        yield queued


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.readings = Counter(
            "gateway_ingest_readings",
            "Readings received, by outcome",
            ["format", "zone", "outcome"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "gateway_ingest_rejections",
            "Rejected readings, by stable rejection code",
            ["format", "zone", "code"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "gateway_storage_batch_rows",
            "Observations written per database batch (group commit)",
            ["zone"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        # Every database operation by its static name (gateway/storage/transactions.py), as
        # synapse's `synapse_storage_transaction_time`: a slow or failing one shows up by name.
        # Seconds from the call until its connection was handed back, waiting for one included.
        self.transaction_duration = Histogram(
            "gateway_db_transaction_duration_seconds",
            "Database operations (transactions) by name: time from the call to the connection's "
            "release",
            ["zone", "name"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # outcome error: the operation raised or was cancelled; its transaction rolled back.
        self.transaction_failures = Counter(
            "gateway_db_transactions_failed",
            "Database operations (transactions) that raised or were cancelled, by name",
            ["zone", "name"],
            registry=self.registry,
        )
        self._transaction_durations: dict[tuple[str, str], Histogram] = {}
        self.enrolments = Counter(
            "gateway_subjects_enrolments",
            "Subject enrolments, by outcome",
            ["zone", "outcome"],
            registry=self.registry,
        )
        # outcome: recorded | duplicate | unknown_subject | invalid.
        self.notifications = Counter(
            "gateway_notifications",
            "Vendor data-update notifications received, by outcome",
            ["vendor_format", "zone", "outcome"],
            registry=self.registry,
        )

        # reason: rate-limit (a credential's token bucket is empty). Requests refused before any
        # work, so they are visible apart from the request-duration histogram's 429s.
        self.throttled = Counter(
            "gateway_http_throttled",
            "Requests refused to protect the gateway, by reason",
            ["zone", "reason"],
            registry=self.registry,
        )

        # Research export jobs (gateway/services/exports/workers.py, JobOutcome): one count per run
        # of a job; resources by type for completed ones.
        self.export_jobs = Counter(
            "gateway_export_jobs",
            "Research export job runs that ended, by outcome",
            ["zone", "outcome"],
            registry=self.registry,
        )
        self.export_resources = Counter(
            "gateway_export_resources",
            "Resources released in research extracts, by resource type",
            ["zone", "type"],
            registry=self.registry,
        )

    def transaction_ended(self, zone: str, name: str, seconds: float, outcome: str) -> None:
        """One named database operation of a zone ended (storage/pool.py `TransactionObserver`).
        Runs for every statement: the label children are looked up once per (zone, name)."""
        key = (zone, name)
        duration = self._transaction_durations.get(key)
        if duration is None:
            duration = self._transaction_durations[key] = self.transaction_duration.labels(
                zone, name
            )
        duration.observe(seconds)
        if outcome != "ok":
            self.transaction_failures.labels(zone, name).inc()

    def export_ended(self, zone: str, outcome: str, released: Mapping[str, int]) -> None:
        self.export_jobs.labels(zone, outcome).inc()
        for resource_type, count in released.items():
            self.export_resources.labels(zone, resource_type).inc(count)

    def watch_pools(self, source: PoolUsageSource) -> None:
        self.registry.register(_PoolCollector(source))
