"""The ingest benchmark: one command, a gateway it starts itself on loopback, a table.

    python -m bench.ingest [--quick] [--database-url URL] [--out results.json]
                           [--profile FILE] [--profile-single FILE]

Without `--database-url` it starts an embedded PostgreSQL (`pgserver`) in a temporary folder;
with it, it creates a scratch database `wg_bench_…` on that server (the role needs CREATEDB) and
drops it at the end. In the same run, on the same database and `observations` table, it measures:

1. baselines: raw `COPY` of the very Observation rows the batch phase will store (built with the
   gateway's own code: native adapter, normalise, `Pseudonymiser`, `build_observation`), and a
   bare aiohttp handler (`bench.bare_server`) that only parses the same JSON body;
2. batch ingest: 500 readings a request, 8 concurrent clients → readings/s, ratio to `COPY`;
3. single-reading ingest: 64 connections for a fixed time → readings/s, p50/p99, ratio to bare;
4. ingest → queryable: from a response to the Observation being returned by the FHIR search
   (`GET /fhir/Observation?patient=…&_id=…`, with a SMART Backend Services token of a clinic
   client registered with a real ES384 key);
5. the gateway's peak RSS, and its RSS in the first vs last quarter of a sustained run.

Every process it starts (PostgreSQL, gateway, bare server, load generators, profiler) is stopped
before it returns, on errors and Ctrl-C too. Loops are bounded in count and time; traffic stays
on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import aiohttp
import jwt
import orjson
import pgserver
import psutil

# The benchmark plays a clinic's backend: the key pair is the clinic's, not the gateway's.
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from bench.load import MRN_SYSTEM, SITE, latency_summary, reading, subject_value
from gateway.adapters.native import NativeAdapter
from gateway.app import load_keyrings, open_zones
from gateway.fhir import build_observation
from gateway.measures.normalise import normalise
from gateway.models import IngestContext, ObservationRow, ParseRejection, Reading
from gateway.privacy import Pseudonymiser, ZoneKeyRing
from gateway.services.credentials import add_credential
from gateway.services.smart import JWT_BEARER, register_client
from gateway.settings import Settings, ZoneSettings
from gateway.storage import ZoneDatabase, ensure_database, migrate_database
from gateway.storage.database import admin_connection

REPO = Path(__file__).resolve().parents[1]
ZONE = "cn"
ZONE_TZ = timezone(timedelta(hours=8))
VENDOR = "bench-vendor"
QUERYABLE_LABEL = "FHIR search (GET /fhir/Observation?patient=&_id=)"
SMART_SCOPES = ("system/Observation.rs", "system/Patient.rs", "system/Device.rs")
# Access tokens live at most 300 s; a run asks for a fresh one well before that.
TOKEN_REFRESH_S = 200.0
COPY_COLUMNS = (
    "subject",
    "id",
    "code",
    "device",
    "effective_start",
    "effective_end",
    "issued",
    "source_format",
    "resource",
)
# The issue's targets. They are reported, never asserted: machines are noisy.
TARGET_BATCH_RATIO = 0.50
TARGET_SINGLE_RATIO = 0.25
TARGET_SINGLE_P99_MS = 50.0
TARGET_QUERYABLE_P99_MS = 100.0
TARGET_RSS_DRIFT_PCT = 10.0

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PROBE_DEADLINE = 5.0
MIB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool
    database_url: str | None
    out: Path | None
    profile: Path | None
    profile_single: Path | None
    readings: int
    duration: float
    soak: float
    subjects: int
    warmup: float
    probes: int
    settings: tuple[tuple[str, str], ...] = ()
    batch_size: int = 500
    batch_clients: int = 8
    connections: int = 64
    enrol_concurrency: int = 16


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description="Ingest benchmark of wearable-gateway."
    )
    parser.add_argument("--quick", action="store_true", help="small run (CI): ~1 minute")
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: embedded)")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    parser.add_argument(
        "--profile", type=Path, help="sample the gateway with py-spy during the batch phase"
    )
    parser.add_argument(
        "--profile-single", type=Path, help="the same during the single-reading phase"
    )
    parser.add_argument("--readings", type=int, help="batch readings (200000; quick 20000)")
    parser.add_argument("--duration", type=float, help="single-reading seconds (20; quick 3)")
    parser.add_argument("--soak", type=float, help="sustained-run seconds (120; quick 10)")
    parser.add_argument("--subjects", type=int, default=1000, help="subjects enrolled (1000)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gateway setting for the run, e.g. write_concurrency=4 (repeatable)",
    )
    args = parser.parse_args(argv)
    settings = []
    for item in args.set:
        name, equals, value = item.partition("=")
        if not equals or not re.fullmatch(r"[a-z_]+", name):
            parser.error("--set takes NAME=VALUE with a settings name, e.g. write_concurrency=4")
        settings.append((name, value))
    quick = bool(args.quick)
    return Options(
        quick=quick,
        database_url=args.database_url,
        out=args.out,
        profile=args.profile,
        profile_single=args.profile_single,
        readings=args.readings or (20_000 if quick else 200_000),
        duration=args.duration or (3.0 if quick else 20.0),
        soak=args.soak or (10.0 if quick else 120.0),
        subjects=args.subjects,
        warmup=0.5 if quick else 2.0,
        probes=50 if quick else 400,
        settings=tuple(settings),
    )


# --- processes ---------------------------------------------------------------------------------


class Processes:
    """Every child process of the run, so each one is stopped at the end and reported by pid."""

    def __init__(self) -> None:
        self.pids: dict[str, list[int]] = {}
        self._running: list[asyncio.subprocess.Process] = []

    async def start(self, role: str, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*argv, **kwargs)
        self.pids.setdefault(role, []).append(proc.pid)
        self._running.append(proc)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        if proc in self._running:
            self._running.remove(proc)

    async def stop_all(self) -> None:
        for proc in reversed(list(self._running)):
            await self.stop(proc)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def postgres_server(options: Options, workdir: Path) -> AsyncIterator[tuple[str, int | None]]:
    """The server URL and, when embedded, the postmaster's pid."""
    if options.database_url:
        yield options.database_url, None
        return
    server = await asyncio.to_thread(pgserver.get_server, workdir / "pg", cleanup_mode="stop")
    try:
        yield server.get_uri(), server.get_pid()
    finally:
        await asyncio.to_thread(server.cleanup)


