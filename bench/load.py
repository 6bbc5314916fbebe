"""The load generator: an aiohttp client run as its own process by `bench.ingest`, so that building
and sending requests does not share an event loop with the measurements.

    python -m bench.load < spec.json      # results as one JSON object on stdout

The spec (JSON on stdin, so API keys never appear in a process list) says the mode:

- `batch`: `readings` native readings in bodies of `batch_size`, sent by `concurrency` clients;
  the run ends when every body was sent (or at `time_limit` seconds, reported as `timed_out`).
- `single`: one reading per request from `concurrency` connections for `warmup` + `duration`
  seconds (and at most `max_requests` requests); only requests started after the warm-up count.

Readings are numbered; `reading()` turns a number into the same body in every process, so the
benchmark can build the very rows the gateway will store (for the raw `COPY` baseline).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson

MRN_SYSTEM = "urn:oid:1.2.156.999.1"
SITE = "bench-site"
SUBJECT_PREFIX = "BENCH-"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)


def subject_value(n: int) -> str:
    return f"{SUBJECT_PREFIX}{n:05d}"


def reading(index: int, *, phase: str, subjects: int, base_time: datetime) -> dict[str, Any]:
    """Reading `index` of a phase: subjects in turn, each one second earlier than its previous
    reading, on a device of its own per phase, so no two readings of a run share a dedup key."""
    subject = index % subjects
    moment = base_time - timedelta(seconds=index // subjects)
    return {
        "subject": {"system": MRN_SYSTEM, "value": subject_value(subject)},
        "device": {"id": f"{phase}-{subject:05d}", "model": "Bench Watch", "manufacturer": "Bench"},
        "type": "heart-rate",
        "value": 55 + (index * 7919) % 40,
        "unit": "/min",
        "time": moment.isoformat(),
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of unsorted values; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50": round(percentile(ms, 0.50), 3),
        "p99": round(percentile(ms, 0.99), 3),
        "max": round(max(ms, default=0.0), 3),
        "mean": round(sum(ms) / len(ms), 3) if ms else 0.0,
        "count": len(ms),
    }


@dataclass(frozen=True, slots=True)
class Spec:
    mode: str
    url: str
    token: str
    concurrency: int
    phase: str
    subjects: int
    base_time: datetime
    readings: int = 0
    batch_size: int = 500
    duration: float = 0.0
    warmup: float = 0.0
    max_requests: int = 1_000_000
    time_limit: float = 600.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        fields = dict(data)
        fields["base_time"] = datetime.fromisoformat(data["base_time"])
        return cls(**fields)


async def run_batch(spec: Spec, session: aiohttp.ClientSession) -> dict[str, Any]:
    bodies = []
    for start in range(0, spec.readings, spec.batch_size):
        stop = min(start + spec.batch_size, spec.readings)
        batch = [
            reading(i, phase=spec.phase, subjects=spec.subjects, base_time=spec.base_time)
            for i in range(start, stop)
        ]
        bodies.append(orjson.dumps({"readings": batch}))
    headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    created = 0
    next_body = 0

    async def client() -> None:
        nonlocal next_body, created
        while next_body < len(bodies):
            body = bodies[next_body]
            next_body += 1
            sent = time.perf_counter()
            async with session.post(spec.url, data=body, headers=headers) as response:
                payload = await response.read()
            latencies.append(time.perf_counter() - sent)
            statuses[response.status] += 1
            if response.status == 200:
                created += orjson.loads(payload)["summary"]["created"]

    started = time.perf_counter()
    timed_out = False
    try:
        async with asyncio.timeout(spec.time_limit):
            await asyncio.gather(*(client() for _ in range(spec.concurrency)))
    except TimeoutError:
        timed_out = True
    elapsed = time.perf_counter() - started
    return {
        "mode": "batch",
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "readings_sent": min(spec.readings, statuses.total() * spec.batch_size),
        "created": created,
        "elapsed_s": round(elapsed, 4),
        "readings_per_s": round(created / elapsed, 1) if elapsed else 0.0,
        "latency_ms": latency_summary(latencies),
        "timed_out": timed_out,
    }


async def run_single(spec: Spec, session: aiohttp.ClientSession) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    completed_in_window = 0
    next_index = 0
    started = time.perf_counter()
    measure_from = started + spec.warmup
    deadline = measure_from + spec.duration

    async def connection() -> None:
        nonlocal next_index, completed_in_window
        while time.perf_counter() < deadline and next_index < spec.max_requests:
            index = next_index
            next_index += 1
            body = orjson.dumps(
                reading(index, phase=spec.phase, subjects=spec.subjects, base_time=spec.base_time)
            )
            sent = time.perf_counter()
            async with session.post(spec.url, data=body, headers=headers) as response:
                await response.read()
            done = time.perf_counter()
            if sent >= measure_from:
                statuses[response.status] += 1
                latencies.append(done - sent)
            if response.status == 200 and measure_from <= done <= deadline:
                completed_in_window += 1

    async with asyncio.timeout(spec.warmup + spec.duration + spec.time_limit):
        await asyncio.gather(*(connection() for _ in range(spec.concurrency)))
    return {
        "mode": "single",
        "requests": sum(statuses.values()),
        "requests_total": next_index,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "ok_in_window": completed_in_window,
        "window_s": spec.duration,
        "requests_per_s": round(completed_in_window / spec.duration, 1),
        "latency_ms": latency_summary(latencies),
    }


async def run(spec: Spec) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=spec.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
        if spec.mode == "batch":
            return await run_batch(spec, session)
        if spec.mode == "single":
            return await run_single(spec, session)
    raise ValueError(f"unknown mode {spec.mode!r}")


def main() -> int:
    spec = Spec.from_json(orjson.loads(sys.stdin.buffer.read()))
    result = asyncio.run(run(spec))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
