"""The FHIR search benchmark: Observation search latency at scale, over HTTP, with the
query plans of the SQL the gateway runs.

    python -m bench.search [--rows 1000000] [--subjects 10000] [--quick] [--database-url URL]
                           [--out results.json] [--cluster]

Without `--database-url` it starts an embedded PostgreSQL (`pgserver`) in a temporary folder;
with it, it creates a scratch database `wg_bench_…` on that server (the role needs CREATEDB) and
drops it at the end. Then:

1. starts the gateway (`python -m gateway serve`, zone `cn`) on 127.0.0.1 and enrols the subjects
   through `POST /v1/subjects`;
2. builds `--rows` Observations with the gateway's own steps (native adapter → normalise →
   `Pseudonymiser` → `build_observation`, as `bench.ingest` builds its `COPY` baseline) in worker
   processes, spread over the subjects and over ~2 years (~24 monthly partitions, created first),
   heart rate three readings in five, SpO2 and respiratory rate one each, and loads them with
   `COPY` over two connections; then `VACUUM ANALYZE` (what autovacuum does to a table at rest:
   statistics for the planner and the visibility map that index-only scans need); with
   `--cluster`, then `wearable-gateway storage cluster`'s own step (every month that ended a week
   ago rewritten in subject order, as the nightly maintenance job does);
3. registers a SMART Backend Services clinic client with a real ES384 key, gets a token through
   `POST /auth/token`, and measures, one request at a time, for random patients:
   `Observation?patient=X&code=http://loinc.org|<heart rate>&date=ge<Y>&_sort=-date&_count=50`
   (first page, then every later page by its `next` link), `_summary=count` of the same search,
   and `_summary=count` of all of a patient's Observations → p50/p99 of each;
4. runs `EXPLAIN (ANALYZE, BUFFERS)` of the very SQL the gateway's `FhirSearchStore` sends for a
   first page, a later page and the counts (captured from the store, same parameters) and records
   the plan shape: which scans on which indexes, buffers, execution time.

Every process it starts is stopped before it returns (also on errors and Ctrl-C); traffic stays
on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
import psutil

from bench.ingest import (
    COPY_COLUMNS,
    MIB,
    ZONE,
    ZONE_TZ,
    Processes,
    RssMonitor,
    build_rows,
    describe_run,
    free_port,
    gateway_environment,
    issue_keys,
    postgres_server,
    register_smart_client,
    run_benchmark,
    scratch_database,
    server_facts,
    start_gateway,
)
from bench.load import MRN_SYSTEM, SITE, latency_summary, subject_value
from gateway.fhir.search import parse_search
from gateway.privacy import ZoneKeyRing
from gateway.services.maintenance import cluster_settled_partitions
from gateway.storage import TransactionName, ZoneDatabase
from gateway.storage.database import admin_connection
from gateway.storage.fhir_search import LOINC, FhirSearchStore
from gateway.storage.maintenance import open_maintenance

TARGET_P99_MS = 20.0
SPAN = timedelta(days=730)  # ~2 years of readings: ~24 monthly partitions
# Reading type by (reading number + subject) % 5: heart rate is the most frequent wearable reading.
TYPES = ("heart-rate", "heart-rate", "heart-rate", "oxygen-saturation", "respiratory-rate")
VALUES = {"heart-rate": (55, 40), "oxygen-saturation": (94, 6), "respiratory-rate": (12, 8)}
UNITS = {"heart-rate": "/min", "oxygen-saturation": "%", "respiratory-rate": "/min"}
VENDOR_PHASE = "SEARCH"
CHUNK_READINGS = 25_000
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool
    database_url: str | None
    out: Path | None
    rows: int
    subjects: int
    patients: int  # patients measured
    max_pages: int  # later pages followed per patient, at most
    warmup: int
    cluster: bool = False
    loaders: int = 2
    enrol_concurrency: int = 16


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.search", description="FHIR search benchmark of wearable-gateway."
    )
    parser.add_argument("--quick", action="store_true", help="small run (CI): 50,000 rows")
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: embedded)")
    parser.add_argument("--out", type=Path, help="write every figure and plan as JSON here")
    parser.add_argument("--rows", type=int, help="Observations stored (1,000,000; quick 50,000)")
    parser.add_argument("--subjects", type=int, help="subjects (10,000; quick 500)")
    parser.add_argument("--patients", type=int, help="patients searched (300; quick 30)")
    parser.add_argument("--max-pages", type=int, default=30, help="later pages per patient (30)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="cluster settled partitions by subject after loading (storage cluster)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Options(
        quick=quick,
        database_url=args.database_url,
        out=args.out,
        rows=args.rows or (50_000 if quick else 1_000_000),
        subjects=args.subjects or (500 if quick else 10_000),
        patients=args.patients or (30 if quick else 300),
        max_pages=args.max_pages,
        warmup=10 if quick else 50,
        cluster=bool(args.cluster),
    )


# --- the data ------------------------------------------------------------------------------------


def search_reading(number: int, subject: int, per_subject: int, end: datetime) -> dict[str, Any]:
    """Reading `number` (0 = newest) of `subject`: evenly spread back over SPAN, each subject a
    few seconds apart from the others, so no two readings share a dedup key."""
    step = SPAN.total_seconds() / per_subject
    moment = end - timedelta(seconds=int(number * step) + subject % 600)
    kind = TYPES[(number + subject) % len(TYPES)]
    low, width = VALUES[kind]
    return {
        "subject": {"system": MRN_SYSTEM, "value": subject_value(subject)},
        "device": {
            "id": f"{VENDOR_PHASE}-{subject:05d}",
            "model": "Bench Watch",
            "manufacturer": "Bench",
        },
        "type": kind,
        "value": low + (number * 7919 + subject) % width,
        "unit": UNITS[kind],
        "time": moment.isoformat(),
    }


def build_chunk(
    key_file: str,
    *,
    pseudonyms: dict[str, str],
    subjects: int,
    per_subject: int,
    numbers: tuple[int, int],
    end: datetime,
) -> list[tuple[Any, ...]]:
    """COPY records of readings `numbers` of every subject (run in a worker process)."""
    keyring = ZoneKeyRing.load(Path(key_file), expected_zone=ZONE)
    readings = [
        search_reading(n, s, per_subject, end) for n in range(*numbers) for s in range(subjects)
    ]
    rows = build_rows(readings, pseudonyms, keyring, 500)
    return [
        (
            r.subject,
            r.id,
            r.code,
            r.device,
            r.effective_start,
            r.effective_end,
            r.issued,
            r.source_format,
            r.resource,
        )
        for r in rows
    ]


async def enrol(base: str, clinic_token: str, options: Options) -> dict[str, str]:
    """Enrol the subjects through the API; identifier value → pseudonym."""
    headers = {"Authorization": f"Bearer {clinic_token}"}
    pseudonyms: dict[str, str] = {}
    gate = asyncio.Semaphore(options.enrol_concurrency)

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        body = {
            "zone": ZONE,
            "site": SITE,
            "identifiers": [{"system": MRN_SYSTEM, "value": subject_value(n)}],
            "birth_date": "1970-01-01",
            "sex": "female",
            "consent": {"research": True, "cross_border": False},
        }
        async with gate, http.post(f"{base}/v1/subjects", json=body, headers=headers) as response:
            if response.status != 201:
                raise RuntimeError(f"enrolment answered HTTP {response.status}")
            pseudonyms[subject_value(n)] = (await response.json())["pseudonym"]

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(one(http, n) for n in range(options.subjects)))
    return pseudonyms


async def binary_jsonb(conn: Any) -> None:
    """The gateway's jsonb codec (storage/database.py): binary jsonb is a version byte and the
    JSON text, so resources travel as the bytes the gateway builds and serves."""
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: b"\x01" + value,
        decoder=lambda data: data[1:],
        format="binary",
    )


async def load_rows(
    dsn: str, key_file: Path, pseudonyms: dict[str, str], options: Options, end: datetime
) -> dict[str, Any]:
    """Build the rows in worker processes and COPY them over `loaders` connections."""
    per_subject = max(1, options.rows // options.subjects)
    db = await ZoneDatabase.connect(ZONE, dsn, max_size=1)
    try:
        months = [end - timedelta(days=d) for d in range(0, SPAN.days + 32, 10)]
        await db.observations.ensure_partitions(months)
    finally:
        await db.close()
    numbers_per_chunk = max(1, CHUNK_READINGS // options.subjects)
    chunks = [
        (start, min(per_subject, start + numbers_per_chunk))
        for start in range(0, per_subject, numbers_per_chunk)
    ]
    queue: asyncio.Queue[list[tuple[Any, ...]] | None] = asyncio.Queue(maxsize=options.loaders)
    loop = asyncio.get_running_loop()
    copied = 0
    started = time.perf_counter()

    async def copier() -> None:
        nonlocal copied
        async with admin_connection(dsn) as conn:
            await binary_jsonb(conn)
            while (records := await queue.get()) is not None:
                await conn.copy_records_to_table(
                    "observations", records=records, columns=COPY_COLUMNS
                )
                copied += len(records)

    copiers = [asyncio.create_task(copier()) for _ in range(options.loaders)]
    build = partial(
        build_chunk,
        str(key_file),
        pseudonyms=pseudonyms,
        subjects=options.subjects,
        per_subject=per_subject,
        end=end,
    )
    with ProcessPoolExecutor(max_workers=2) as pool:
        try:
            pending = [
                loop.run_in_executor(pool, partial(build, numbers=chunk)) for chunk in chunks[:3]
            ]
            for index in range(len(chunks)):
                records = await pending.pop(0)
                if index + 3 < len(chunks):
                    pending.append(
                        loop.run_in_executor(pool, partial(build, numbers=chunks[index + 3]))
                    )
                await queue.put(records)
                if index % 20 == 0:
                    elapsed = time.perf_counter() - started
                    print(f"  loaded {copied:,} rows in {elapsed:.0f} s", file=sys.stderr)
            for _ in copiers:
                await queue.put(None)
            await asyncio.gather(*copiers)
        finally:
            for task in copiers:
                task.cancel()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    async with admin_connection(dsn) as conn:
        await conn.execute("VACUUM (ANALYZE) observations")
        stored = int(await conn.fetchval("SELECT count(*) FROM observations"))
        partitions = int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'observations'::regclass"
            )
        )
        size = await observations_bytes(conn)
    return {
        "rows": stored,
        "per_subject": per_subject,
        "partitions": partitions,
        "total_size_mib": round(size / MIB, 1),
        "load_seconds": round(loaded, 1),
        "load_rows_per_s": round(copied / loaded, 1),
        "vacuum_analyze_seconds": round(time.perf_counter() - started, 1),
    }


async def observations_bytes(conn: Any) -> int:
    """Table and indexes of every Observation partition, in bytes."""
    return int(
        await conn.fetchval(
            "SELECT sum(pg_total_relation_size(inhrelid)) "
            "FROM pg_inherits WHERE inhparent = 'observations'::regclass"
        )
    )


def page_cache_gib() -> float:
    """The machine's page cache (file pages in memory): how much of the data can be cached."""
    return round(float(getattr(psutil.virtual_memory(), "cached", 0.0)) / 1024**3, 1)


