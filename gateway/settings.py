"""Frozen settings from a TOML file and the environment (the environment wins).

Secrets (database URLs carry passwords) may come from files: every `*_URL` setting also has a
`*_URL_FILE` form, as container secret mounts provide them.

    GATEWAY_CONFIG=/etc/wearable-gateway/gateway.toml
    GATEWAY_ZONES=cn,eu
    GATEWAY_ZONE_CN_DATABASE_URL=postgresql://...      (or GATEWAY_ZONE_CN_DATABASE_URL_FILE)
    GATEWAY_ZONE_CN_KEY_FILE=/run/secrets/cn.keys.json
    GATEWAY_HOST, GATEWAY_PORT, GATEWAY_METRICS_HOST, GATEWAY_METRICS_PORT,
    GATEWAY_MAX_BODY_BYTES, GATEWAY_MAX_READINGS,
    GATEWAY_MAX_EXPORT_BYTES, GATEWAY_EXPORT_BATCH_READINGS, GATEWAY_WRITE_BATCH_ROWS,
    GATEWAY_WRITE_MAX_WAIT_SECONDS, GATEWAY_WRITE_QUEUE_ROWS, GATEWAY_WRITE_CONCURRENCY,
    GATEWAY_LOOKUP_CACHE_SECONDS,
    GATEWAY_MAX_FUTURE_SKEW_SECONDS, GATEWAY_POOL_MIN_SIZE, GATEWAY_POOL_MAX_SIZE,
    GATEWAY_DB_TIMEOUT_SECONDS, GATEWAY_LOG_LEVEL, GATEWAY_PUBLIC_BASE_URL,
    GATEWAY_TOKEN_LIFETIME_SECONDS, GATEWAY_RATE_LIMIT_PER_SECOND, GATEWAY_RATE_LIMIT_BURST,
    GATEWAY_HEADER_TIMEOUT_SECONDS, GATEWAY_REQUEST_TIMEOUT_SECONDS, GATEWAY_EXPORT_TIMEOUT_SECONDS

Unknown keys in the file are refused: a misspelt setting must not silently keep its default.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigurationError

# Zone names appear inside API keys (`wgk_<zone>_...`): letters and digits only.
_ZONE_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_ZONE_KEYS = frozenset({"database_url", "database_url_file", "key_file"})


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    name: str
    database_url: str
    key_file: Path | None  # None only for commands that need no keys (`migrate`)

    def __repr__(self) -> str:
        # The URL may carry a password: never show it.
        return f"ZoneSettings(name={self.name!r}, key_file={str(self.key_file)!r})"


@dataclass(frozen=True, slots=True)
class Settings:
    zones: Mapping[str, ZoneSettings]
    host: str = "127.0.0.1"
    port: int = 8080
    # /metrics on a listener of its own (metrics_host, default: host) when metrics_port is set;
    # 0 keeps it on the public port, convenient on a laptop. Deployments set it (deploy/).
    metrics_host: str = ""
    metrics_port: int = 0
    max_body_bytes: int = 10 * 1024 * 1024
    max_readings: int = 10_000
    # Bulk uploads (Apple Health export.xml) stream in and are stored in batches.
    max_export_bytes: int = 4 * 1024**3
    export_batch_readings: int = 5_000
    # Group commit (gateway/storage/writer.py): rows per database batch, how long a small batch
    # may wait for company, how many rows may queue before 503, batches in flight per zone.
    write_batch_rows: int = 5_000
    write_max_wait_seconds: float = 0.0
    write_queue_rows: int = 100_000
    write_concurrency: int = 2
    # API-key and subject lookups are cached this long (0: off); a key revoked or a subject
    # erased by another process stops working within this time.
    lookup_cache_seconds: float = 5.0
    max_future_skew_seconds: int = 300
    pool_min_size: int = 1
    pool_max_size: int = 10
    db_timeout_seconds: float = 10.0
    log_level: str = "INFO"
    # The URL clients reach the gateway at (behind a proxy: the proxy's); "" means
    # http://{host}:{port} of the socket actually bound (gateway.app.listen). SMART client
    # assertions must name `<it>/auth/token` as their aud.
    public_base_url: str = ""
    # SMART backend services: access tokens live at most five minutes.
    token_lifetime_seconds: int = 300
    # Per API key (per credential, per process) token bucket: sustained requests/s and burst.
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 200
    # Slow clients: a request head must arrive within header_timeout_seconds of the connection
    # opening (or of the previous response: it is also the keep-alive idle time); a whole request
    # must be read and answered within request_timeout_seconds (export uploads: the export one).
    header_timeout_seconds: float = 75.0
    request_timeout_seconds: float = 60.0
    export_timeout_seconds: float = 3600.0
    # Key rotation across processes (gateway/runtime/key_ring.py): how often a serving process
    # checks the zone's published key ring (besides LISTEN/NOTIFY) and renews its lease, and how
    # long that lease lasts. `keys retire` waits for every unexpired lease to show the new ring;
    # a crashed gateway holds it back for at most key_lease_seconds.
    key_check_seconds: float = 5.0
    key_lease_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.zones:
            raise ConfigurationError("no zone is configured (GATEWAY_ZONES)")
        for name in self.zones:
            if not _ZONE_NAME.match(name):
                raise ConfigurationError(f"zone name {name!r} must match {_ZONE_NAME.pattern}")
        if not 0 <= self.port <= 65535 or not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError("port and metrics_port must be between 0 and 65535")
        for name in (
            "max_body_bytes",
            "max_readings",
            "max_export_bytes",
            "export_batch_readings",
            "write_batch_rows",
            "write_queue_rows",
            "write_concurrency",
            "pool_max_size",
            "rate_limit_burst",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        if not 0 <= self.pool_min_size <= self.pool_max_size:
            raise ConfigurationError("pool_min_size must be between 0 and pool_max_size")
        if self.write_max_wait_seconds < 0 or self.lookup_cache_seconds < 0:
            raise ConfigurationError(
                "write_max_wait_seconds and lookup_cache_seconds must not be negative"
            )
        if self.max_future_skew_seconds < 0 or self.db_timeout_seconds <= 0:
            raise ConfigurationError(
                "max_future_skew_seconds and db_timeout_seconds must be positive"
            )
        if self.log_level.upper() not in _LOG_LEVELS:
            raise ConfigurationError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")
        _require_positive(
            self,
            "rate_limit_per_second",
            "header_timeout_seconds",
            "request_timeout_seconds",
            "export_timeout_seconds",
            "key_check_seconds",
        )
        _check_key_lease(self)
        if not 1 <= self.token_lifetime_seconds <= 300:
            raise ConfigurationError("token_lifetime_seconds must be between 1 and 300")
        if self.public_base_url and not _BASE_URL.match(self.public_base_url):
            raise ConfigurationError(
                "public_base_url must be an http(s) URL without query or fragment"
            )
        object.__setattr__(self, "zones", MappingProxyType(dict(self.zones)))

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def base_url(self) -> str:
        """The externally visible base URL, without a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return (self.public_base_url or f"http://{host}:{self.port}").rstrip("/")


