"""The only package that talks to PostgreSQL (asyncpg). Every query is here, and every driver
error that means a zone's database stopped answering leaves it as `DatabaseUnavailable`
(storage/driver_errors.py)."""

from gateway.storage.credentials import CredentialKind, StoredCredential
from gateway.storage.database import (
    PoolUsage,
    ZoneDatabase,
    dsn_with_database,
    ensure_database,
    migrate_database,
)
from gateway.storage.pool import TransactionObserver, TransactionOutcome
from gateway.storage.schema import LATEST_VERSION
from gateway.storage.subjects import StoredSubject
from gateway.storage.transactions import TRANSACTION_NAMES, TransactionName
from gateway.storage.writer import WriterSettings

__all__ = [
    "LATEST_VERSION",
    "TRANSACTION_NAMES",
    "CredentialKind",
    "PoolUsage",
    "StoredCredential",
    "StoredSubject",
    "TransactionName",
    "TransactionObserver",
    "TransactionOutcome",
    "WriterSettings",
    "ZoneDatabase",
    "dsn_with_database",
    "ensure_database",
    "migrate_database",
]
