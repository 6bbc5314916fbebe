"""Request ids, error rendering, request metrics and logs. Errors become JSON bodies with a stable
code; anything unexpected becomes a 500 that says nothing of the input."""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import DatabaseUnavailable, GatewayError, Overloaded, PayloadTooLarge
from gateway.logs import event
from gateway.web.appkeys import METRICS
from gateway.web.fhir.outcome import as_operation_outcome
from gateway.web.responses import error_response, json_response

log = logging.getLogger("gateway.web")

REQUEST_ID = web.RequestKey("request_id", str)
# Fields a handler adds to its request's one `http.request` log line (counts, zone, format; never
# identifiers or values): one line per request, not one per layer.
LOG_FIELDS = web.RequestKey("log_fields", dict[str, Any])
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id(request: web.Request) -> str:
    return request[REQUEST_ID]


def annotate(request: web.Request, **fields: Any) -> None:
    """Add fields to the request's `http.request` log line."""
    request.setdefault(LOG_FIELDS, {}).update(fields)


def _route_name(request: web.Request) -> str:
    # The route template ("/v1/ingest/{format}"), never the raw path: bounded label values.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = supplied if _CLIENT_REQUEST_ID.match(supplied) else secrets.token_hex(16)
    started = time.perf_counter()
    status = 500
    try:
        # Under /fhir every error is an OperationOutcome.
        response = as_operation_outcome(request, await _render_errors(request, handler))
        status = response.status
        response.headers["X-Request-ID"] = request[REQUEST_ID]
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        request.app[METRICS].request_duration.labels(route, request.method, str(status)).observe(
            elapsed
        )
        event(
            log,
            "http.request",
            request_id=request[REQUEST_ID],
            method=request.method,
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            **request.get(LOG_FIELDS, {}),
        )


async def _render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as error:
        if isinstance(error, Overloaded):
            request.app[METRICS].throttled.labels(error.zone, "backpressure").inc()
        elif isinstance(error, DatabaseUnavailable):
            # The zone's database stopped answering mid-request: nothing was acknowledged, and
            # the client may retry (idempotent ingest makes the retry safe).
            event(
                log,
                "zone.unavailable",
                logging.WARNING,
                request_id=request[REQUEST_ID],
                exc_info=True,
            )
        return error_response(error, request[REQUEST_ID])
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge("request body is too large"), request[REQUEST_ID])
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status, "http-error")
            return json_response(
                {"error": {"code": code, "message": exc.reason}, "request_id": request[REQUEST_ID]},
                status=exc.status,
            )
        raise
    except ConnectionResetError:
        # The client went away mid-response (a Bulk Data download cut short): there is no one to
        # answer and nothing went wrong here. aiohttp ends the connection quietly.
        event(log, "http.client_gone", logging.INFO, request_id=request[REQUEST_ID])
        raise
    except Exception:
        event(
            log,
            "http.unhandled_error",
            logging.ERROR,
            request_id=request[REQUEST_ID],
            exc_info=True,
        )
        return json_response(
            {
                "error": {"code": "internal-error", "message": "internal error"},
                "request_id": request[REQUEST_ID],
            },
            status=500,
        )
