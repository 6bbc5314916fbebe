"""Slow and stuck clients, driven with raw sockets on loopback: a body that trickles in gets 408
at the request deadline, a request head that never completes loses its connection, and the
streamed export keeps its own, longer deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from gateway.app import create_app
from gateway.settings import Settings
from gateway.web.server import listen
from gateway.web.server import serving as serve_app
from tests.conftest import Gateway, start_gateway

HEAD = (
    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
    "Content-Type: {media_type}\r\nContent-Length: {length}\r\n\r\n"
)


async def _open(gateway: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = gateway.client.server
    return await asyncio.open_connection(server.host, server.port)


async def _trickle(writer: asyncio.StreamWriter, body: bytes, *, seconds: float) -> None:
    """Send `body` a few bytes at a time over `seconds`; stop quietly if the server hangs up."""
    step = max(1, len(body) // 20)
    with contextlib.suppress(ConnectionError):
        for start in range(0, len(body), step):
            writer.write(body[start : start + step])
            await writer.drain()
            await asyncio.sleep(seconds / 20)


async def _status(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), timeout=10)
    return int(line.split()[1])


async def test_a_body_that_trickles_past_the_deadline_gets_408(
    aiohttp_client: Any, settings: Settings
) -> None:
    gateway = await start_gateway(
        aiohttp_client, settings.with_overrides(request_timeout_seconds=1)
    )
    reader, writer = await _open(gateway)
    body = b'{"readings": []}' + b" " * 984
    head = HEAD.format(
        path="/v1/ingest/native",
        token=gateway.vendor["cn"],
        media_type="application/json",
        length=len(body),
    )
    writer.write(head.encode() + body[:10])
    started = time.monotonic()
    # The body would take 30 s: an answer while it is still being sent is the deadline's (an
    # upper bound on the elapsed time can fail on a loaded machine, and proves no more).
    sender = asyncio.create_task(_trickle(writer, body[10:], seconds=30))
    try:
        status = await _status(reader)
        elapsed = time.monotonic() - started
        still_sending = not sender.done()
        rest = await asyncio.wait_for(reader.read(4096), timeout=5)
    finally:
        sender.cancel()
        writer.close()
    assert status == 408
    assert still_sending, "answered only once the whole body had arrived"
    assert elapsed >= 0.9
    assert b'"code":"request-timeout"' in rest


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[str, int]]:
    """The app served as `wearable-gateway serve` and `demo` serve it (gateway/web/server.py), on
    a free loopback port. (aiohttp's TestServer drops request-handler options.)"""
    sock, settings = listen(settings, host="127.0.0.1", port=0)
    async with serve_app(create_app(settings), settings, sock) as at:
        yield at.host, at.port


async def test_a_request_head_that_never_completes_loses_its_connection(
    settings: Settings,
) -> None:
    async with serving(settings.with_overrides(header_timeout_seconds=1)) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        data = b"?"
        # One header line every 0.1 s for up to 30 s, a slow loris: the server must hang up
        # while lines are still coming (not a bound on the elapsed time, which a loaded machine
        # stretches).
        with contextlib.suppress(ConnectionError):
            for n in range(300):
                writer.write(f"X-Slow-{n}: 1\r\n".encode())
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(), timeout=0.1)
                    break
        elapsed = time.monotonic() - started
        writer.close()
    assert data == b"", "the connection outlived the slow loris"  # closed without an answer
    assert elapsed >= 0.9


async def test_an_oversized_header_line_is_refused_without_a_server_error(
    settings: Settings,
) -> None:
    async with serving(settings) as (host, port), aiohttp.ClientSession() as session:
        url = f"http://{host}:{port}/healthz"
        async with session.get(url, headers={"X-Big": "a" * 9000}) as response:
            assert response.status in (400, 431)
        async with session.get(url, headers={"X-Fine": "a" * 8000}) as response:
            assert response.status == 200


async def test_an_export_upload_has_its_own_longer_deadline(
    aiohttp_client: Any, settings: Settings
) -> None:
    gateway = await start_gateway(
        aiohttp_client,
        settings.with_overrides(request_timeout_seconds=0.5, export_timeout_seconds=30),
    )
    body = b'<?xml version="1.0"?>\n<HealthData locale="en_US">' + b" " * 400 + b"</HealthData>"
    reader, writer = await _open(gateway)
    head = HEAD.format(
        path="/v1/ingest/healthkit/export?subject_system=urn%3Ax&subject_value=P-1",
        token=gateway.vendor["cn"],
        media_type="application/xml",
        length=len(body),
    )
    writer.write(head.encode())
    try:
        await _trickle(writer, body, seconds=1.5)
        status = await _status(reader)
    finally:
        writer.close()
    assert status == 200
