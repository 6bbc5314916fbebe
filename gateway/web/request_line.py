"""The request line's text, checked once for every route before any handler reads it.

A percent-encoded control character (`%00`, `%01`, …) in a path segment or a query parameter
can name nothing this gateway serves: path ids, pseudonyms, study and job ids, search values and
export parameters are all FHIR ids or strings (gateway.lexical.is_fhir_string). Refusing it here
(400 `control-character`) keeps NUL, which PostgreSQL text cannot hold, from any query a
handler builds; it used to be a 500 on `/fhir/Group/%00/$export`, `/v1/subjects/%00` and every
token search parameter.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import ControlCharacter
from gateway.lexical import is_fhir_string


@web.middleware
async def refuse_control_characters(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_fhir_string(request.path) or not all(
        is_fhir_string(name) and is_fhir_string(value) for name, value in request.query.items()
    ):
        # The message names neither the parameter nor its value: both are the client's text.
        raise ControlCharacter("the request path or query contains a control character")
    return await handler(request)
