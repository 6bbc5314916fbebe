"""Patient: read and search (`_id`, `identifier`) of the pseudonymous Patient."""

from __future__ import annotations

from aiohttp import web

from gateway.services.fhir import patient
from gateway.web.appkeys import ZONES
from gateway.web.fhir.common import base_url, parse, principal, read_response, resource_id
from gateway.web.fhir.outcome import fhir_response


async def read(request: web.Request) -> web.Response:
    client = await principal(request)
    return read_response(
        await patient.read_patient(request.app[ZONES], client, resource_id(request))
    )


async def search(request: web.Request) -> web.Response:
    client = await principal(request)
    query = await parse(request, "Patient")
    return fhir_response(
        await patient.search_patients(request.app[ZONES], client, query, base=base_url(request))
    )
