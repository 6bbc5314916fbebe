"""What the driver's exceptions mean, translated into the gateway's error tree here, at the
storage boundary: above storage, a database that stopped answering is `DatabaseUnavailable`
(503 zone-unavailable), and nothing outside this package inspects asyncpg exceptions.
A statement PostgreSQL refused (a bug or bad data) is not translated: it stays the driver's
error, which the web layer answers with a 500 that says nothing of the input."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from gateway.errors import DatabaseUnavailable

# Connection-level failures that mean "the zone's database is not answering", as opposed to a
# query that PostgreSQL itself refused.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # Raised when the server killed a pooled connection while the pool still held it
    # ("cannot switch to state …"): the connection is gone, not the statement wrong.
    asyncpg.InternalClientError,
)

# SQLSTATEs that mean the server will not serve this database now (PostgreSQL appendix A):
# class 08 connection exception, 53 insufficient resources (e.g. too many connections),
# 57P operator intervention (shutdown, crash, database dropped), 3D000 database does not exist,
# 55000 database not accepting connections.
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")
_UNAVAILABLE_SQLSTATES = frozenset({"3D000", "55000"})


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc`, a driver or socket error, means the zone's database is not answering
    (retry later), as opposed to a statement that PostgreSQL refused (a bug or bad data)."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state in _UNAVAILABLE_SQLSTATES or state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
    return False


@contextmanager
def unavailable_as_gateway_error() -> Iterator[None]:
    """Raise `DatabaseUnavailable` (from the driver's error) for a database that stopped
    answering inside this block; let every other exception through unchanged."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable("the zone's database is not answering; retry later") from exc
        raise
