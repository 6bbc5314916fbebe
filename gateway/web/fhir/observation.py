"""Observation: read, vread, _history, search (GET and POST _search), $lastn."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import NotFound
from gateway.fhir.search import InvalidSearch
from gateway.lexical import ascii_int
from gateway.services.fhir import observation
from gateway.web.appkeys import ZONES
from gateway.web.fhir.common import base_url, parse, principal, read_response, resource_id
from gateway.web.fhir.outcome import fhir_response


async def read(request: web.Request) -> web.Response:
    client = await principal(request)
    found = await observation.read_observation(request.app[ZONES], client, resource_id(request))
    return read_response(found)


async def history(request: web.Request) -> web.Response:
    client = await principal(request)
    answer = await observation.observation_history(
        request.app[ZONES], client, resource_id(request), base=base_url(request)
    )
    return fhir_response(answer)


async def vread(request: web.Request) -> web.Response:
    client = await principal(request)
    version = ascii_int(request.match_info["vid"])
    if version is None:
        raise NotFound("no such Observation version")
    answer = await observation.read_observation_version(
        request.app[ZONES], client, resource_id(request), version
    )
    return read_response(answer)


async def search(request: web.Request) -> web.Response:
    client = await principal(request)
    query = await parse(request, "Observation")
    bundle = await observation.search_observations(
        request.app[ZONES], client, query, base=base_url(request)
    )
    return fhir_response(bundle)


async def last_n(request: web.Request) -> web.Response:
    client = await principal(request)
    max_count = ascii_int(request.query.get("max", "1"))
    if max_count is None:
        raise InvalidSearch("max is a positive integer")
    # `max` is the operation's own parameter, not a search parameter: parse the rest.
    query = await parse(request, "Observation", operation_parameters=("max",))
    bundle = await observation.last_n(
        request.app[ZONES], client, query, max_count, base=base_url(request)
    )
    return fhir_response(bundle)