async def cluster_partitions(dsn: str) -> dict[str, Any]:
    """What `wearable-gateway storage cluster` does, timed: settled months in subject order."""
    started = time.perf_counter()
    async with open_maintenance(dsn) as maintenance:
        done = await cluster_settled_partitions(maintenance, now=datetime.now(UTC))
    async with admin_connection(dsn) as conn:
        size = await observations_bytes(conn)
    return {
        "partitions": len(done),
        "outcomes": dict(Counter(str(r.outcome) for r in done)),
        "seconds": round(time.perf_counter() - started, 1),
        "total_size_mib_after": round(size / MIB, 1),
    }


# --- the searches --------------------------------------------------------------------------------


def search_parameters(pseudonym: str, code: str, since: str) -> list[tuple[str, str]]:
    return [
        ("patient", pseudonym),
        ("code", f"{LOINC}|{code}"),
        ("date", f"ge{since}"),
        ("_sort", "-date"),
        ("_count", "50"),
    ]


async def timed_get(
    http: aiohttp.ClientSession, url: str, token: str, params: Sequence[tuple[str, str]] | None
) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    async with http.get(
        url, params=params, headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}
    ) as response:
        body = await response.read()
        status = response.status
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"search answered HTTP {status}: {body[:300]!r}")
    bundle: dict[str, Any] = orjson.loads(body)
    return elapsed, bundle


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return str(link["url"])
    return None


