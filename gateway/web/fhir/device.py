"""Device: read and search (`_id`, `patient`, `identifier`)."""

from __future__ import annotations

from aiohttp import web

from gateway.services.fhir import device
from gateway.web.appkeys import ZONES
from gateway.web.fhir.common import base_url, parse, principal, read_response, resource_id
from gateway.web.fhir.outcome import fhir_response


async def read(request: web.Request) -> web.Response:
    client = await principal(request)
    return read_response(await device.read_device(request.app[ZONES], client, resource_id(request)))


async def search(request: web.Request) -> web.Response:
    client = await principal(request)
    query = await parse(request, "Device")
    return fhir_response(
        await device.search_devices(request.app[ZONES], client, query, base=base_url(request))
    )
