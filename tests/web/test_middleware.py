"""The middleware's error rendering for what is not the gateway's error: a client that went away
mid-response is not a server fault."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from gateway.metrics import GatewayMetrics
from gateway.web.appkeys import METRICS
from gateway.web.middleware import observe


async def _client_went_away(_request: web.Request) -> web.StreamResponse:
    raise ConnectionResetError("Cannot write to closing transport")


async def _broken(_request: web.Request) -> web.StreamResponse:
    raise RuntimeError("a bug")


async def test_a_client_gone_mid_response_is_logged_as_such_not_as_an_unhandled_error(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application(middlewares=[observe])
    app[METRICS] = GatewayMetrics()
    app.router.add_get("/gone", _client_went_away)
    app.router.add_get("/broken", _broken)
    client = await aiohttp_client(app)

    with caplog.at_level(logging.INFO, logger="gateway.web"):
        await client.get("/gone")  # aiohttp drops the connection: no answer to read
        broken = await client.get("/broken")

    messages = [record.getMessage() for record in caplog.records]
    assert broken.status == 500
    assert sum("http.client_gone" in m for m in messages) == 1
    assert sum("http.unhandled_error" in m for m in messages) == 1  # the bug only
