"""FHIR responses: `application/fhir+json` bodies, content negotiation, and every 4xx/5xx under
/fhir as an OperationOutcome (R4 http.html: "servers SHOULD return an OperationOutcome").

Errors are rendered once by `gateway.web.middleware`; for /fhir paths its JSON error body (code
and message, never input values) is re-shaped here, so handlers, route misses (404/405) and
unexpected failures (500/503) all come out the same way, with their headers kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from gateway.errors import NotAcceptable

FHIR_JSON: Final = "application/fhir+json"
FHIR_PREFIX: Final = "/fhir/"
ERROR_SYSTEM: Final = "urn:wearable-gateway:error"
# Media types and `_format` values that mean FHIR JSON (R4 http.html#mime-type, "_format").
_JSON_TYPES: Final = frozenset(
    {FHIR_JSON, "application/json", "application/json+fhir", "json", "*/*", "application/*"}
)
# HTTP status -> OperationOutcome.issue.code (http://hl7.org/fhir/issue-type).
_ISSUE_TYPE: Final[Mapping[int, str]] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    408: "timeout",
    413: "too-costly",
    415: "not-supported",
    421: "not-supported",
    429: "throttled",
    503: "transient",
}


def fhir_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.Response(
        body=body if isinstance(body, bytes) else orjson.dumps(body),
        status=status,
        content_type=FHIR_JSON,
        charset="utf-8",
    )
    if headers:
        response.headers.update(headers)
    return response


def operation_outcome(status: int, code: str, message: str) -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error" if status < 500 else "fatal",
                "code": _ISSUE_TYPE.get(status, "exception"),
                "details": {
                    "coding": [{"system": ERROR_SYSTEM, "code": code}],
                    "text": message,
                },
            }
        ],
    }


def as_operation_outcome(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """The gateway's JSON error `response` to a /fhir request, as an OperationOutcome."""
    if (
        response.status < 400
        or not request.path.startswith(FHIR_PREFIX)
        or not isinstance(response, web.Response)
        or response.content_type != "application/json"
        or not isinstance(response.body, bytes)
    ):
        return response
    error = orjson.loads(response.body).get("error", {})
    converted = fhir_response(
        operation_outcome(
            response.status, str(error.get("code", "error")), str(error.get("message", ""))
        ),
        status=response.status,
    )
    for name in ("Retry-After", "WWW-Authenticate", "Allow", "Accept-Encoding"):
        if name in response.headers:
            converted.headers[name] = response.headers[name]
    if response.keep_alive is False:  # e.g. after an undecodable body
        converted.force_close()
    if response.status == 401:
        # RFC 6750 §3: a protected resource answers 401 with a Bearer challenge.
        converted.headers.setdefault("WWW-Authenticate", 'Bearer realm="fhir"')
    return converted


def negotiate(request: web.Request) -> None:
    """Refuse (406) a request for a format other than FHIR JSON: `_format` wins over Accept
    (R4 http.html#parameters)."""
    wanted = request.query.get("_format")
    if wanted is not None:
        if wanted.split(";")[0].strip() not in _JSON_TYPES:
            raise NotAcceptable("this server answers application/fhir+json only")
        return
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return
    types = {part.split(";")[0].strip() for part in accept.split(",")}
    if not types & _JSON_TYPES:
        raise NotAcceptable("this server answers application/fhir+json only")