async def measure_searches(
    base: str,
    *,
    smart: Any,
    pseudonyms: list[str],
    code: str,
    since: str,
    options: Options,
    monitor: RssMonitor,
    seed: int = 4,
) -> dict[str, Any]:
    first: list[float] = []
    later: list[float] = []
    count_query: list[float] = []
    count_patient: list[float] = []
    pages: Counter[int] = Counter()
    entries = 0
    url = f"{base}/fhir/Observation"
    rng = random.Random(seed)
    chosen = [rng.choice(pseudonyms) for _ in range(options.patients + options.warmup)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for pseudonym in chosen[: options.warmup]:  # connections, caches, prepared statements
            token = await smart.access_token(http, base)
            await timed_get(http, url, token, search_parameters(pseudonym, code, since))
        # The floor under every search: an authorised request that reads nothing and writes no
        # audit event.
        metadata: list[float] = []
        for _ in range(options.patients):
            elapsed, _bundle = await timed_get(http, f"{base}/fhir/metadata", token, None)
            metadata.append(elapsed)
        cpu_before, wall_before = monitor.cpu_seconds(), time.monotonic()
        for pseudonym in chosen[options.warmup :]:
            token = await smart.access_token(http, base)
            params = search_parameters(pseudonym, code, since)
            elapsed, bundle = await timed_get(http, url, token, params)
            first.append(elapsed)
            entries += len(bundle.get("entry", []))
            page = 1
            link = next_link(bundle)
            while link is not None and page <= options.max_pages:
                elapsed, bundle = await timed_get(http, link, token, None)
                later.append(elapsed)
                entries += len(bundle.get("entry", []))
                page += 1
                link = next_link(bundle)
            pages[page] += 1
            elapsed, bundle = await timed_get(
                http, url, token, [*params[:3], ("_summary", "count")]
            )
            count_query.append(elapsed)
            elapsed, bundle = await timed_get(
                http, url, token, [("patient", pseudonym), ("_summary", "count")]
            )
            count_patient.append(elapsed)
        wall = time.monotonic() - wall_before
        cpu = monitor.cpu_seconds() - cpu_before
    return {
        "first_page_ms": latency_summary(first),
        "later_pages_ms": latency_summary(later),
        "summary_count_query_ms": latency_summary(count_query),
        "summary_count_patient_ms": latency_summary(count_patient),
        "metadata_ms": latency_summary(metadata),
        "pages_per_patient": {str(k): v for k, v in sorted(pages.items())},
        "entries_returned": entries,
        "gateway_cpu_pct": round(cpu / wall * 100, 1),
        "requests": len(first) + len(later) + len(count_query) + len(count_patient),
    }


# --- the plans -----------------------------------------------------------------------------------


class RecordingPool:
    """Stands in for the store's pool: records the SQL and parameters the gateway's own
    `FhirSearchStore` sends (the operation's name aside), and runs them on a real connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, name: TransactionName, sql: str, *args: Any) -> Any:
        self.statements.append((sql, args))
        return await self._conn.fetch(sql, *args)

    async def fetchval(self, name: TransactionName, sql: str, *args: Any) -> Any:
        self.statements.append((sql, args))
        return await self._conn.fetchval(sql, *args)


_NODE = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Index Scan|Bitmap Heap Scan|Seq Scan|Incremental Sort|"
    r"Sort|Merge Append|"
    r"Append|Nested Loop|Hash Join|Limit|Aggregate)(?: Backward)?(?: using (\S+))?(?: on (\S+))?"
)


def plan_shape(lines: list[str]) -> dict[str, Any]:
    nodes: Counter[str] = Counter()
    indexes: Counter[str] = Counter()
    for line in lines:
        match = _NODE.search(line)
        if match is None or "(cost=" not in line:  # plan nodes only, not "Sort Key:" details
            continue
        nodes[match.group(1)] += 1
        # "Index Scan using <index> on <table>", but "Bitmap Index Scan on <index>".
        index = match.group(3) if match.group(1) == "Bitmap Index Scan" else match.group(2)
        if index:
            indexes[re.sub(r"^observations_y\d{4}m\d{2}_", "<month>_", index)] += 1
    execution = next(
        (float(line.split(":")[1].split()[0]) for line in lines if "Execution Time" in line), 0.0
    )
    planning = next(
        (float(line.split(":")[1].split()[0]) for line in lines if "Planning Time" in line), 0.0
    )
    buffers = next((line.strip() for line in lines if "Buffers:" in line), "")
    # A sequential scan of an empty partition (the default one) reads no row: count the others.
    observation_seq_scans = sum(
        1
        for line in lines
        if "Seq Scan on observations" in line and "actual time" in line and " rows=0 " not in line
    )
    return {
        "nodes": dict(nodes),
        "indexes": dict(indexes),
        "seq_scans_on_observations": observation_seq_scans,
        "only_index_scans": observation_seq_scans == 0 and "Bitmap Heap Scan" not in nodes,
        "execution_ms": execution,
        "planning_ms": planning,
        "top_buffers": buffers,
    }


async def commit_latency(dsn: str, count: int) -> dict[str, float]:
    """One-row autocommit INSERTs: the durable commit (WAL flush) each search's audit event
    costs, on this server, at this moment."""
    seconds: list[float] = []
    async with admin_connection(dsn) as conn:
        await conn.execute("CREATE TABLE bench_commit (n integer)")
        for n in range(count):
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_commit VALUES ($1)", n)
            seconds.append(time.perf_counter() - started)
        await conn.execute("DROP TABLE bench_commit")
    return latency_summary(seconds)


async def explain_searches(
    dsn: str, pseudonym: str, code: str, since: str
) -> dict[str, dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the gateway's SQL for the searches measured over HTTP."""
    async with admin_connection(dsn) as conn:
        await binary_jsonb(conn)
        recorder = RecordingPool(conn)
        store = FhirSearchStore(cast(Any, recorder))
        now = datetime.now(UTC)
        request = parse_search(
            "Observation", search_parameters(pseudonym, code, since), strict=True, now=now
        )
        rows = await store.search_observations(SITE, request, None, request.count + 1)
        if len(rows) > request.count:
            cursor = (rows[request.count - 1].sort_value, rows[request.count - 1].id)
            await store.search_observations(SITE, request, cursor, request.count + 1)
        await store.count_observations(SITE, request)
        everything = parse_search(
            "Observation", [("patient", pseudonym), ("_summary", "count")], strict=True, now=now
        )
        await store.count_observations(SITE, everything)
    names = ["first_page", "later_page", "summary_count_query", "summary_count_patient"]
    if len(recorder.statements) == 3:
        names.remove("later_page")
    plans: dict[str, dict[str, Any]] = {}
    async with admin_connection(dsn) as conn:
        for name, (sql, args) in zip(names, recorder.statements, strict=True):
            lines = [
                str(r[0]) for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            ]
            plans[name] = {"shape": plan_shape(lines), "sql": " ".join(sql.split()), "plan": lines}
    return plans


# --- the run -------------------------------------------------------------------------------------


async def measure(options: Options, procs: Processes, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with postgres_server(cast(Any, options), workdir) as (server_dsn, postmaster):
        results["pids"] = {"postgres": postmaster}
        async with scratch_database(server_dsn) as dsn:
            results["postgres"] = await server_facts(dsn)
            key_file, _vendor, clinic = await issue_keys(dsn, workdir)
            port = free_port()
            gateway = await start_gateway(
                procs, gateway_environment(dsn, key_file, port), workdir / "gateway.log"
            )
            base = f"http://127.0.0.1:{port}"
            monitor = RssMonitor(gateway.pid)
            monitor.start()
            try:
                started = time.perf_counter()
                pseudonyms = await enrol(base, clinic, options)
                results["enrol_seconds"] = round(time.perf_counter() - started, 1)
                end = datetime.now(ZONE_TZ).replace(microsecond=0) - timedelta(days=1)
                results["data"] = await load_rows(dsn, key_file, pseudonyms, options, end)
                async with admin_connection(dsn) as conn:
                    # Heart rate's LOINC code as `build_observation` wrote it (not hard-coded).
                    code = str(
                        await conn.fetchval(
                            "SELECT code FROM observations WHERE resource #>> "
                            "'{code,coding,0,display}' ILIKE '%heart%' LIMIT 1"
                        )
                    )
                # ge one month after the oldest reading: nearly all of a patient's heart rates,
                # so a patient has several pages at 10 million rows.
                since = (end - SPAN + timedelta(days=30)).date().isoformat()
                smart = await register_smart_client(dsn, key_file)
                subjects = sorted(pseudonyms.values())
                results["query"] = {
                    "code": f"{LOINC}|{code}",
                    "date": f"ge{since}",
                    "url": "/fhir/Observation?patient=X&code=" + f"{LOINC}|{code}"
                    f"&date=ge{since}&_sort=-date&_count=50",
                }
                search = partial(
                    measure_searches,
                    base,
                    smart=smart,
                    pseudonyms=subjects,
                    code=code,
                    since=since,
                    options=options,
                    monitor=monitor,
                )
                explain = partial(
                    explain_searches, dsn, random.Random(7).choice(subjects), code, since
                )
                if options.cluster:
                    # The same searches on the data as loaded, then clustered, in one run; other
                    # patients before (seed 5), so the second pass does not find its pages cached
                    # by the first. The OS page cache is recorded before each pass.
                    results["page_cache_gib_before_cluster"] = page_cache_gib()
                    results["searches_before_cluster"] = await search(seed=5)
                    results["plans_before_cluster"] = await explain()
                    results["cluster"] = await cluster_partitions(dsn)
                    results["page_cache_gib"] = page_cache_gib()
                results["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
                results["searches"] = await search()
                results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                results["commit_ms"] = await commit_latency(dsn, options.patients)
                results["plans"] = await explain()
                results["gateway_peak_rss_mib"] = round(monitor.peak() / MIB, 1)
            finally:
                await monitor.stop()
                await procs.stop_all()
    return results


def table(results: dict[str, Any]) -> str:
    data, searches = results["data"], results["searches"]
    lines = [
        f"{results['data']['rows']:,} Observations, {results['parameters']['subjects']:,} subjects "
        f"({data['per_subject']:,} each), {data['partitions']} partitions, "
        f"{data['total_size_mib']:,.0f} MiB; loaded at {data['load_rows_per_s']:,.0f} rows/s",
        (
            f"clustered {results['cluster']['partitions']} settled partitions by subject in "
            f"{results['cluster']['seconds']:,.0f} s"
            if "cluster" in results
            else "partitions not clustered (no --cluster)"
        ),
        f"query: {results['query']['url']}",
        "",
        f"{'figure':<40}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'count':>8}  target p99",
        "-" * 90,
    ]
    for label, key in (
        ("first page", "first_page_ms"),
        ("later pages (next links)", "later_pages_ms"),
        ("_summary=count, same search", "summary_count_query_ms"),
        ("_summary=count, all of a patient", "summary_count_patient_ms"),
    ):
        s = searches[key]
        target = ""
        if key in ("first_page_ms", "later_pages_ms") and s["count"]:
            met = "met" if s["p99"] < TARGET_P99_MS else "missed"
            target = f"< {TARGET_P99_MS:g} ms: {met}"
        lines.append(
            f"{label:<40}{s['p50']:>9.2f}{s['p99']:>9.2f}{s['max']:>9.2f}{s['count']:>8}  {target}"
        )
    for label, s in (
        ("floor: GET /fhir/metadata", searches["metadata_ms"]),
        ("floor: one durable commit (SQL)", results["commit_ms"]),
    ):
        lines.append(f"{label:<40}{s['p50']:>9.2f}{s['p99']:>9.2f}{s['max']:>9.2f}{s['count']:>8}")
    if before := results.get("searches_before_cluster"):
        plans_before = results["plans_before_cluster"]
        lines.append(
            "before clustering, first page plan: "
            + plans_before["first_page"]["shape"]["top_buffers"]
            + f"; page cache {results['page_cache_gib_before_cluster']} GiB"
            + f" (after: {results['page_cache_gib']} GiB)"
        )
        for label, key in (
            ("first page, before clustering", "first_page_ms"),
            ("later pages, before clustering", "later_pages_ms"),
        ):
            s = before[key]
            lines.append(
                f"{label:<40}{s['p50']:>9.2f}{s['p99']:>9.2f}{s['max']:>9.2f}{s['count']:>8}"
            )
    lines += [
        "",
        f"pages per patient: {searches['pages_per_patient']}; gateway CPU during the searches "
        f"{searches['gateway_cpu_pct']:.0f} % of a core; load average "
        f"{results['load_average_before'][0]:.1f} → {results['load_average_after'][0]:.1f}",
        "",
        f"{'plan (EXPLAIN ANALYZE of the gateway SQL)':<40}{'exec ms':>9}{'plan ms':>9}  shape",
        "-" * 90,
    ]
    for name, plan in results["plans"].items():
        shape = plan["shape"]
        nodes = ", ".join(f"{k} x{v}" for k, v in shape["nodes"].items())
        lines.append(
            f"{name:<40}{shape['execution_ms']:>9.3f}{shape['planning_ms']:>9.3f}  {nodes}"
        )
        lines.append(f"{'':<40}indexes: {shape['indexes']}; {shape['top_buffers']}")
    pg = results["postgres"]
    lines += [
        "",
        f"PostgreSQL {pg['server_version']} ({results['database']}): "
        f"shared_buffers={pg['shared_buffers']}",
    ]
    return "\n".join(lines)


async def main_async(options: Options, command: str) -> dict[str, Any]:
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="wg-bench-search-") as folder:
        try:
            results = await measure(options, procs, Path(folder))
        finally:
            await procs.stop_all()
    results["pids"] |= procs.pids
    describe_run(results, options, command)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark("bench.search", argv, parse_options, main_async, table)


if __name__ == "__main__":
    raise SystemExit(main())
