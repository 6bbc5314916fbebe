"""POST /v1/ingest/{format}: translate HTTP to the ingest service and its outcomes back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.errors import NotFound, UnsupportedMediaType
from gateway.models import IngestContext, Outcome
from gateway.services.credentials import authenticate
from gateway.services.ingest import IngestResult, ingest
from gateway.web.appkeys import ADAPTERS, METRICS, SETTINGS, ZONES
from gateway.web.body import read_body
from gateway.web.middleware import annotate, request_id
from gateway.web.ratelimit import throttle
from gateway.web.responses import json_response


def _status(result: IngestResult) -> int:
    rejected = result.count(Outcome.REJECTED)
    if rejected == 0:
        return 200
    return 422 if rejected == len(result.outcomes) else 207


def _body(result: IngestResult, request_id: str, zone: str) -> dict[str, object]:
    results: list[dict[str, object]] = []
    for outcome in result.outcomes:
        entry: dict[str, object] = {"index": outcome.index, "outcome": str(outcome.outcome)}
        if outcome.observation_id is not None:
            entry["id"] = outcome.observation_id
        if outcome.rejection is not None:
            entry["error"] = {
                "code": str(outcome.rejection.code),
                "message": outcome.rejection.message,
            }
        results.append(entry)
    return {
        "request_id": request_id,
        "zone": zone,
        "summary": {str(o): result.count(o) for o in Outcome},
        "results": results,
    }


async def post_readings(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    format_name = request.match_info["format"]
    adapters = request.app[ADAPTERS]
    adapter = adapters.get(format_name)
    if adapter is None:
        supported = ", ".join(sorted(adapters))
        raise NotFound(f"unknown ingest format; supported formats: {supported}")
    principal = await authenticate(
        request.app[ZONES], request.headers.get("Authorization"), kind="vendor"
    )
    throttle(request, zone=principal.zone, credential_id=principal.key_id)
    if request.content_type not in adapter.media_types:
        raise UnsupportedMediaType(
            f"format {adapter.name} accepts {', '.join(sorted(adapter.media_types))}"
        )
    body = await read_body(request, limit=settings.max_body_bytes)
    received_at = datetime.now(UTC)
    items = adapter.parse(body, request.content_type)

    ctx = IngestContext(
        zone=principal.zone,
        vendor=principal.owner,
        source_format=adapter.name,
        format_version=adapter.version,
        received_at=received_at,
        request_id=request_id(request),
    )
    result = await ingest(
        request.app[ZONES],
        ctx,
        items,
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
    )

    metrics = request.app[METRICS]
    for outcome in Outcome:
        if n := result.count(outcome):
            metrics.readings.labels(adapter.name, ctx.zone, str(outcome)).inc(n)
    for outcome_ in result.outcomes:
        if outcome_.rejection is not None:
            metrics.rejections.labels(adapter.name, ctx.zone, str(outcome_.rejection.code)).inc()
    annotate(
        request,
        zone=ctx.zone,
        format=adapter.name,
        vendor_key=principal.key_id,
        readings=len(items),
        created=result.count(Outcome.CREATED),
        updated=result.count(Outcome.UPDATED),
        duplicate=result.count(Outcome.DUPLICATE),
        rejected=result.count(Outcome.REJECTED),
    )
    return json_response(_body(result, ctx.request_id, ctx.zone), status=_status(result))