@contextlib.asynccontextmanager
async def scratch_database(server_dsn: str) -> AsyncIterator[str]:
    name = f"wg_bench_{uuid.uuid4().hex[:10]}"
    dsn = await ensure_database(server_dsn, name)
    try:
        await migrate_database(dsn)
        yield dsn
    finally:
        async with admin_connection(server_dsn) as conn:
            # `name` is generated above from hex digits only.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def issue_keys(dsn: str, workdir: Path) -> tuple[Path, str, str]:
    """A zone key file and a vendor and a clinic API key, issued through the gateway's code."""
    key_file = workdir / f"{ZONE}.keys.json"
    ZoneKeyRing.generate(ZONE).write(key_file)
    settings = Settings(zones={ZONE: ZoneSettings(name=ZONE, database_url=dsn, key_file=key_file)})
    zones = await open_zones(settings, load_keyrings(settings))
    try:
        vendor = await add_credential(zones, zone=ZONE, kind="vendor", owner=VENDOR)
        clinic = await add_credential(zones, zone=ZONE, kind="clinic", owner=SITE)
    finally:
        for zone in zones.values():
            await zone.db.close()
    return key_file, vendor.token, clinic.token


@dataclass(slots=True)
class SmartClient:
    """A clinic backend registered for SMART Backend Services with its own ES384 key pair; it
    gets access tokens through `POST /auth/token` exactly as a clinic would."""

    client_id: str
    kid: str
    key: ec.EllipticCurvePrivateKey
    token: str = ""
    obtained: float = 0.0

    async def access_token(self, http: aiohttp.ClientSession, base: str) -> str:
        if self.token and time.monotonic() - self.obtained < TOKEN_REFRESH_S:
            return self.token
        async with http.get(f"{base}/.well-known/smart-configuration") as response:
            token_url = str((await response.json())["token_endpoint"])
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": token_url,
                "exp": now + 240,
                "iat": now,
                "jti": uuid.uuid4().hex,
            },
            self.key,
            algorithm="ES384",
            headers={"kid": self.kid, "typ": "JWT"},
        )
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
            "scope": " ".join(SMART_SCOPES),
        }
        async with http.post(f"{base}/auth/token", data=form) as response:
            if response.status != 200:
                raise RuntimeError(f"the token endpoint answered HTTP {response.status}")
            self.token = str((await response.json())["access_token"])
        self.obtained = time.monotonic()
        return self.token


async def register_smart_client(dsn: str, key_file: Path, site: str = SITE) -> SmartClient:
    """Register a clinic client of `site` through the gateway's own code (what
    `wearable-gateway clients add` does), with a fresh public JWKS given by value."""
    key = ec.generate_private_key(ec.SECP384R1())
    kid = f"bench-{uuid.uuid4().hex[:8]}"
    jwk: dict[str, Any] = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}
    settings = Settings(zones={ZONE: ZoneSettings(name=ZONE, database_url=dsn, key_file=key_file)})
    zones = await open_zones(settings, load_keyrings(settings))
    try:
        client_id = await register_client(
            zones, zone=ZONE, site=site, role="clinic", jwks={"keys": [jwk]}, scopes=SMART_SCOPES
        )
    finally:
        for zone in zones.values():
            await zone.db.close()
    return SmartClient(client_id, kid, key)


