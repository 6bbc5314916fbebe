"""The background side of research exports: one task per served zone claims the zone's queued
jobs (FOR UPDATE SKIP LOCKED) and hands each to an ExportRunner; how each run ended is reported
to the composition root as a JobOutcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum

from gateway.logs import event
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.exports.runner import ExportRunner, JobStopped
from gateway.storage.exports import StoredJob

log = logging.getLogger("gateway.export")


class JobOutcome(StrEnum):
    """How a run of an export job ended (the `outcome` of `gateway_export_jobs_total`)."""

    COMPLETED = "completed"  # manifest served
    REFUSED = "refused"  # the policy refused it at run time (e.g. consent withdrawn)
    CANCELLED = "cancelled"  # deleted or expired while running
    FAILED = "failed"  # an error: the job is failed with "internal error"
    REQUEUED = "requeued"  # the process stopped: handed back for the next one


# (zone, outcome, resources released by type) once per run of a job; the composition root turns
# it into metrics, so this module needs no metrics library.
JobObserver = Callable[[str, JobOutcome, Mapping[str, int]], None]


class ExportWorkers:
    """One background task per served zone (started and stopped by the app's cleanup context).
    A job runs in the process serving its zone, on that zone's database and keys only."""

    def __init__(
        self,
        zones: ZoneDirectory,
        *,
        lease_seconds: float = 60.0,
        idle_seconds: float = 5.0,
        on_job_end: JobObserver | None = None,
    ) -> None:
        self._zones = zones
        self._lease = lease_seconds
        self._idle = idle_seconds
        self._on_job_end = on_job_end
        self._wake: dict[str, asyncio.Event] = {name: asyncio.Event() for name in zones}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for name, zone in self._zones.items():
            runner = ExportRunner(zone, self._lease)
            self._tasks.append(
                asyncio.create_task(self._loop(zone, runner), name=f"export-worker-{name}")
            )

    def wake(self, zone: str) -> None:
        if zone in self._wake:
            self._wake[zone].set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _loop(self, zone: Zone, runner: ExportRunner) -> None:
        wake = self._wake[zone.name]
        while True:
            try:
                await zone.db.exports.delete_expired(datetime.now(UTC))
                job = await zone.db.exports.claim(self._lease)
            except asyncio.CancelledError:
                raise
            except Exception:
                event(log, "export.claim_failed", logging.WARNING, zone=zone.name, exc_info=True)
                job = None
            if job is None:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._idle)
                continue
            await self._run(zone, runner, job)

    async def _run(self, zone: Zone, runner: ExportRunner, job: StoredJob) -> None:
        event(log, "export.started", zone=zone.name, study=job.study, job=job.id)
        try:
            released = await runner.run(job)
        except asyncio.CancelledError:
            # Shutting down: hand the job back so the next start (or another process) resumes it.
            self._ended(zone, JobOutcome.REQUEUED)
            await asyncio.shield(zone.db.exports.requeue(job.id))
            raise
        except JobStopped:
            event(log, "export.stopped", zone=zone.name, job=job.id)
            self._ended(zone, JobOutcome.CANCELLED)
        except Exception:
            # Exception messages may quote data: only the type is logged (gateway.logs).
            event(log, "export.failed", logging.ERROR, zone=zone.name, job=job.id, exc_info=True)
            self._ended(zone, JobOutcome.FAILED)
            with contextlib.suppress(Exception):
                await zone.db.exports.fail(job.id, "internal error")
        else:
            if released is None:
                self._ended(zone, JobOutcome.REFUSED)
            else:
                self._ended(zone, JobOutcome.COMPLETED, released)

    def _ended(
        self, zone: Zone, outcome: JobOutcome, released: Mapping[str, int] | None = None
    ) -> None:
        if self._on_job_end is not None:
            self._on_job_end(zone.name, outcome, released or {})
