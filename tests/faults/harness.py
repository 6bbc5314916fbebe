"""What the fault scenarios share: a real `python -m gateway serve` process on loopback, its keys
and credentials, enrolled subjects, numbered readings, and clients that keep a ledger of what the
gateway acknowledged.

Every wait here has a hard limit, and `GatewayProcess` kills its process on the way out of its
`async with`, whatever happened inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import asyncpg
import orjson

from gateway.app import load_keyrings, open_zones
from gateway.privacy import ZoneKeyRing
from gateway.services.credentials import add_credential
from gateway.settings import Settings, ZoneSettings
from tests.conftest import MRN, SITE
from tests.helpers import CN_TZ

START_TIMEOUT = 60.0  # a cold interpreter importing the gateway on a loaded 2-core machine
STOP_TIMEOUT = 15.0
# Per request: far above any answer the scenarios expect, so a hang shows as a failure, not a
# stuck test run.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
ACKNOWLEDGED = frozenset({"created", "duplicate"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Credentials:
    key_files: dict[str, Path]
    vendor: dict[str, str]
    clinic: dict[str, str]


async def provision(zone_dsns: Mapping[str, str], workdir: Path) -> Credentials:
    """Zone key files plus a vendor and a clinic API key per zone, issued by the gateway's own
    service code (as `wearable-gateway vendors add` does) before the process starts."""
    key_files: dict[str, Path] = {}
    for zone in zone_dsns:
        key_files[zone] = workdir / f"{zone}.keys.json"
        ZoneKeyRing.generate(zone).write(key_files[zone])
    settings = Settings(
        zones={
            zone: ZoneSettings(name=zone, database_url=dsn, key_file=key_files[zone])
            for zone, dsn in zone_dsns.items()
        },
        pool_max_size=2,
    )
    zones = await open_zones(settings, load_keyrings(settings))
    vendor: dict[str, str] = {}
    clinic: dict[str, str] = {}
    try:
        for zone in zone_dsns:
            issued = await add_credential(zones, zone=zone, kind="vendor", owner="fault-vendor")
            vendor[zone] = issued.token
            issued = await add_credential(zones, zone=zone, kind="clinic", owner=SITE[zone])
            clinic[zone] = issued.token
    finally:
        for opened in zones.values():
            await opened.db.close()
    return Credentials(key_files, vendor, clinic)


def gateway_environment(
    zone_dsns: Mapping[str, str], credentials: Credentials, port: int, **settings: str
) -> dict[str, str]:
    """The process environment of a gateway serving `zone_dsns` on 127.0.0.1:`port`; `settings`
    are further GATEWAY_* values (`db_timeout_seconds="2"` → GATEWAY_DB_TIMEOUT_SECONDS=2)."""
    # The caller's own GATEWAY_* settings (a config file, other zones) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_ZONES": ",".join(zone_dsns),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_POOL_MAX_SIZE": "4",
        # A handful of clients hammering on purpose: the per-key rate limit is not under test.
        "GATEWAY_RATE_LIMIT_PER_SECOND": "100000",
        "GATEWAY_RATE_LIMIT_BURST": "100000",
    }
    for zone, dsn in zone_dsns.items():
        env[f"GATEWAY_ZONE_{zone.upper()}_DATABASE_URL"] = dsn
        env[f"GATEWAY_ZONE_{zone.upper()}_KEY_FILE"] = str(credentials.key_files[zone])
    for name, value in settings.items():
        env[f"GATEWAY_{name.upper()}"] = value
    return env


class GatewayProcess:
    """`python -m gateway serve` as a child process, its log in a file.

    `async with` kills the process on exit if it is still running, so no test leaves one behind.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, grace: float = 5.0) -> None:
        self.env = env
        self.log_path = log_path
        self.grace = grace
        self.base_url = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> GatewayProcess:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill()

    async def start(self) -> None:
        """Start the process and wait until /readyz says every zone is ready."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--grace",
                str(self.grace),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(
                        f"the gateway exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.base_url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the gateway was not ready in {START_TIMEOUT} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109 — a hard limit, by design
        """The exit status, waiting at most `timeout` seconds (TimeoutError otherwise)."""
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_bytes()[-size:].decode(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines the gateway wrote (other lines, e.g. library warnings, skipped)."""
        found = []
        for line in self.log_path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                entry = orjson.loads(line)
                if isinstance(entry, dict):
                    found.append(entry)
        return found