def gateway_environment(
    dsn: str, key_file: Path, port: int, settings: Sequence[tuple[str, str]] = ()
) -> dict[str, str]:
    # The caller's own GATEWAY_* settings (a config file, other zones) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_ZONES": ZONE,
        f"GATEWAY_ZONE_{ZONE.upper()}_DATABASE_URL": dsn,
        f"GATEWAY_ZONE_{ZONE.upper()}_KEY_FILE": str(key_file),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        # The benchmark is one client measuring throughput: the per-key rate limit (a guard
        # against a misbehaving vendor) would measure itself instead.
        "GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
        "GATEWAY_RATE_LIMIT_BURST": "1000000",
    }
    env |= {f"GATEWAY_{name.upper()}": value for name, value in settings}
    return env


async def start_gateway(
    procs: Processes, env: dict[str, str], log_path: Path
) -> asyncio.subprocess.Process:
    port = env["GATEWAY_PORT"]
    with log_path.open("wb") as log:
        proc = await procs.start(
            "gateway",
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--grace",
            "2",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                tail = (await asyncio.to_thread(log_path.read_bytes))[-2000:]
                raise RuntimeError(
                    f"the gateway exited with {proc.returncode}:\n{tail.decode(errors='replace')}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return proc
            await asyncio.sleep(0.1)
    raise RuntimeError("the gateway did not become ready in time")


async def start_bare_server(procs: Processes) -> tuple[asyncio.subprocess.Process, int]:
    proc = await procs.start(
        "bare_server",
        sys.executable,
        "-m",
        "bench.bare_server",
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
    return proc, int(line)


async def run_load(procs: Processes, spec: dict[str, Any], time_limit: float) -> dict[str, Any]:
    """One run of `bench.load` in its own process; its result."""
    proc = await procs.start(
        "load",
        sys.executable,
        "-m",
        "bench.load",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(orjson.dumps(spec)), time_limit)
    finally:
        await procs.stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{err.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = orjson.loads(out)
    return result


# --- memory ------------------------------------------------------------------------------------


class RssMonitor:
    """Samples the gateway's resident set size every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            while True:
                self.samples.append((time.monotonic(), self._process.memory_info().rss))
                await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def peak(self) -> int:
        """The kernel's high-water mark where there is one (Linux), else the sampled maximum."""
        sampled = max((rss for _, rss in self.samples), default=0)
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self._process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(sampled, int(line.split()[1]) * 1024)
        return sampled

    def quarters(self, start: float, end: float) -> tuple[float, float]:
        """Mean RSS (MiB) over the first and the last quarter of [start, end]."""
        span = (end - start) / 4
        first = [rss for t, rss in self.samples if start <= t <= start + span]
        last = [rss for t, rss in self.samples if end - span <= t <= end]
        if not first or not last:
            raise RuntimeError("too few memory samples in the sustained run")
        return sum(first) / len(first) / MIB, sum(last) / len(last) / MIB


# --- phases ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """What every phase needs: the options, the child processes, the scratch database and the
    gateway under test with its API keys."""

    options: Options
    procs: Processes
    dsn: str
    base: str
    vendor: str
    clinic: str
    smart: SmartClient
    pseudonyms: dict[str, str] = field(default_factory=dict)

    @property
    def ingest_url(self) -> str:
        return f"{self.base}/v1/ingest/native"


async def enrol_subjects(base: str, clinic_token: str, options: Options) -> dict[str, str]:
    """Enrol the subjects through the API; their identifier value → pseudonym."""
    headers = {"Authorization": f"Bearer {clinic_token}"}
    pseudonyms: dict[str, str] = {}
    gate = asyncio.Semaphore(options.enrol_concurrency)

    async def enrol(http: aiohttp.ClientSession, n: int) -> None:
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
        await asyncio.gather(*(enrol(http, n) for n in range(options.subjects)))
    return pseudonyms


def build_rows(
    readings: list[dict[str, Any]], pseudonyms: dict[str, str], keyring: ZoneKeyRing, size: int
) -> list[ObservationRow]:
    """The rows the gateway stores for these readings, built by the gateway's own steps (native
    adapter → normalise → pseudonyms → `build_observation`), as `services.ingest` chains them."""
    adapter = NativeAdapter()
    pseudonymiser = Pseudonymiser(keyring)
    rows: list[ObservationRow] = []
    for start in range(0, len(readings), size):
        body = orjson.dumps({"readings": readings[start : start + size]})
        ctx = IngestContext(
            zone=ZONE,
            vendor=VENDOR,
            source_format=adapter.name,
            format_version=adapter.version,
            received_at=datetime.now(UTC),
            request_id=uuid.uuid4().hex,
        )
        for item in adapter.parse(body, "application/json"):
            if isinstance(item, ParseRejection):
                raise RuntimeError("a benchmark reading was rejected")
            valid = normalise(item, now=ctx.received_at)
            if not isinstance(valid, Reading):
                raise RuntimeError("a benchmark reading was rejected")
            subject = pseudonyms[valid.subject.value]
            observation_id = pseudonymiser.dedup_key(
                vendor=VENDOR,
                device_id=valid.device.id,
                subject=subject,
                measure=valid.measure.name,
                start=valid.start,
                end=valid.end,
                statistic=valid.statistic,
            )
            device = pseudonymiser.device_pseudonym(VENDOR, valid.device.id)
            rows.append(
                build_observation(
                    valid, observation_id=observation_id, subject=subject, device=device, ctx=ctx
                )
            )
    return rows


async def checkpoint(dsn: str) -> bool:
    """Flush dirty buffers so each write phase starts from the same state (needs superuser or
    pg_checkpoint; skipped, and said so in the results, where the role lacks it)."""
    try:
        async with admin_connection(dsn) as conn:
            await conn.execute("CHECKPOINT")
    except Exception:  # the role may not be allowed to; the figures stay valid without it
        return False
    return True


async def checkpoints_done(conn: Any) -> float:
    """Checkpoints the server has completed since its statistics were reset (server-wide)."""
    for sql in (
        "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",  # PostgreSQL <= 16
        "SELECT num_timed + num_requested FROM pg_stat_checkpointer",  # PostgreSQL 17+
    ):
        try:
            return float(await conn.fetchval(sql))
        except Exception:  # noqa: S112 - that view or column is not on this server's version
            continue
    return 0.0


async def copy_baseline(dsn: str, rows: list[ObservationRow]) -> dict[str, Any]:
    db = await ZoneDatabase.connect(ZONE, dsn, max_size=1)
    try:
        await db.observations.ensure_partitions(row.effective_start for row in rows)
    finally:
        await db.close()
    records = [
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
    checkpointed = await checkpoint(dsn)
    async with admin_connection(dsn) as conn:
        # The gateway's own jsonb codec (storage/database.py): binary jsonb is a version byte
        # followed by the JSON text, so the same bytes go over the wire.
        await conn.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            encoder=lambda value: b"\x01" + value,
            decoder=lambda data: data[1:],
            format="binary",
        )
        started = time.perf_counter()
        await conn.copy_records_to_table("observations", records=records, columns=COPY_COLUMNS)
        elapsed = time.perf_counter() - started
        stored = int(await conn.fetchval("SELECT count(*) FROM observations"))
        # Empty again, partitions kept: the batch phase stores the same rows into the same table.
        await conn.execute("TRUNCATE observations")
    return {
        "rows": len(rows),
        "stored": stored,
        "seconds": round(elapsed, 4),
        "rows_per_s": round(len(rows) / elapsed, 1),
        "checkpoint_before": checkpointed,
    }


async def batch_phase(run: Run, base_time: datetime) -> dict[str, Any]:
    spec = {
        "mode": "batch",
        "url": run.ingest_url,
        "token": run.vendor,
        "concurrency": run.options.batch_clients,
        "phase": "BATCH",
        "subjects": run.options.subjects,
        "base_time": base_time.isoformat(),
        "readings": run.options.readings,
        "batch_size": run.options.batch_size,
        "time_limit": 900.0,
    }
    return await run_load(run.procs, spec, time_limit=1000.0)


def single_spec(
    options: Options, *, url: str, token: str, phase: str, duration: float, warmup: float
) -> dict[str, Any]:
    return {
        "mode": "single",
        "url": url,
        "token": token,
        "concurrency": options.connections,
        "phase": phase,
        "subjects": options.subjects,
        "base_time": (
            datetime.now(ZONE_TZ).replace(microsecond=0) - timedelta(minutes=1)
        ).isoformat(),
        "duration": duration,
        "warmup": warmup,
        "max_requests": int((duration + warmup) * 50_000),
        "time_limit": 120.0,
    }


async def queryable_probes(run: Run, load: asyncio.Task[dict[str, Any]]) -> dict[str, Any]:
    """While the single-reading load runs: post one reading, then search for it through the
    FHIR API (by patient and `_id`, with a SMART token) until the search returns it.
    Latency = response received → search response that contains the Observation."""
    after_response: list[float] = []
    end_to_end: list[float] = []
    not_found = 0
    headers = {"Authorization": f"Bearer {run.vendor}", "Content-Type": "application/json"}
    base_time = datetime.now(ZONE_TZ).replace(microsecond=0) - timedelta(minutes=1)
    await asyncio.sleep(run.options.warmup)
    search_url = f"{run.base}/fhir/Observation"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await run.smart.access_token(http, run.base)  # the first token is not a probe's cost
        for k in range(run.options.probes):
            if load.done():
                break
            body = reading(k, phase="PROBE", subjects=run.options.subjects, base_time=base_time)
            subject = run.pseudonyms[body["subject"]["value"]]
            sent = time.perf_counter()
            async with http.post(
                run.ingest_url, data=orjson.dumps(body), headers=headers
            ) as response:
                answer = orjson.loads(await response.read())
            responded = time.perf_counter()
            observation_id = answer["results"][0]["id"]
            found = False
            token = await run.smart.access_token(http, run.base)
            query = {"patient": subject, "_id": observation_id, "_count": "1"}
            while time.perf_counter() - responded < PROBE_DEADLINE:
                async with http.get(
                    search_url,
                    params=query,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
                ) as response:
                    bundle = orjson.loads(await response.read())
                found = response.status == 200 and any(
                    entry["resource"]["id"] == observation_id for entry in bundle.get("entry", [])
                )
                if found:
                    break
                await asyncio.sleep(0.001)
            read = time.perf_counter()
            if found:
                after_response.append(read - responded)
                end_to_end.append(read - sent)
            else:
                not_found += 1
            await asyncio.sleep(0.02)
    return {
        "label": QUERYABLE_LABEL,
        "latency_ms": latency_summary(after_response),
        "request_to_readable_ms": latency_summary(end_to_end),
        "not_found": not_found,
    }


async def single_phase(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    options = run.options
    spec = single_spec(
        options,
        url=run.ingest_url,
        token=run.vendor,
        phase="SINGLE",
        duration=options.duration,
        warmup=options.warmup,
    )
    load = asyncio.create_task(run_load(run.procs, spec, time_limit=options.duration + 180))
    try:
        probes = await queryable_probes(run, load)
        result = await load
    finally:
        if not load.done():
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
    return result, probes


async def soak_phase(run: Run, monitor: RssMonitor) -> dict[str, Any]:
    options = run.options
    spec = single_spec(
        options, url=run.ingest_url, token=run.vendor, phase="SOAK", duration=options.soak, warmup=0
    )
    before = await write_counters(run)
    started = time.monotonic()
    result = await run_load(run.procs, spec, time_limit=options.soak + 180)
    ended = time.monotonic()
    writes = counter_rates(before, await write_counters(run), ended - started)
    first, last = monitor.quarters(started, ended)
    return {
        "seconds": options.soak,
        "readings_per_s": result["requests_per_s"],
        # Sustained latency, checkpoints included (the phase runs long enough to meet them).
        "latency_ms": result["latency_ms"],
        "checkpoints": writes["checkpoints"],
        "statuses": result["statuses"],
        "first_quarter_mib": round(first, 2),
        "last_quarter_mib": round(last, 2),
        "change_pct": round((last - first) / first * 100, 2),
    }


async def count_stored(dsn: str, ids: list[str] | None = None) -> int:
    async with admin_connection(dsn) as conn:
        if ids is None:
            return int(await conn.fetchval("SELECT count(*) FROM observations"))
        return int(await conn.fetchval("SELECT count(*) FROM observations WHERE id = ANY($1)", ids))


async def server_facts(dsn: str) -> dict[str, str]:
    names = (
        "server_version",
        "synchronous_commit",
        "fsync",
        "full_page_writes",
        "wal_level",
        "shared_buffers",
        "wal_buffers",
        "max_wal_size",
        "checkpoint_timeout",
        "max_connections",
    )
    async with admin_connection(dsn) as conn:
        return {
            name: str(await conn.fetchval("SELECT current_setting($1)", name)) for name in names
        }


# --- py-spy ------------------------------------------------------------------------------------


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _frame(raw: str) -> str:
    # "handler (/path/to/gateway/web/ingest.py:42)" -> "handler (gateway/web/ingest.py)"
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def recorded_profile(path: Path | None) -> dict[str, Any] | None:
    """The summary of a py-spy recording, if one was asked for and written."""
    return summarise_profile(path) if path is not None and path.exists() else None


def summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Shares of samples by innermost frame (self), and by the gateway's own functions anywhere
    on the stack (inclusive; framework frames that are on every stack say nothing)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        total += count
        own[frames[-1]] += count
        for frame in {f for f in frames if "(gateway/" in f}:
            inclusive[frame] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(n / total * 100, 1)) for f, n in counter.most_common(top)]

    return {
        "samples": total,
        "self": shares(own) if total else [],
        "gateway_inclusive": shares(inclusive) if total else [],
    }


# --- the run -----------------------------------------------------------------------------------


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 4) if baseline else 0.0


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    batch, single = results["batch"], results["single"]
    queryable, soak = results["queryable"], results["memory"]["soak"]
    rows = [
        ("batch / raw COPY", f">= {TARGET_BATCH_RATIO:.0%}", batch["ratio_to_copy"],
         batch["ratio_to_copy"] >= TARGET_BATCH_RATIO),
        ("single / bare handler", f">= {TARGET_SINGLE_RATIO:.0%}", single["ratio_to_bare"],
         single["ratio_to_bare"] >= TARGET_SINGLE_RATIO),
        ("single p99 at 64 connections (ms)", f"<= {TARGET_SINGLE_P99_MS:g}",
         single["latency_ms"]["p99"], single["latency_ms"]["p99"] <= TARGET_SINGLE_P99_MS),
        ("ingest -> queryable p99 (ms)", f"<= {TARGET_QUERYABLE_P99_MS:g}",
         queryable["latency_ms"]["p99"],
         queryable["latency_ms"]["p99"] <= TARGET_QUERYABLE_P99_MS and not queryable["not_found"]),
        ("RSS last vs first quarter (%)", f"within ±{TARGET_RSS_DRIFT_PCT:g}",
         soak["change_pct"], abs(soak["change_pct"]) <= TARGET_RSS_DRIFT_PCT),
    ]  # fmt: skip
    return [{"figure": f, "target": t, "value": v, "met": m} for f, t, v, m in rows]


async def measure(options: Options, procs: Processes, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with postgres_server(options, workdir) as (server_dsn, postmaster):
        results["pids"] = {"postgres": postmaster}
        async with scratch_database(server_dsn) as dsn:
            results["postgres"] = await server_facts(dsn)
            key_file, vendor, clinic = await issue_keys(dsn, workdir)
            port = free_port()
            gateway = await start_gateway(
                procs,
                gateway_environment(dsn, key_file, port, options.settings),
                workdir / "gateway.log",
            )
            smart = await register_smart_client(dsn, key_file)
            run = Run(options, procs, dsn, f"http://127.0.0.1:{port}", vendor, clinic, smart)
            monitor = RssMonitor(gateway.pid)
            monitor.start()
            try:
                keyring = ZoneKeyRing.load(key_file, expected_zone=ZONE)
                await run_phases(run, results, keyring, monitor)
                results["memory"] = {"soak": await soak_phase(run, monitor)}
                results["memory"]["peak_rss_mib"] = round(monitor.peak() / MIB, 2)
                results["checks"]["stored_after_all_phases"] = await count_stored(dsn)
            finally:
                await monitor.stop()
                await procs.stop_all()
    return results


async def write_counters(run: Run) -> dict[str, float]:
    """Commit, WAL and group-commit counters: this database's committed transactions
    (`pg_stat_database`), the server's WAL syncs (`pg_stat_wal`, PostgreSQL 14+, cluster-wide:
    other databases on the server count too) and the gateway's `gateway_storage_batch_rows`."""
    # Backends report their statistics up to a second after a transaction ends (PostgreSQL 15+).
    await asyncio.sleep(1.1)
    counters: dict[str, float] = {}
    async with admin_connection(run.dsn) as conn:
        counters["xact_commit"] = float(
            await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        )
        with contextlib.suppress(Exception):  # pg_stat_wal is PostgreSQL 14+
            wal = await conn.fetchrow("SELECT wal_records, wal_sync, wal_write FROM pg_stat_wal")
            if wal is not None:
                counters |= {k: float(v) for k, v in dict(wal).items()}
        counters["checkpoints"] = await checkpoints_done(conn)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.get(f"{run.base}/metrics") as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(f"gateway_storage_batch_rows{suffix}"):
                counters[f"batch_rows{suffix}"] = float(line.rsplit(" ", 1)[1])
    return counters


def counter_rates(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    delta = {k: after[k] - before[k] for k in after if k in before}
    rates = {f"{k}_per_s": round(v / seconds, 1) for k, v in delta.items() if "batch" not in k}
    batches = delta.get("batch_rows_count", 0.0)
    rates["db_batches"] = batches
    # Checkpoints that ran during the phase (timed or forced by WAL volume; the benchmark's own
    # CHECKPOINTs are issued between phases): each makes the next write of every page a full-page
    # image in the WAL, which is when commit latency spikes.
    rates["checkpoints"] = delta.get("checkpoints", 0.0)
    rows = delta.get("batch_rows_sum", 0.0)
    rates["mean_batch_rows"] = round(rows / batches, 1) if batches else 0.0
    # The 1-minute load average as the phase ends: what else wanted the 2 cores.
    rates["load_average_1m"] = round(os.getloadavg()[0], 2)
    return rates


@contextlib.contextmanager
def gateway_cpu(monitor: RssMonitor) -> Iterator[dict[str, float]]:
    """The gateway's CPU time over the block, in % of one core: near 100 means the gateway's
    single event loop is what limits the figure."""
    share: dict[str, float] = {}
    cpu, wall = monitor.cpu_seconds(), time.monotonic()
    yield share
    share["pct"] = round((monitor.cpu_seconds() - cpu) / (time.monotonic() - wall) * 100, 1)


async def run_phases(
    run: Run, results: dict[str, Any], keyring: ZoneKeyRing, monitor: RssMonitor
) -> None:
    options = run.options
    checks: dict[str, Any] = {}
    results["checks"] = checks
    started = time.perf_counter()
    run.pseudonyms = await enrol_subjects(run.base, run.clinic, options)
    checks["enrolled"] = len(run.pseudonyms)
    checks["enrol_seconds"] = round(time.perf_counter() - started, 2)

    # 1a. raw COPY of the very rows the batch phase will store (built outside the timing).
    batch_base = datetime.now(ZONE_TZ).replace(microsecond=0) - timedelta(hours=1)
    readings = [
        reading(i, phase="BATCH", subjects=options.subjects, base_time=batch_base)
        for i in range(options.readings)
    ]
    rows = build_rows(readings, run.pseudonyms, keyring, options.batch_size)
    copy = await copy_baseline(run.dsn, rows)
    results["baselines"] = {"copy": copy, "bare_handler": await bare_baseline(run)}

    # 2. batch ingest (profiled on request).
    checks["checkpoint_before_batch"] = await checkpoint(run.dsn)
    batch, measured = await measured_phase(
        run,
        monitor,
        results,
        profile=options.profile,
        profile_key="profile",
        phase=lambda: batch_phase(run, batch_base),
    )
    batch |= measured
    sample = [row.id for row in rows[:: max(1, len(rows) // 200)]]
    checks["batch_stored"] = await count_stored(run.dsn)
    checks["batch_ids_same_as_copy"] = await count_stored(run.dsn, sample) == len(sample)
    batch["ratio_to_copy"] = ratio(batch["readings_per_s"], copy["rows_per_s"])
    results["batch"] = batch

    await single_and_queryable(run, results, monitor)


async def measured_phase(
    run: Run,
    monitor: RssMonitor,
    results: dict[str, Any],
    *,
    profile: Path | None,
    profile_key: str,
    phase: Callable[[], Awaitable[T]],
) -> tuple[T, dict[str, Any]]:
    """Run one load phase with the gateway's CPU share and the database's write counters measured
    around it, sampled by py-spy into `profile` when given (summary in results[profile_key])."""
    profiler = await start_profiler(run.procs, profile, results, profile_key)
    before = await write_counters(run)
    try:
        with gateway_cpu(monitor) as cpu:
            started = time.perf_counter()
            outcome = await phase()
            seconds = time.perf_counter() - started
    finally:
        if profiler is not None:
            await run.procs.stop(profiler, signal.SIGINT)
    summary = recorded_profile(profile)
    if summary is not None:
        results[profile_key] = summary
    writes = counter_rates(before, await write_counters(run), seconds)
    return outcome, {"gateway_cpu_pct": cpu["pct"], "writes": writes}


async def single_and_queryable(run: Run, results: dict[str, Any], monitor: RssMonitor) -> None:
    """Phases 3 + 4: single readings, with the queryable probes alongside."""
    # The batch phase's WAL would otherwise force a checkpoint early in this one.
    results["checks"]["checkpoint_before_single"] = await checkpoint(run.dsn)
    (single, probes), measured = await measured_phase(
        run,
        monitor,
        results,
        profile=run.options.profile_single,
        profile_key="profile_single",
        phase=lambda: single_phase(run),
    )
    single |= measured
    single["readings_per_s"] = single["requests_per_s"]
    single["ratio_to_bare"] = ratio(
        single["readings_per_s"], results["baselines"]["bare_handler"]["requests_per_s"]
    )
    results["single"] = single
    results["queryable"] = probes


async def bare_baseline(run: Run) -> dict[str, Any]:
    """The bare handler under the same body and load as the single-reading phase."""
    proc, port = await start_bare_server(run.procs)
    try:
        spec = single_spec(
            run.options,
            url=f"http://127.0.0.1:{port}/v1/ingest/native",
            # The same header as the gateway gets, so requests are byte for byte alike; the bare
            # server ignores it (and listens on loopback only).
            token=run.vendor,
            phase="BARE",
            duration=run.options.duration,
            warmup=run.options.warmup,
        )
        bare = await run_load(run.procs, spec, time_limit=run.options.duration + 180)
    finally:
        await run.procs.stop(proc)
    return {
        "requests_per_s": bare["requests_per_s"],
        "latency_ms": bare["latency_ms"],
        "statuses": bare["statuses"],
    }


async def start_profiler(
    procs: Processes, output: Path | None, results: dict[str, Any], key: str
) -> asyncio.subprocess.Process | None:
    if output is None:
        return None
    binary = py_spy()
    if binary is None:
        results[key] = {"error": "py-spy is not installed"}
        return None
    gateway_pid = procs.pids["gateway"][0]
    proc = await procs.start(
        "profiler",
        binary,
        "record",
        "--pid",
        str(gateway_pid),
        "--rate",
        "100",
        "--format",
        "raw",
        "--output",
        str(output),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # attached before the load starts
    return proc


def table(results: dict[str, Any]) -> str:
    copy = results["baselines"]["copy"]
    bare = results["baselines"]["bare_handler"]
    batch, single = results["batch"], results["single"]
    queryable, memory = results["queryable"], results["memory"]
    soak = memory["soak"]
    lat, qlat = single["latency_ms"], queryable["latency_ms"]
    lines = [
        f"{'figure':<46}{'value':>14}  {'baseline / note':<40}",
        "-" * 100,
        f"{'raw COPY of the same rows (rows/s)':<46}{copy['rows_per_s']:>14,.0f}  "
        f"{copy['rows']:,} rows, one COPY",
        f"{'bare aiohttp handler (requests/s)':<46}{bare['requests_per_s']:>14,.0f}  "
        f"p50 {bare['latency_ms']['p50']:.1f} ms, p99 {bare['latency_ms']['p99']:.1f} ms",
        f"{'batch ingest, 500/request, 8 clients (r/s)':<46}{batch['readings_per_s']:>14,.0f}  "
        f"{batch['ratio_to_copy']:.1%} of raw COPY; gateway CPU {batch['gateway_cpu_pct']:.0f} %",
        f"{'single-reading ingest, 64 connections (r/s)':<46}{single['readings_per_s']:>14,.0f}  "
        f"{single['ratio_to_bare']:.1%} of bare; gateway CPU {single['gateway_cpu_pct']:.0f} %",
        f"{'  latency p50 / p99 (ms)':<46}{lat['p50']:>6.1f} /{lat['p99']:>6.1f}  "
        f"max {lat['max']:.1f} ms",
        f"{'ingest -> queryable p50 / p99 (ms)':<46}{qlat['p50']:>6.1f} /{qlat['p99']:>6.1f}  "
        f"{queryable['label']}, {qlat['count']} probes",
        f"{'gateway peak RSS (MiB)':<46}{memory['peak_rss_mib']:>14.1f}",
        *(
            f"{name + ' xacts/s (incl. reads), rows/batch':<46}"
            f"{phase['writes'].get('xact_commit_per_s', 0):>6.0f} /"
            f"{phase['writes']['mean_batch_rows']:>6.1f}  "
            f"WAL syncs/s {phase['writes'].get('wal_sync_per_s', 0):.0f} (server-wide), "
            f"checkpoints {phase['writes'].get('checkpoints', 0):.0f}, "
            f"load avg {phase['writes']['load_average_1m']:.1f}"
            for name, phase in (("batch", batch), ("single", single))
        ),
        f"{'RSS first -> last quarter of soak (MiB)':<46}"
        f"{soak['first_quarter_mib']:>6.1f} ->{soak['last_quarter_mib']:>6.1f}  "
        f"{soak['change_pct']:+.1f} % over {soak['seconds']:g} s "
        f"at {soak['readings_per_s']:,.0f} r/s",
        f"{'  soak latency p50 / p99 (ms)':<46}{soak['latency_ms']['p50']:>6.1f} /"
        f"{soak['latency_ms']['p99']:>6.1f}  with {soak['checkpoints']:.0f} checkpoints "
        f"during the soak",
        "",
        f"{'target':<46}{'value':>14}  {'wanted':<12}met",
        "-" * 100,
    ]
    for t in results["targets"]:
        is_ratio = " / " in t["figure"]  # "batch / raw COPY", "single / bare handler"
        value = f"{t['value']:.1%}" if is_ratio else f"{t['value']:.1f}"
        lines.append(
            f"{t['figure']:<46}{value:>14}  {t['target']:<12}{'yes' if t['met'] else 'no'}"
        )
    pg = results["postgres"]
    lines += [
        "",
        f"PostgreSQL {pg['server_version']} ({results['database']}): synchronous_commit="
        f"{pg['synchronous_commit']}, fsync={pg['fsync']}, shared_buffers={pg['shared_buffers']}",
    ]
    return "\n".join(lines)


async def main_async(options: Options, command: str) -> dict[str, Any]:
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as folder:
        try:
            results = await measure(options, procs, Path(folder))
        finally:
            await procs.stop_all()
    results["pids"] |= procs.pids
    results["targets"] = targets(results)
    describe_run(results, options, command)
    return results


class _RunOptions(Protocol):
    database_url: str | None
    out: Path | None


def describe_run(results: dict[str, Any], options: _RunOptions, command: str) -> None:
    """What every benchmark records beside its figures: the command, the database, the options
    (never the database URL: it may carry a password) and the machine."""
    results["command"] = command
    results["database"] = "configured server" if options.database_url else "embedded pgserver"
    results["parameters"] = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in asdict(cast(Any, options)).items()
        if k != "database_url"
    }
    results["machine"] = {
        "cpus": os.cpu_count(),
        # Other processes on the machine (test suites) share the cores: the load the run saw.
        "load_average_after_run": [round(x, 2) for x in os.getloadavg()],
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


OptionsT = TypeVar("OptionsT", bound=_RunOptions)


def run_benchmark(
    module: str,
    argv: Sequence[str] | None,
    parse: Callable[[Sequence[str] | None], OptionsT],
    run: Callable[[OptionsT, str], Awaitable[dict[str, Any]]],
    render: Callable[[dict[str, Any]], str],
) -> int:
    """The command line of a benchmark module: parse, run, print the table, write --out."""
    options = parse(argv)
    # The URL may carry a password: the recorded command names it only.
    command = f"python -m {module} " + " ".join(
        "URL" if a.startswith("postgres") else a for a in (sys.argv[1:] if argv is None else argv)
    )
    try:
        results = asyncio.run(run(options, command.strip()))
    except KeyboardInterrupt:
        print("interrupted; every process this run started was stopped", file=sys.stderr)
        return 130
    print(render(results), flush=True)
    if options.out is not None:
        options.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark("bench.ingest", argv, parse_options, main_async, table)


if __name__ == "__main__":
    raise SystemExit(main())
