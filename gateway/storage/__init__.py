"""The only package that talks to PostgreSQL (asyncpg). Every query is here."""

from gateway.storage.credentials import CredentialKind, StoredCredential
from gateway.storage.database import (
    UNAVAILABLE_ERRORS,
    PoolUsage,
    ZoneDatabase,
    dsn_with_database,
    ensure_database,
    is_unavailable,
    migrate_database,
)
from gateway.storage.schema import LATEST_VERSION
from gateway.storage.subjects import StoredSubject
from gateway.storage.writer import Overloaded, WriterSettings

__all__ = [
    "LATEST_VERSION",
    "UNAVAILABLE_ERRORS",
    "CredentialKind",
    "Overloaded",
    "PoolUsage",
    "StoredCredential",
    "StoredSubject",
    "WriterSettings",
    "ZoneDatabase",
    "dsn_with_database",
    "ensure_database",
    "is_unavailable",
    "migrate_database",
]
