"""Slow and stuck clients: how long a connection and a request may take.

- The request head: aiohttp arms its keep-alive timer when a connection opens and after each
  response, and closes the connection if no complete request head has arrived when it fires; so
  `keepalive_timeout` (= `header_timeout_seconds`) bounds both an idle keep-alive connection and a
  head sent byte by byte (slow loris). Line and field sizes are capped (`HANDLER_ARGS`), so a head
  holds at most a few hundred KiB.
- The body and the answer: aiohttp has no per-request deadline, so the `deadline` middleware puts
  one around the handler: `request_timeout_seconds`, or `export_timeout_seconds` for the streamed
  Apple Health export. A body that has not fully arrived by then is a 408 (RFC 9110 §15.5.9); a
  request whose body did arrive but whose answer is not ready (a saturated zone database) is a
  503 with Retry-After. Either way the handler is cancelled and its connection and memory freed.
  Ingest is idempotent, so a client may simply retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import RequestTimeout, ZoneUnavailable
from gateway.settings import Settings
from gateway.web.appkeys import SETTINGS

# Routes whose body is a stream far larger than memory, read for as long as the upload lasts.
STREAMING_ROUTES = frozenset({"/v1/ingest/healthkit/export"})

# aiohttp's defaults, stated so they are a decision: a request line (path and query) or one
# header line of at most 8 KiB, at most 128 header lines. Given to `web.AppRunner(**...)` by
# gateway/web/server.py, the one place the server starts (never `run_app(handler_args=...)`,
# which drops them all), beside `keepalive_timeout`, the head timeout.
HANDLER_ARGS: Mapping[str, Any] = MappingProxyType(
    {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 128}
)


def _timeout(request: web.Request, settings: Settings) -> float:
    resource = request.match_info.route.resource
    if resource is not None and resource.canonical in STREAMING_ROUTES:
        return settings.export_timeout_seconds
    return settings.request_timeout_seconds


@web.middleware
async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    timer = asyncio.timeout(_timeout(request, request.app[SETTINGS]))
    try:
        async with timer:
            return await handler(request)
    except TimeoutError:
        if not timer.expired():
            raise  # someone else's timeout (a driver's): not ours to translate
        if not request.content.at_eof():
            raise RequestTimeout("the request body did not arrive in time") from None
        raise ZoneUnavailable("the request could not be answered in time; retry later") from None
