"""FHIR Bulk Data Access 2.0 export for research teams: kick-off, status, cancel,
file download. Translation only: gateway.fhir.bulk_parameters parses the kick-off,
gateway.services.exports decides."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiohttp import web

from gateway.errors import InvalidJSON, UnsupportedMediaType
from gateway.fhir.bulk_parameters import parameters_resource, parse_export_request
from gateway.services.exports import files, kickoff
from gateway.services.smart import ClientPrincipal, authenticate_access_token
from gateway.web.appkeys import EXPORT_WORKERS, SETTINGS, ZONES
from gateway.web.body import read_body
from gateway.web.fhir.common import base_url, principal
from gateway.web.fhir.outcome import fhir_response

_FHIR_JSON = ("application/fhir+json", "application/json")


async def _client(request: web.Request) -> ClientPrincipal:
    # Status and file requests accept NDJSON (Accept: application/fhir+ndjson): no JSON
    # negotiation, only the token.
    return await authenticate_access_token(request.app[ZONES], request.headers.get("Authorization"))


async def kick_off(request: web.Request) -> web.Response:
    client = await principal(request)
    study = request.match_info["study"]
    parameters = list(request.query.items())
    if request.method == "POST":
        if request.content_type not in _FHIR_JSON:
            raise UnsupportedMediaType("a POST kick-off takes a FHIR Parameters resource (JSON)")
        try:
            body = orjson.loads(await read_body(request))
        except orjson.JSONDecodeError:
            raise InvalidJSON("the body is not JSON") from None
        parameters += parameters_resource(body)
    export = parse_export_request(
        parameters,
        prefer=request.headers.get("Prefer"),
        url=request.app[SETTINGS].base_url + request.path_qs,
    )
    started = await kickoff.kick_off(
        request.app[ZONES], client, study, export, now=datetime.now(UTC)
    )
    if EXPORT_WORKERS in request.app:
        request.app[EXPORT_WORKERS].wake(client.zone)
    return fhir_response(
        operation_outcome_info("export queued"),
        status=202,
        headers={
            "Content-Location": f"{base_url(request)}/$export-status/{started.job_id}",
        },
    )


def operation_outcome_info(text: str) -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "details": {"text": text}}],
    }


async def status(request: web.Request) -> web.Response:
    client = await _client(request)
    answer = await kickoff.status(
        request.app[ZONES],
        client,
        request.match_info["job"],
        now=datetime.now(UTC),
        base=base_url(request),
    )
    if isinstance(answer, kickoff.InProgress):
        # Bulk Data 2.0 status: 202 with X-Progress and Retry-After while in progress.
        response = web.Response(status=202)
        response.headers["X-Progress"] = answer.progress
        response.headers["Retry-After"] = str(answer.retry_after)
        return response
    # Bulk Data 2.0: the complete-status manifest is `application/json`.
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def cancel(request: web.Request) -> web.Response:
    client = await _client(request)
    await kickoff.cancel(
        request.app[ZONES], client, request.match_info["job"], now=datetime.now(UTC)
    )
    return fhir_response(operation_outcome_info("export cancelled"), status=202)


async def download(request: web.Request) -> web.StreamResponse:
    client = await _client(request)
    found = await files.open_file(
        request.app[ZONES],
        client,
        request.match_info["job"],
        request.match_info["name"],
        now=datetime.now(UTC),
    )
    response = web.StreamResponse(
        headers={"Content-Type": found.media_type, "Content-Length": str(found.size)}
    )
    await response.prepare(request)
    async for chunk in found.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
