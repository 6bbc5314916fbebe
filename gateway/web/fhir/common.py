"""What every /fhir handler does first: negotiate the format, authenticate the SMART token, and
read the search parameters (query string, or the form body of `POST [type]/_search`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

from gateway.errors import NotFound, UnsupportedMediaType
from gateway.fhir.search import SearchRequest, parse_search
from gateway.lexical import is_fhir_id
from gateway.services.fhir.common import ReadResult
from gateway.services.smart import ClientPrincipal, authenticate_access_token
from gateway.web.appkeys import SETTINGS, ZONES
from gateway.web.body import read_form
from gateway.web.fhir.outcome import fhir_response, negotiate
from gateway.web.ratelimit import throttle

_FORM = "application/x-www-form-urlencoded"
_STRICT = re.compile(r"(?:^|[;,\s])handling\s*=\s*strict(?:$|[;,\s])")


def base_url(request: web.Request) -> str:
    return request.app[SETTINGS].base_url + "/fhir"


async def principal(request: web.Request) -> ClientPrincipal:
    """The SMART client behind the request's token, counted against its rate limit."""
    negotiate(request)
    client = await authenticate_access_token(
        request.app[ZONES], request.headers.get("Authorization")
    )
    throttle(request, zone=client.zone, credential_id=client.client_id)
    return client


def resource_id(request: web.Request, name: str = "id") -> str:
    """A path id; one that is not a FHIR id cannot name a resource (404, as a missing one)."""
    value = request.match_info[name]
    if not is_fhir_id(value):
        raise NotFound("no such resource")
    return value


async def search_parameters(request: web.Request) -> list[tuple[str, str]]:
    """R4 http.html#search: GET puts them in the query; POST [type]/_search in a form body
    (and possibly the query too); both mean the same search."""
    found = list(request.query.items())
    if request.method == "POST":
        if request.content_type != _FORM:
            raise UnsupportedMediaType(f"_search takes a {_FORM} body")
        form = await read_form(request)
        found += [(key, value) for key, value in form.items() if isinstance(value, str)]
    return found


async def parse(
    request: web.Request, resource_type: str, *, operation_parameters: tuple[str, ...] = ()
) -> SearchRequest:
    strict = bool(_STRICT.search(request.headers.get("Prefer", "")))
    parameters = [
        (key, value)
        for key, value in await search_parameters(request)
        if key not in operation_parameters
    ]
    return parse_search(resource_type, parameters, strict=strict, now=datetime.now(UTC))


def read_response(result: ReadResult) -> web.Response:
    """R4 http.html#read: `ETag: W/"<versionId>"` and `Last-Modified`."""
    return fhir_response(
        result.body,
        headers={
            "ETag": f'W/"{result.version}"',
            "Last-Modified": format_datetime(result.last_modified.astimezone(UTC), usegmt=True),
        },
    )
