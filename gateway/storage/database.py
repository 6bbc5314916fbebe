"""One zone's PostgreSQL database: its connection pool and the stores that use it. Nothing of one
zone is ever written through another zone's `ZoneDatabase` (ARCHITECTURE §2)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.errors import ConfigurationError, ZoneUnavailable
from gateway.storage import schema
from gateway.storage.audit import AuditStore
from gateway.storage.credentials import CredentialStore
from gateway.storage.dead_letters import DeadLetterStore
from gateway.storage.devices import DeviceStore
from gateway.storage.driver_errors import UNAVAILABLE_ERRORS, is_unavailable
from gateway.storage.exports import ExportJobStore
from gateway.storage.fhir_search import FhirSearchStore
from gateway.storage.key_ring import KeyRingListener, KeyRingStore
from gateway.storage.notifications import NotificationStore
from gateway.storage.observations import ObservationStore
from gateway.storage.pool import TransactionObserver, ZonePool
from gateway.storage.residency import ResidencyStore
from gateway.storage.smart import SmartClientStore
from gateway.storage.studies import StudyStore
from gateway.storage.subjects import SubjectStore
from gateway.storage.writer import BatchObserver, GroupCommitWriter, WriterSettings

_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def connect_failure(exc: Exception, zone: str | None) -> Exception:
    """What to raise when a connection to a zone database could not be opened: a one-line
    `GatewayError` for the failures an operator meets (no such database, credentials refused,
    nothing answering), `exc` itself for anything else. Never the URL: it may hold a password."""
    where = f"zone {zone}: " if zone else ""
    state = str(getattr(exc, "sqlstate", "") or "")
    if state == "3D000":
        return ConfigurationError(f"{where}the database does not exist (create it, then migrate)")
    if state.startswith("28"):  # class 28: invalid authorization specification
        return ConfigurationError(f"{where}the database refused the role or its password")
    if is_unavailable(exc):
        return ZoneUnavailable(f"{where}database did not answer")
    return exc


@dataclass(frozen=True, slots=True)
class PoolUsage:
    size: int
    idle: int
    max_size: int
    queued_rows: int  # rows waiting for the group-commit writer


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb travels as bytes both ways: the binary jsonb format is a version byte (1) followed
    # by the JSON text, so orjson's output is sent without a decode/encode round trip.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: b"\x01" + value,
        decoder=lambda data: data[1:],
        format="binary",
    )


class ZoneDatabase:
    def __init__(
        self,
        zone: str,
        pool: ZonePool,
        max_size: int,
        writer_settings: WriterSettings | None = None,
        on_batch: BatchObserver | None = None,
        *,
        dsn: str | None = None,
        command_timeout: float = 10.0,
    ) -> None:
        self.zone = zone
        self._pool = pool
        self._dsn = dsn
        self._command_timeout = command_timeout
        self._max_size = max_size
        self.subjects = SubjectStore(pool)
        self.observations = ObservationStore(pool)
        # Every Observation write of the zone goes through this one queue (group commit).
        self.writer = GroupCommitWriter(
            self.observations,
            writer_settings,
            zone=zone,
            on_batch=on_batch,
            timeout_seconds=pool.timeout,
        )
        self.credentials = CredentialStore(pool)
        self.dead_letters = DeadLetterStore(pool)
        self.smart = SmartClientStore(pool)
        self.fhir_search = FhirSearchStore(pool)  # FHIR reads and searches
        self.devices = DeviceStore(pool)
        self.notifications = NotificationStore(pool)
        self.audit = AuditStore(pool)
        self.residency = ResidencyStore(pool)  # residency report
        self.studies = StudyStore(pool)  # research extracts
        self.exports = ExportJobStore(pool)
        self.key_ring = KeyRingStore(pool)  # key rotation across processes (migration 0010)

    @classmethod
    async def connect(
        cls,
        zone: str,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 10.0,
        check_schema: bool = True,
        writer_settings: WriterSettings | None = None,
        on_batch: BatchObserver | None = None,
        on_transaction: TransactionObserver | None = None,
    ) -> ZoneDatabase:
        """Open the zone's pool. `on_batch` hears the size of each group-commit batch,
        `on_transaction` the name, duration and outcome of each operation (storage/pool.py)."""
        try:
            raw = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                # A database that accepts TCP but never answers must fail as fast as a query.
                timeout=command_timeout,
                init=_init_connection,
                # Each zone's sessions identify themselves in pg_stat_activity.
                server_settings={"application_name": f"wearable-gateway/{zone}"},
            )
        except Exception as exc:
            raise connect_failure(exc, zone) from exc
        # Every later use of the pool is one operation with one deadline (storage/pool.py).
        pool = ZonePool(raw, command_timeout, zone=zone, observer=on_transaction)
        database = cls(
            zone,
            pool,
            max_size,
            writer_settings,
            on_batch,
            dsn=dsn,
            command_timeout=command_timeout,
        )
        if check_schema:
            try:
                async with pool.acquire("database.check_schema") as conn:
                    await schema.check_version(conn, zone)
            except BaseException:
                await pool.close()
                raise
        database.writer.start()
        return database

    async def close(self) -> None:
        """Write what is queued, then close the pool."""
        await self.writer.stop()
        await self._pool.close()

    async def ping(self, limit_seconds: float) -> bool:
        """Whether the database answers `SELECT 1` within `limit_seconds`, everything included
        (a free connection, or a new one, and handing it back)."""
        try:
            async with self._pool.operation("database.ping", limit_seconds):
                await self._pool.fetchval("database.select_one", "SELECT 1")
        except ZoneUnavailable:
            return False
        return True

    async def listen_key_ring(self, on_change: Callable[[], None]) -> KeyRingListener | None:
        """A listener for key ring changes on its own connection; None when this database was
        not opened from a DSN or does not answer (the caller's periodic check covers that)."""
        if self._dsn is None:
            return None
        try:
            return await KeyRingListener.open(
                self._dsn, on_change, timeout_seconds=self._command_timeout
            )
        except UNAVAILABLE_ERRORS:
            return None

    def usage(self) -> PoolUsage:
        return PoolUsage(
            size=self._pool.get_size(),
            idle=self._pool.get_idle_size(),
            max_size=self._max_size,
            queued_rows=self.writer.queued_rows,
        )


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server URL (host, socket, options) with another database name."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def ensure_database(server_dsn: str, database: str) -> str:
    """Create `database` on the server if it does not exist; returns its URL."""
    if not _DATABASE_NAME.match(database):
        raise ValueError("database names are lower-case letters, digits and underscores")
    async with admin_connection(server_dsn) as conn:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    return dsn_with_database(server_dsn, database)


@asynccontextmanager
async def admin_connection(
    dsn: str, *, zone: str | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """One connection for a schema or upkeep command (`migrate`, `storage cluster`): these need
    the role that owns the tables. Run with the gateway's role instead (deploy/: it has grants,
    owns nothing), PostgreSQL refuses with 42501; that is one line, not a traceback."""
    try:
        conn = await asyncpg.connect(dsn)
    except Exception as exc:
        raise connect_failure(exc, zone) from exc
    try:
        yield conn
    except asyncpg.InsufficientPrivilegeError as exc:
        where = f"zone {zone}: " if zone else ""
        raise ConfigurationError(
            f"{where}this command needs the database role that owns the tables (the migration "
            "role's URL), not the gateway's role"
        ) from exc
    finally:
        await conn.close()


async def migrate_database(
    dsn: str, *, zone: str | None = None, grant_to: str | None = None, up_to: int | None = None
) -> list[schema.Migration]:
    """Apply pending migrations (up to `up_to`); with `grant_to`, then give that role what the
    gateway needs."""
    async with admin_connection(dsn, zone=zone) as conn:
        applied = await schema.migrate(conn, zone=zone, up_to=up_to)
        if grant_to is not None:
            await schema.grant_gateway_role(conn, grant_to)
        return applied
