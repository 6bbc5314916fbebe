"""The research-export benchmark: memory and throughput of one de-identified extract.

    python -m bench.export [--quick] [--observations N] [--database-url URL] [--out results.json]

Without `--database-url` it starts an embedded PostgreSQL (`pgserver`) in a temporary folder;
with it, it creates a scratch database `wg_bench_…` on that server (the role needs CREATEDB) and
drops it at the end. In one run it:

1. enrols `--subjects` subjects through the gateway's own enrolment service (sealed identities,
   varied birth dates and sexes, research consent);
2. builds N Observation rows with the gateway's own steps (native adapter → normalise →
   `Pseudonymiser` → `build_observation`) in batches and stores them with `COPY` (the baseline:
   rows/s of the raw `COPY`), never holding more than one batch;
3. registers a study and queues an export job, then runs it with the code the background worker
   runs (`ExportRunner`: server-side cursor, k-anonymity, study pseudonyms, date shifts, allow-list
   de-identification, NDJSON + CSV chunks into the zone database, the audited release), sampling
   the process's RSS every 20 ms;
4. reports RSS growth over the export (peak during the export minus RSS just before it; the
   target is < 100 MiB at 1,000,000 observations), and resources/s, with the ratio to `COPY`.

The downloads are not part of the figure: they stream stored chunks (one 1 MiB chunk in memory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pgserver
import psutil

from gateway.adapters.native import NativeAdapter
from gateway.fhir import build_observation
from gateway.fhir.bulk_parameters import EXPORT_TYPES, ExportRequest
from gateway.measures.normalise import normalise
from gateway.models import (
    Consent,
    Enrolment,
    Identifier,
    IngestContext,
    ParseRejection,
    Reading,
    Sex,
)
from gateway.privacy import Pseudonymiser, ZoneKeyRing
from gateway.runtime.zones import Zone, ZoneDirectory
from gateway.services.clinics import Clinic
from gateway.services.exports.runner import ExportRunner
from gateway.services.subjects import enrol
from gateway.storage import ZoneDatabase, ensure_database, migrate_database
from gateway.storage.database import admin_connection
from gateway.storage.studies import StoredStudy

ZONE = "cn"
SITE = "bench-site"
VENDOR = "bench-vendor"
MODEL = "Watch6,2"  # every benchmark reading comes from one watch model
MRN = "urn:oid:1.2.156.999.1"
TZ = timezone(timedelta(hours=8))
BATCH = 10_000
COPY_COLUMNS = (
    "subject", "id", "code", "device", "effective_start", "effective_end", "issued",
    "source_format", "resource",
)  # fmt: skip
KINDS = (("heart-rate", 72.0, "/min"), ("body-weight", 70.5, "kg"), ("step-count", 200, "{steps}"))
MIB = 1024 * 1024


@contextlib.asynccontextmanager
async def server(url: str | None, workdir: Path) -> AsyncIterator[str]:
    if url:
        yield url
        return
    embedded = await asyncio.to_thread(pgserver.get_server, workdir / "pg", cleanup_mode="stop")
    try:
        yield embedded.get_uri()
    finally:
        await asyncio.to_thread(embedded.cleanup)


@contextlib.asynccontextmanager
async def scratch_database(server_dsn: str) -> AsyncIterator[str]:
    name = f"wg_bench_{uuid.uuid4().hex[:10]}"
    dsn = await ensure_database(server_dsn, name)
    try:
        await migrate_database(dsn)
        yield dsn
    finally:
        async with admin_connection(server_dsn) as conn:
            # `name` is generated above from hex digits only.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def readings(count: int, subjects: int, start: int) -> Iterator[dict[str, Any]]:
    """Readings `start`..`start+count`: subjects in turn, a minute apart per subject."""
    base = datetime(2026, 10, 31, 23, 0, tzinfo=TZ)
    for index in range(start, start + count):
        kind, value, unit = KINDS[index % len(KINDS)]
        moment = base - timedelta(minutes=index // subjects)
        body: dict[str, Any] = {
            "subject": {"system": MRN, "value": f"BENCH-{index % subjects:05d}"},
            "device": {"id": f"SN-{index % subjects:05d}", "model": MODEL},
            "type": kind,
            "value": value,
            "unit": unit,
        }
        if kind == "step-count":
            body["start"] = (moment - timedelta(seconds=50)).isoformat()
            body["end"] = moment.isoformat()
        else:
            body["time"] = moment.isoformat()
        yield body


def build_rows(
    batch: list[dict[str, Any]], pseudonyms: dict[str, str], keyring: ZoneKeyRing
) -> list[tuple[Any, ...]]:
    adapter = NativeAdapter()
    pseudonymiser = Pseudonymiser(keyring)
    ctx = IngestContext(
        zone=ZONE,
        vendor=VENDOR,
        source_format=adapter.name,
        format_version=adapter.version,
        received_at=datetime.now(UTC),
        request_id=uuid.uuid4().hex,
    )
    rows = []
    for item in adapter.parse(orjson.dumps({"readings": batch}), "application/json"):
        if isinstance(item, ParseRejection):
            raise RuntimeError("a benchmark reading was rejected")
        valid = normalise(item, now=ctx.received_at)
        if not isinstance(valid, Reading):
            raise RuntimeError("a benchmark reading was rejected")
        subject = pseudonyms[valid.subject.value]
        observation_id = pseudonymiser.dedup_key(
            vendor=VENDOR,
            device_id=valid.device.id,
            subject=subject,
            measure=valid.measure.name,
            start=valid.start,
            end=valid.end,
            statistic=valid.statistic,
        )
        device = pseudonymiser.device_pseudonym(VENDOR, valid.device.id)
        r = build_observation(
            valid, observation_id=observation_id, subject=subject, device=device, ctx=ctx
        )
        rows.append(
            (
                r.subject,
                r.id,
                r.code,
                r.device,
                r.effective_start,
                r.effective_end,
                r.issued,
                r.source_format,
                r.resource,
            )
        )
    return rows


async def load(
    zone: Zone, keyring: ZoneKeyRing, dsn: str, subjects: int, total: int
) -> dict[str, Any]:
    principal = Clinic(zone=ZONE, site=SITE, actor="bench")
    pseudonyms: dict[str, str] = {}
    for n in range(subjects):
        value = f"BENCH-{n:05d}"
        enrolled = await enrol(
            ZoneDirectory({ZONE: zone}),
            principal,
            Enrolment(
                zone=ZONE,
                site=SITE,
                identifiers=(Identifier(MRN, value),),
                birth_date=date(1950 + n % 40, 1 + n % 12, 1 + n % 28),
                sex=Sex.FEMALE if n % 2 else Sex.MALE,
                consent=Consent(research=True, cross_border=False),
            ),
        )
        pseudonyms[value] = enrolled.pseudonym
    copy_seconds = 0.0
    async with admin_connection(dsn) as conn:
        await conn.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            encoder=lambda value: b"\x01" + value,
            decoder=lambda data: data[1:],
            format="binary",
        )
        for start in range(0, total, BATCH):
            rows = build_rows(
                list(readings(min(BATCH, total - start), subjects, start)), pseudonyms, keyring
            )
            await zone.db.observations.ensure_partitions(r[4] for r in rows)
            began = time.perf_counter()
            await conn.copy_records_to_table("observations", records=rows, columns=COPY_COLUMNS)
            copy_seconds += time.perf_counter() - began
        # Ingest links each (subject, device) in `devices`; COPY does not, so link them here:
        # the extract's Device file is read from that table.
        await conn.execute(
            "INSERT INTO devices (subject, pseudonym, model, first_seen) "
            "SELECT subject, device, $1, min(issued) FROM observations GROUP BY subject, device "
            "ON CONFLICT DO NOTHING",
            MODEL,
        )
        await conn.execute("ANALYZE observations")
    return {
        "rows": total,
        "seconds": round(copy_seconds, 3),
        "rows_per_s": round(total / copy_seconds, 1),
    }


async def run_export(zone: Zone, keyring: ZoneKeyRing) -> dict[str, Any]:
    await zone.db.studies.add(
        StoredStudy(
            id="bench-study",
            zone=ZONE,
            title="benchmark",
            ethics_ref="IRB-BENCH",
            recipient_org="Bench University",
            recipient_country="CN",
            measures=("8867-4", "29463-7", "55423-8"),
            shift_days=30,
            keep_weekday=False,
            resolution="minute",
            k=5,
            expires_on=date(2099, 1, 1),
            transfer_kind=None,
            transfer_reference=None,
            transfer_tia=None,
            transfer_expires_on=None,
            researcher_clients=("wgc_cn_bench",),
        )
    )
    now = datetime.now(UTC)
    request = ExportRequest(url="bench", types=EXPORT_TYPES)
    await zone.db.exports.create(
        "x" + uuid.uuid4().hex,
        study="bench-study",
        client="wgc_cn_bench",
        request=request.as_json(),
        transaction_time=now,
        expires_at=now + timedelta(hours=1),
    )
    job = await zone.db.exports.claim(600)
    assert job is not None
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    began = time.perf_counter()
    await ExportRunner(zone, 600).run(job)
    elapsed = time.perf_counter() - began
    done.set()
    await sampler
    peak = max(peak, process.memory_info().rss)
    stored = await zone.db.exports.get(job.id, datetime.now(UTC))
    if stored is None or stored.state != "done":
        raise RuntimeError("the export did not complete")
    manifest = orjson.loads(stored.manifest or b"{}")
    resources = sum(o["count"] for o in manifest["output"])
    return {
        "resources": resources,
        "output": {o["type"]: o["count"] for o in manifest["output"]},
        "k_anonymity": manifest["extension"]["kAnonymity"],
        "seconds": round(elapsed, 3),
        "resources_per_s": round(resources / elapsed, 1),
        "rss_before_mib": round(before / MIB, 1),
        "rss_peak_mib": round(peak / MIB, 1),
        "rss_growth_mib": round((peak - before) / MIB, 1),
    }


async def main_async(options: argparse.Namespace) -> dict[str, Any]:
    keyring = ZoneKeyRing.generate(ZONE)
    with tempfile.TemporaryDirectory(prefix="wg-bench-export-") as folder:
        async with server(options.database_url, Path(folder)) as url, scratch_database(url) as dsn:
            db = await ZoneDatabase.connect(ZONE, dsn, max_size=4, command_timeout=600)
            try:
                zone = Zone.build(db, keyring)
                copy = await load(zone, keyring, dsn, options.subjects, options.observations)
                export = await run_export(zone, keyring)
            finally:
                await db.close()
    export["ratio_to_copy"] = round(export["resources_per_s"] / copy["rows_per_s"], 3)
    return {
        "observations": options.observations,
        "subjects": options.subjects,
        "copy_baseline": copy,
        "export": export,
        "target_rss_growth_mib": 100,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 observations")
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--database-url")
    parser.add_argument("--out", type=Path)
    options = parser.parse_args(argv)
    if options.quick:
        options.observations = 20_000
        options.subjects = 200
    results = asyncio.run(main_async(options))
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if options.out:
        options.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
