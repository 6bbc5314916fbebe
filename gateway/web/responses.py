from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError, RateLimited, UndecodableBody, UnsupportedContentEncoding


def json_response(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


RETRY_AFTER_SECONDS = 5


def close_connection(response: web.StreamResponse) -> None:
    """Answer with `Connection: close`: after an undecodable body aiohttp cannot read the rest
    of the request, so it closes the connection once the answer is sent, and a client that
    reused it would see the next request fail."""
    response.force_close()


def error_response(error: GatewayError, request_id: str, **extra: Any) -> web.Response:
    response = json_response(
        {"error": {"code": error.code, "message": error.message}, "request_id": request_id} | extra,
        status=error.status,
    )
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, UnsupportedContentEncoding):
        response.headers["Accept-Encoding"] = error.accepted
    elif isinstance(error, UndecodableBody):
        close_connection(response)
    elif error.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
