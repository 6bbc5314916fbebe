"""Group commit: Observation rows from concurrent requests are written together.

A single autocommit insert per request caps ingest near the disk's fsync rate (ARCHITECTURE §5).
Here each zone has one queue: requests put their rows in it and wait; a writer task takes all
that is queued (up to `max_batch_rows`), writes it with one `ObservationStore.insert_many` — one
statement, one transaction, one fsync — and answers every request in the batch once it has
committed. Under load batches grow by themselves (rows arrive while the previous batch is being
written); `max_wait_seconds` optionally holds a small batch back to let more join it.

Semantics are those of `insert_many` on the combined rows: within a batch the first copy of a
reading is `created` and later copies (from the same or another request) are `duplicate`, so
concurrent requests converge exactly as they would one after another.

Failures: if the database is unavailable the whole batch fails and every request in it gets the
error (nothing was committed, so nothing is reported created). Any other error may come from one
bad row; then each request's rows are retried on their own so one request cannot fail others.

Backpressure: at most `max_queued_rows` wait; past that `write` raises `Overloaded` (503 with
Retry-After) at once instead of letting memory grow.

Deadline: with `timeout_seconds` (the zone's `db_timeout_seconds`), a request's `write` is one
database operation (storage/pool.py): waiting in the queue, for a free batch slot and for its
batch to commit all draw from one deadline, and at it the request gets `DatabaseUnavailable` (503)
while its rows, if still queued, leave the queue. Each batch is an operation of its own, so a batch
stuck on a silent database gives its slot back within the same bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.errors import Overloaded, ZoneUnavailable
from gateway.logs import event
from gateway.models import ObservationRow, Outcome
from gateway.storage.driver_errors import unavailable_as_gateway_error
from gateway.storage.observations import ObservationStore
from gateway.storage.pool import within

log = logging.getLogger("gateway.storage.writer")


@dataclass(frozen=True, slots=True)
class WriterSettings:
    max_batch_rows: int = 5_000
    max_wait_seconds: float = 0.0
    max_queued_rows: int = 100_000
    concurrent_batches: int = 2


@dataclass(slots=True, eq=False)  # compared by identity: `deque.remove` of one request
class _Pending:
    rows: Sequence[ObservationRow]
    done: asyncio.Future[list[Outcome]]


BatchObserver = Callable[[int], None]


class GroupCommitWriter:
    def __init__(
        self,
        store: ObservationStore,
        settings: WriterSettings | None = None,
        *,
        zone: str = "",
        on_batch: BatchObserver | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._timeout = timeout_seconds
        self._zone = zone
        self._settings = settings or WriterSettings()
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self._settings.concurrent_batches)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Refuse new rows, write everything already queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def write(self, rows: Sequence[ObservationRow]) -> list[Outcome]:
        """Outcomes of `rows`, in order, once the batch holding them has committed."""
        if not rows:
            return []
        if self._closing:
            raise ZoneUnavailable("the zone's writer is not accepting rows; retry later")
        if self._queued_rows + len(rows) > self._settings.max_queued_rows and self._queue:
            raise Overloaded("the zone's write queue is full; retry later", self._zone)
        pending = _Pending(rows, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._queued_rows += len(rows)
        self._wake.set()
        # Shielded: a client that goes away (or a deadline) must not cancel the write others
        # share; rows already in a batch are stored anyway (ingest is idempotent, so a retry is
        # answered `duplicate`).
        if self._timeout is None:
            return await asyncio.shield(pending.done)
        try:
            with unavailable_as_gateway_error():
                async with within(self._timeout):
                    return await asyncio.shield(pending.done)
        except BaseException:
            self._withdraw(pending)
            raise

    def _withdraw(self, pending: _Pending) -> None:
        """Take a request nobody waits for any more out of the queue, if no batch has it yet."""
        try:
            self._queue.remove(pending)
        except ValueError:
            return
        self._queued_rows -= len(pending.rows)

    async def _run(self) -> None:
        try:
            await self._loop()
        except BaseException as exc:
            # The writer must never die silently with requests waiting on it forever.
            self._closing = True
            event(log, "group_commit.writer_failed", logging.ERROR, exc_info=True)
            while self._queue:
                _settle(
                    self._queue.popleft(),
                    error=ZoneUnavailable("the zone's writer stopped; retry later"),
                )
            self._queued_rows = 0
            if not isinstance(exc, Exception):
                raise

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if self._should_wait():
                    await asyncio.sleep(self._settings.max_wait_seconds)
                await self._slots.acquire()
                batch = self._take()
                task = asyncio.get_running_loop().create_task(self._write(batch))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if self._closing:
                if self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)
                if not self._queue:
                    return

    def _should_wait(self) -> bool:
        return (
            self._settings.max_wait_seconds > 0
            and not self._closing
            and self._queued_rows < self._settings.max_batch_rows
        )

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue and (
            not batch or rows + len(self._queue[0].rows) <= self._settings.max_batch_rows
        ):
            pending = self._queue.popleft()
            batch.append(pending)
            rows += len(pending.rows)
        self._queued_rows -= rows
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            rows = [row for pending in batch for row in pending.rows]
            if self._on_batch is not None:
                self._on_batch(len(rows))
            try:
                outcomes = await self._insert(rows)
            except Exception as exc:
                if isinstance(exc, ZoneUnavailable) or len(batch) == 1:
                    for pending in batch:
                        _settle(pending, error=exc)
                    return
                # Possibly one poisonous request: give each its own statement.
                event(log, "group_commit.batch_split", logging.WARNING, requests=len(batch))
                for pending in batch:
                    try:
                        _settle(pending, outcomes=await self._insert(pending.rows))
                    except Exception as single:
                        _settle(pending, error=single)
                return
            start = 0
            for pending in batch:
                end = start + len(pending.rows)
                _settle(pending, outcomes=outcomes[start:end])
                start = end
        finally:
            self._slots.release()

    async def _insert(self, rows: Sequence[ObservationRow]) -> list[Outcome]:
        """One batch statement set (partitions, insert, versions) as one bounded operation."""
        with unavailable_as_gateway_error():
            if self._timeout is None:
                return await self._store.insert_many(rows)
            async with within(self._timeout):
                return await self._store.insert_many(rows)


def _settle(
    pending: _Pending, *, outcomes: list[Outcome] | None = None, error: BaseException | None = None
) -> None:
    if pending.done.done():
        return
    if error is not None:
        pending.done.set_exception(error)
    else:
        pending.done.set_result(outcomes or [])
    # A future whose waiter is gone must not log "exception was never retrieved".
    with contextlib.suppress(BaseException):
        pending.done.exception()