def subject_value(zone: str, n: int) -> str:
    return f"FAULT-{zone.upper()}-{n:03d}"


async def enrol(gateway: GatewayProcess, token: str, zone: str, subjects: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
        for n in range(subjects):
            body = {
                "zone": zone,
                "site": SITE[zone],
                "identifiers": [{"system": MRN[zone], "value": subject_value(zone, n)}],
                "birth_date": "1970-01-02",
                "sex": "female",
                "consent": {"research": True, "cross_border": False},
            }
            async with http.post(
                f"{gateway.base_url}/v1/subjects", json=body, headers=headers
            ) as response:
                assert response.status == 201, await response.text()


@dataclass(frozen=True, slots=True)
class ReadingSource:
    """Reading number `n` of a run: always the same body, and no two numbers share a dedup key
    (each is one second further back on its subject's device)."""

    zone: str
    subjects: int
    base_time: datetime = field(
        default_factory=lambda: datetime.now(CN_TZ).replace(microsecond=0) - timedelta(hours=1)
    )

    def reading(self, n: int) -> dict[str, Any]:
        subject = n % self.subjects
        return {
            "subject": {"system": MRN[self.zone], "value": subject_value(self.zone, subject)},
            "device": {"id": f"fault-{subject:03d}", "model": "Fault Watch", "manufacturer": "QA"},
            "type": "heart-rate",
            "value": 50 + n % 50,
            "unit": "/min",
            "time": (self.base_time - timedelta(seconds=n // self.subjects)).isoformat(),
        }

    def body(self, numbers: Iterable[int]) -> bytes:
        return orjson.dumps({"readings": [self.reading(n) for n in numbers]})


@dataclass(slots=True)
class Ledger:
    """What one client was told: reading number → Observation id, for every reading the gateway
    acknowledged (created or duplicate), and what it saw of the failures."""

    acknowledged: dict[int, str] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no HTTP answer (connection refused or cut)
    seconds: float
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None


async def post_batch(
    http: aiohttp.ClientSession, gateway: GatewayProcess, token: str, body: bytes
) -> Answer:
    """One ingest request; a refused or cut connection is status 0, never an exception."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.monotonic()
    try:
        async with http.post(
            f"{gateway.base_url}/v1/ingest/native", data=body, headers=headers
        ) as response:
            payload = await response.read()
            parsed = orjson.loads(payload) if payload else {}
            return Answer(
                response.status,
                time.monotonic() - started,
                parsed if isinstance(parsed, dict) else {},
                response.headers.get("Retry-After"),
            )
    except (aiohttp.ClientError, OSError):
        return Answer(0, time.monotonic() - started)


def record(ledger: Ledger, numbers: list[int], answer: Answer) -> list[int]:
    """Enter the acknowledged readings of `answer` in `ledger`; the numbers left unacknowledged."""
    ledger.statuses[str(answer.status)] += 1
    if answer.status not in (200, 207):
        return list(numbers)
    unacknowledged = []
    results = answer.body["results"]
    assert len(results) == len(numbers)
    for n, result in zip(numbers, results, strict=True):
        if result["outcome"] in ACKNOWLEDGED:
            known = ledger.acknowledged.setdefault(n, result["id"])
            assert known == result["id"], "a reading keeps its Observation id"
        else:
            unacknowledged.append(n)
    return unacknowledged


async def stored_ids(dsn: str) -> Counter[str]:
    """How many rows each Observation id has in the zone database."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, count(*) AS n FROM observations GROUP BY id")
    finally:
        await conn.close()
    return Counter({row["id"]: int(row["n"]) for row in rows})


async def wait_for(
    what: str,
    predicate: Callable[[], Awaitable[bool]],
    *,
    timeout: float,  # noqa: ASYNC109 — a hard limit on every wait, by design
    interval: float = 0.05,
) -> None:
    """Poll the (async) `predicate` until it is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def allow_connections(server_dsn: str, dsn: str, allowed: bool) -> None:
    """Make the database of `dsn` refuse (or accept again) connections, ending every session it
    has: from the gateway's side, its zone database has gone away (tests/web/test_health_api.py
    does the same in-process)."""
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(server_dsn)
    try:
        # `name` is generated by the `databases` fixture from hex digits.
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await admin.close()


async def readiness(http: aiohttp.ClientSession, gateway: GatewayProcess) -> dict[str, str]:
    """/readyz's zone states; {} when the gateway does not answer."""
    try:
        async with http.get(f"{gateway.base_url}/readyz") as response:
            body = await response.json()
            return dict(body["zones"])
    except (aiohttp.ClientError, OSError, TimeoutError):
        return {}


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request of a load client: when it was sent (time.monotonic) and what came back."""

    sent_at: float
    numbers: list[int]
    answer: Answer


class LoadClient:
    """Posts batches of fresh readings (numbers `first`, `first + step`, …) to one zone until
    told to stop, keeping a ledger, every exchange, and the batches left unacknowledged."""

    def __init__(
        self,
        gateway: GatewayProcess,
        token: str,
        source: ReadingSource,
        *,
        first: int,
        step: int,
        batch: int = 20,
    ) -> None:
        self.gateway = gateway
        self.token = token
        self.source = source
        self.batch = batch
        self.ledger = Ledger()
        self.exchanges: list[Exchange] = []
        self.unacknowledged: list[list[int]] = []
        self.sent: set[int] = set()
        self._numbers = iter(range(first, 10**9, step))

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            while not stop.is_set():
                numbers = [next(self._numbers) for _ in range(self.batch)]
                self.sent.update(numbers)
                sent_at = time.monotonic()
                answer = await post_batch(http, self.gateway, self.token, self.source.body(numbers))
                self.exchanges.append(Exchange(sent_at, numbers, answer))
                if left := record(self.ledger, numbers, answer):
                    self.unacknowledged.append(left)
                    await asyncio.sleep(0.05)  # a refusing gateway is not hammered in a tight loop

    async def retry_unacknowledged(self, attempts: int = 20) -> None:
        """Send every unacknowledged reading again until it is acknowledged."""
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            for numbers in self.unacknowledged:
                left = numbers
                for _ in range(attempts):
                    answer = await post_batch(
                        http, self.gateway, self.token, self.source.body(left)
                    )
                    left = record(self.ledger, left, answer)
                    if not left:
                        break
                    await asyncio.sleep(0.2)
                assert not left, f"a retry is acknowledged (last answer {answer.status})"
        self.unacknowledged = []


async def assert_stored_exactly_once(dsn: str, clients: Iterable[LoadClient]) -> None:
    """Every reading the clients sent was acknowledged, and each is stored once, no more."""
    acknowledged: dict[int, str] = {}
    sent: set[int] = set()
    for client in clients:
        sent |= client.sent
        for number, observation_id in client.ledger.acknowledged.items():
            assert acknowledged.setdefault(number, observation_id) == observation_id
    stored = await stored_ids(dsn)
    assert set(acknowledged) == sent, "every reading sent was acknowledged in the end"
    assert all(stored[observation_id] == 1 for observation_id in acknowledged.values()), (
        "every acknowledged reading is stored exactly once"
    )
    assert sum(stored.values()) == len(sent), "no duplicate rows from retries"


# --- an embedded PostgreSQL that a test may stop and start ---------------------------------------


@contextlib.asynccontextmanager
async def embedded_postgres() -> AsyncIterator[Any]:
    """A `pgserver` PostgreSQL of the test's own (unix socket only), stopped at the end however
    often the test stopped and started it."""
    import pgserver

    # Run as root, pgserver runs PostgreSQL as its own `pgserver` user, which must be able to
    # reach the data folder: pytest's tmp_path sits under a 0700 root folder, so the data lives
    # in a folder of its own directly under the system temporary folder.
    folder = Path(tempfile.mkdtemp(prefix="wg-fault-pg-"))
    server = await asyncio.to_thread(pgserver.get_server, folder, cleanup_mode="stop")
    try:
        yield server
    finally:
        # pgserver stops only the postmaster it started itself; after a restart that one is
        # gone, so stop whichever is running first.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stop_postgres, server)
        await asyncio.to_thread(server.cleanup)
        shutil.rmtree(folder, ignore_errors=True)


def stop_postgres(server: Any) -> None:
    """`pg_ctl stop -m fast`: sessions are ended and the server shuts down, as in a restart."""
    from pgserver import pg_ctl

    pg_ctl(
        ["-w", "-m", "fast", "-t", "30", "stop"],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=40,
    )


def start_postgres(server: Any) -> None:
    """Start the server again on the same socket, so the zone's URL still points at it."""
    from pgserver import pg_ctl

    info = server.get_postmaster_info()
    pg_ctl(
        [
            "-w",
            "-t",
            "30",
            "-o",
            '-h ""',
            "-o",
            f"-k {info.socket_dir}",
            "-l",
            str(server.log),
            "start",
        ],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=40,
    )


# --- a database that accepts TCP but never answers ---------------------------------------------


class SilentProxy:
    """A loopback TCP proxy in front of a real PostgreSQL that can stop answering: once
    `silence()`d it still accepts connections and reads what clients send, but forwards nothing,
    either way (a hung database host, a network dropping packets). `resume()` forwards what was
    held, in order, and everything after it. `async with` closes every connection on the way out.
    """

    def __init__(self, upstream_dsn: str) -> None:
        parts = urlsplit(upstream_dsn)
        port = parts.port or 5432
        # The embedded server (pgserver) listens on a unix socket only, named by the URL's
        # `host` query parameter (a folder): the proxy reaches it there, clients reach the proxy
        # over loopback TCP.
        folder = dict(parse_qsl(parts.query)).get("host", "")
        self._socket_path = f"{folder}/.s.PGSQL.{port}" if folder.startswith("/") else None
        self._upstream = (parts.hostname or "127.0.0.1", port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        # Connections that sent the server something it has not answered yet.
        self._awaiting_reply: set[int] = set()
        self.port = 0

    async def __aenter__(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        # The pumps, not the connection tasks: asyncio logs a cancelled connection callback.
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def dsn(self, dsn: str) -> str:
        """`dsn` (a database on the upstream server) reached through the proxy."""
        parts = urlsplit(dsn)
        netloc = (
            f"{parts.username}@127.0.0.1:{self.port}"
            if parts.username
            else f"127.0.0.1:{self.port}"
        )
        # Without the socket folder, the client connects to the proxy's loopback port.
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
        return parts._replace(netloc=netloc, query=query).geturl()

    def silence(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def silence_mid_statement(self) -> None:
        """Silence the proxy at a moment when some client waits for the server's reply, so the
        silence strikes work already in flight."""

        async def in_flight() -> bool:
            return bool(self._awaiting_reply)

        await wait_for("a statement in flight", in_flight, timeout=10, interval=0.001)
        self.silence()

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        try:
            if self._socket_path is not None:
                server_r, server_w = await asyncio.open_unix_connection(self._socket_path)
            else:
                server_r, server_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        self._writers.add(server_w)
        key = id(client_w)
        pumps = [
            asyncio.create_task(
                self._pump(client_r, server_w, lambda: self._awaiting_reply.add(key))
            ),
            asyncio.create_task(
                self._pump(server_r, client_w, lambda: self._awaiting_reply.discard(key))
            ),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._pumps.discard(pump)
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()
                self._writers.discard(writer)
            self._awaiting_reply.discard(key)
            self._tasks.discard(task)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        forwarded: Callable[[], None],
    ) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = await source.read(65536)
                await self._flowing.wait()  # silent: what was read is held, nothing answers
                if not data:
                    return
                sink.write(data)
                forwarded()
                await sink.drain()