def _check_key_lease(settings: Settings) -> None:
    if settings.key_lease_seconds < 2 * settings.key_check_seconds:
        raise ConfigurationError(
            "key_lease_seconds must be at least twice key_check_seconds, so one late check "
            "does not let a live gateway's lease run out"
        )


def _require_positive(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigurationError(f"{name} must be positive")


_SCALARS: dict[str, type] = {
    "host": str,
    "port": int,
    "metrics_host": str,
    "metrics_port": int,
    "max_body_bytes": int,
    "max_readings": int,
    "max_export_bytes": int,
    "export_batch_readings": int,
    "write_batch_rows": int,
    "write_max_wait_seconds": float,
    "write_queue_rows": int,
    "write_concurrency": int,
    "lookup_cache_seconds": float,
    "max_future_skew_seconds": int,
    "pool_min_size": int,
    "pool_max_size": int,
    "db_timeout_seconds": float,
    "log_level": str,
    "public_base_url": str,
    "token_lifetime_seconds": int,
    "rate_limit_per_second": float,
    "rate_limit_burst": int,
    "header_timeout_seconds": float,
    "request_timeout_seconds": float,
    "export_timeout_seconds": float,
    "key_check_seconds": float,
    "key_lease_seconds": float,
}


def _coerce(name: str, raw: object) -> object:
    kind = _SCALARS[name]
    try:
        if kind is int:
            return int(str(raw))
        if kind is float:
            return float(str(raw))
        return str(raw)
    except ValueError as exc:
        raise ConfigurationError(f"setting {name} must be a {kind.__name__}") from exc


def _secret(environ: Mapping[str, str], name: str, table_value: object, table_file: object) -> str:
    if environ.get(name):
        return environ[name]
    file_path = environ.get(f"{name}_FILE") or table_file
    if file_path:
        try:
            return Path(str(file_path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {name}_FILE ({exc.strerror})") from exc
    if table_value:
        return str(table_value)
    raise ConfigurationError(f"{name} (or {name}_FILE) is not set")


def _refuse_unknown(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigurationError(f"unknown setting(s) in {where}: {', '.join(unknown)}")


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    *,
    require_keys: bool = True,
) -> Settings:
    env = os.environ if environ is None else environ
    path = config_path or (Path(env["GATEWAY_CONFIG"]) if env.get("GATEWAY_CONFIG") else None)
    table: dict[str, Any] = {}
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read settings file {path} ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"settings file {path} is not valid TOML: {exc}") from exc

    _refuse_unknown(table, frozenset({"server", "zones"}), "the settings file")
    server: dict[str, Any] = dict(table.get("server", {}))
    _refuse_unknown(server, frozenset(_SCALARS), "[server]")
    scalars: dict[str, object] = {}
    for name in _SCALARS:
        env_name = f"GATEWAY_{name.upper()}"
        if env.get(env_name):
            scalars[name] = _coerce(name, env[env_name])
        elif name in server:
            scalars[name] = _coerce(name, server[name])

    zone_tables: dict[str, Any] = dict(table.get("zones", {}))
    names_raw = env.get("GATEWAY_ZONES")
    names = (
        [n.strip() for n in names_raw.split(",") if n.strip()] if names_raw else list(zone_tables)
    )
    zones: dict[str, ZoneSettings] = {}
    for name in names:
        zone_table = zone_tables.get(name, {})
        _refuse_unknown(zone_table, _ZONE_KEYS, f"[zones.{name}]")
        prefix = f"GATEWAY_ZONE_{name.upper()}_"
        url = _secret(
            env,
            prefix + "DATABASE_URL",
            zone_table.get("database_url"),
            zone_table.get("database_url_file"),
        )
        key_file = env.get(prefix + "KEY_FILE") or zone_table.get("key_file")
        if not key_file and require_keys:
            raise ConfigurationError(f"{prefix}KEY_FILE is not set")
        zones[name] = ZoneSettings(
            name=name, database_url=url, key_file=Path(key_file) if key_file else None
        )
    return Settings(zones=zones, **scalars)  # type: ignore[arg-type]  # coerced per field above
