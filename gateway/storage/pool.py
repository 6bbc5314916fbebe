"""A zone's connection pool with ONE deadline per database operation.

asyncpg bounds each stage on its own: opening a connection by `timeout`, a statement by
`command_timeout`; and a statement that timed out (or whose task was cancelled) is followed by a
CancelRequest on a new connection, which the pool waits for — up to `command_timeout` again —
before it takes the connection back. Against a database that accepts TCP but never answers the
stages add up: a hung statement was answered after twice `db_timeout_seconds`, a request queued
behind it that then needed a new connection later still, and a `/readyz` probe after its own
limit plus `db_timeout_seconds`.

Here one operation has one deadline, `timeout` seconds after it starts, and every stage draws
from it: waiting for a free connection, opening one (TCP, startup, `init`), each statement,
COMMIT, and handing the connection back. An operation is one `acquire()` block (everything done
on that connection), one `fetch`/`fetchrow`/`fetchval`/`execute`, or an enclosing `operation()`
scope: the group-commit writer puts one around a request's wait for its batch, the readiness probe
one of its own, shorter. An operation started inside another keeps the earlier deadline. At the
deadline the operation raises `TimeoutError`, which leaves this module, as every driver error
that means the database is not answering, as `DatabaseUnavailable` (503 `zone-unavailable` with
Retry-After; storage/driver_errors.py); a connection left mid-statement is terminated instead of
waited for, so a connection stuck on a silent server is discarded and the pool opens a fresh one
for the next operation.

The one exception is `stream()`, a connection held for as long as a server-side cursor is read by
a slow consumer (an export): getting it is one operation; then each statement is bounded on its
own (asyncpg's `command_timeout`, the same `timeout`) and a stuck one is discarded the same way.

Every entry point takes a name (storage/transactions.py), and each operation is reported once it
has ended — its zone, its name, its seconds (from the call until the connection was handed back)
and `ok` or `error` — to the pool's `TransactionObserver`, if it has one. `error` is an operation
that raised or was cancelled (its transaction, if any, rolled back); a stream whose reader stopped
early (`GeneratorExit`) is `ok`. An operation inside another is reported on its own as well. The
cost is one pair of `loop.time()` calls, the first shared with the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Literal

import asyncpg

from gateway.storage.driver_errors import unavailable_as_gateway_error
from gateway.storage.transactions import TransactionName

TransactionOutcome = Literal["ok", "error"]
# (zone, name, seconds, outcome) of one ended operation; runs on the event loop: keep it cheap.
TransactionObserver = Callable[[str, TransactionName, float, TransactionOutcome], None]

# The loop time by which the current task's database operation must end, if one is running.
_DEADLINE: ContextVar[float | None] = ContextVar("gateway_db_deadline", default=None)


@asynccontextmanager
async def within(seconds: float, *, now: float | None = None) -> AsyncIterator[float]:
    """One database operation: everything inside must end within `seconds` from `now` (the loop
    time, read here if not given), or by the deadline of the operation this one runs inside, if
    that is earlier; else `TimeoutError`.

    Not for code that yields to a consumer while inside (an async generator): the deadline would
    then fire in the consumer's code.
    """
    deadline = (asyncio.get_running_loop().time() if now is None else now) + seconds
    outer = _DEADLINE.get()
    if outer is not None and outer <= deadline:
        # The enclosing operation's timer is already armed and fires first.
        yield outer
        return
    token = _DEADLINE.set(deadline)
    try:
        async with asyncio.timeout_at(deadline):
            yield deadline
    finally:
        _DEADLINE.reset(token)


def _remaining(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()


class ZonePool:
    """The subset of `asyncpg.Pool` the stores use, each call one bounded, named operation."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        timeout: float,
        *,
        zone: str = "",
        observer: TransactionObserver | None = None,
    ) -> None:
        self._pool = pool
        self.timeout = timeout
        self._zone = zone
        self._observer = observer

    def _report(self, name: TransactionName, start: float, outcome: TransactionOutcome) -> None:
        if self._observer is not None:
            seconds = asyncio.get_running_loop().time() - start
            self._observer(self._zone, name, seconds, outcome)

    # Each entry point reports in its own `try` rather than through one more context manager:
    # this runs for every statement of the zone, and a nested generator costs more than the lines.

    @asynccontextmanager
    async def operation(
        self, name: TransactionName, seconds: float | None = None
    ) -> AsyncIterator[float]:
        """A scope whose database work shares one deadline (`timeout` unless `seconds`)."""
        start = asyncio.get_running_loop().time()
        outcome: TransactionOutcome = "error"
        try:
            with unavailable_as_gateway_error():
                limit = self.timeout if seconds is None else seconds
                async with within(limit, now=start) as deadline:
                    yield deadline
            outcome = "ok"
        finally:
            self._report(name, start, outcome)

    @asynccontextmanager
    async def acquire(self, name: TransactionName) -> AsyncIterator[asyncpg.Connection]:
        start = asyncio.get_running_loop().time()
        outcome: TransactionOutcome = "error"
        try:
            with unavailable_as_gateway_error():
                async with within(self.timeout, now=start) as deadline:
                    conn = await self._pool.acquire()
                    async with self._held(conn, lambda: _remaining(deadline)):
                        yield conn
            outcome = "ok"
        finally:
            self._report(name, start, outcome)

    @asynccontextmanager
    async def stream(self, name: TransactionName) -> AsyncIterator[asyncpg.Connection]:
        start = asyncio.get_running_loop().time()
        outcome: TransactionOutcome = "error"
        try:
            with unavailable_as_gateway_error():
                conn = None
                try:
                    async with within(self.timeout, now=start):
                        conn = await self._pool.acquire()
                except BaseException:
                    if conn is not None:  # acquired just as the deadline fired
                        conn.terminate()
                        await self._pool.release(conn, timeout=self.timeout)
                    raise
                async with self._held(conn, lambda: self.timeout):
                    yield conn
            outcome = "ok"
        except GeneratorExit:
            outcome = "ok"  # the reader stopped early (an async generator closed): nothing failed
            raise
        finally:
            self._report(name, start, outcome)

    @asynccontextmanager
    async def _held(self, conn: Any, release_budget: Callable[[], float]) -> AsyncIterator[None]:
        try:
            yield
        except (asyncio.CancelledError, TimeoutError):
            # The statement may still be outstanding: asyncpg would send a CancelRequest and
            # wait for the server to acknowledge it before reusing the connection — a second
            # timeout against a server that does not answer. Discard the connection instead.
            conn.terminate()
            raise
        finally:
            # After terminate() this returns at once; otherwise the reset statements draw from
            # what is left of the deadline (and a connection that cannot reset is terminated).
            await self._pool.release(conn, timeout=max(release_budget(), 0.001))

    async def fetch(self, name: TransactionName, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire(name) as conn:
            return await conn.fetch(query, *args)  # type: ignore[no-any-return]

    async def fetchrow(
        self, name: TransactionName, query: str, *args: Any
    ) -> asyncpg.Record | None:
        async with self.acquire(name) as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, name: TransactionName, query: str, *args: Any) -> Any:
        async with self.acquire(name) as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, name: TransactionName, query: str, *args: Any) -> str:
        async with self.acquire(name) as conn:
            return await conn.execute(query, *args)  # type: ignore[no-any-return]

    def get_size(self) -> int:
        return int(self._pool.get_size())

    def get_idle_size(self) -> int:
        return int(self._pool.get_idle_size())

    async def close(self) -> None:
        await self._pool.close()
