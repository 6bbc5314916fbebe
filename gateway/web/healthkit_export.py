"""POST /v1/ingest/healthkit/export: an Apple Health export.xml, streamed.

A whole export is far larger than any request body we read into memory, and export.xml names
no account, so this endpoint differs from `/v1/ingest/{format}`: the subject comes from the query
(`subject_system`, `subject_value`: an identifier the clinic enrolled), the body is parsed as it
arrives and stored in batches, and the answer gives counts (per outcome, per rejection code, per
skipped record type) rather than one result per reading.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.adapters.healthkit.adapter import EXPORT_DEVICE_FALLBACK, XML_TYPES, SubjectRequired
from gateway.adapters.healthkit.export import CHUNK_BYTES, ExportStream
from gateway.errors import GatewayError, UnsupportedMediaType
from gateway.logs import event
from gateway.models import Identifier, IngestContext, Outcome, ParsedItem
from gateway.services.bulk_ingest import BulkTally, ingest_batches
from gateway.services.credentials import authenticate
from gateway.web.appkeys import METRICS, SETTINGS, ZONES
from gateway.web.body import stream_body
from gateway.web.middleware import request_id
from gateway.web.ratelimit import throttle
from gateway.web.responses import error_response, json_response

log = logging.getLogger("gateway.ingest")

_MAX_IDENTIFIER_LENGTH = 256


def _subject(query: Mapping[str, str]) -> Identifier:
    system, value = query.get("subject_system", ""), query.get("subject_value", "")
    if not (0 < len(system) <= _MAX_IDENTIFIER_LENGTH and 0 < len(value) <= _MAX_IDENTIFIER_LENGTH):
        raise SubjectRequired(
            "an export.xml upload needs its subject: the query parameters subject_system and "
            "subject_value (an identifier the clinic enrolled, 1-256 characters each)"
        )
    return Identifier(system, value)


def _status(tally: BulkTally) -> int:
    rejected = tally.outcomes[str(Outcome.REJECTED)]
    if rejected == 0:
        return 200
    return 422 if rejected == tally.readings else 207


async def post_export(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    principal = await authenticate(
        request.app[ZONES], request.headers.get("Authorization"), kind="vendor"
    )
    throttle(request, zone=principal.zone, credential_id=principal.key_id)
    if request.content_type not in XML_TYPES:
        raise UnsupportedMediaType("an export upload is application/xml (Apple Health export.xml)")
    subject = _subject(request.query)
    chunks = stream_body(request, limit=settings.max_export_bytes, chunk_bytes=CHUNK_BYTES)

    stream = ExportStream(subject, EXPORT_DEVICE_FALLBACK)
    batch_size = settings.export_batch_readings

    async def batches() -> AsyncIterator[Sequence[ParsedItem]]:
        pending: list[ParsedItem] = []
        async for chunk in chunks:
            pending.extend(stream.feed(chunk))
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                del pending[:batch_size]
        pending.extend(stream.close())
        if pending:
            yield pending

    ctx = IngestContext(
        zone=principal.zone,
        vendor=principal.owner,
        source_format="healthkit",
        format_version="export-xml",
        received_at=datetime.now(UTC),
        request_id=request_id(request),
    )
    tally = BulkTally()
    try:
        await ingest_batches(
            request.app[ZONES],
            ctx,
            batches(),
            tally,
            max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
        )
    except GatewayError as error:
        # Batches committed before the error stay stored (re-uploading is safe: ingest is
        # idempotent); the answer says how far the upload got.
        return error_response(error, ctx.request_id, stored_before_error=tally.summary())
    finally:
        _count(request, ctx, tally)

    return json_response(
        {
            "request_id": ctx.request_id,
            "zone": ctx.zone,
            "summary": tally.summary(),
            "rejections": dict(sorted(tally.rejections.items())),
            "skipped": {
                "total": stream.summary.skipped,
                "by_type": dict(sorted(stream.summary.skipped_types.items())),
            },
        },
        status=_status(tally),
    )


def _count(request: web.Request, ctx: IngestContext, tally: BulkTally) -> None:
    metrics = request.app[METRICS]
    for outcome, n in tally.outcomes.items():
        metrics.readings.labels(ctx.source_format, ctx.zone, outcome).inc(n)
    for code, n in tally.rejections.items():
        metrics.rejections.labels(ctx.source_format, ctx.zone, code).inc(n)
    event(
        log,
        "ingest.export_completed",
        request_id=ctx.request_id,
        zone=ctx.zone,
        format=ctx.source_format,
        readings=tally.readings,
        batches=tally.batches,
        outcomes=tally.summary(),
    )
