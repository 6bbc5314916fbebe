"""Issue 11: a real `wearable-gateway serve` process applies its HTTP handler settings (the head
timeout cuts a slow loris; aiohttp does not fall back to its defaults), and with `metrics_port`
set, `/metrics` is served on that listener only."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp

from tests.conftest import DatabaseFactory
from tests.faults.harness import (
    REQUEST_TIMEOUT,
    GatewayProcess,
    free_port,
    gateway_environment,
    provision,
)

HEADER_TIMEOUT_SECONDS = 1.0
# A bound on "never", not a performance figure: the head timeout plus ample slack for a loaded
# machine. Without the fix the connection stayed open as long as the client kept sending.
CUT_WITHIN_SECONDS = 30.0
FALLBACK_WARNING = b"Failed to create request handler"


async def _trickle_head_until_closed(port: int) -> bool:
    """Send a request head one byte at a time; True when the server closed the connection
    before the head was complete and before CUT_WITHIN_SECONDS."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Far longer than the client will ever get to send: the head never completes.
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 4000
    deadline = time.monotonic() + CUT_WITHIN_SECONDS
    try:
        for byte in head:
            if time.monotonic() > deadline:
                return False
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                return True
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(reader.read(4096), timeout=0.05)
                # An answer would mean the head was taken as complete: not what was sent.
                return data == b""
        return False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_serve_cuts_a_request_head_that_trickles_in_at_the_header_timeout(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await databases.create("cn")
    credentials = await provision({"cn": dsn}, tmp_path)
    env = gateway_environment(
        {"cn": dsn},
        credentials,
        free_port(),
        header_timeout_seconds=str(HEADER_TIMEOUT_SECONDS),
    )
    async with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        await gateway.start()
        port = int(env["GATEWAY_PORT"])
        assert await _trickle_head_until_closed(port), "the server cut the slow head"
        # The server itself is fine, and answers a client that sends its head at once.
        async with (
            aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http,
            http.get(f"{gateway.base_url}/healthz") as response,
        ):
            assert response.status == 200
        log = gateway.log_path.read_bytes()
    assert FALLBACK_WARNING not in log, "aiohttp applied the handler settings"


async def test_serve_with_a_metrics_port_serves_metrics_there_and_not_on_the_public_port(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await databases.create("cn")
    credentials = await provision({"cn": dsn}, tmp_path)
    metrics_port = free_port()
    env = gateway_environment({"cn": dsn}, credentials, free_port(), metrics_port=str(metrics_port))
    async with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        await gateway.start()
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            async with http.get(f"{gateway.base_url}/metrics") as public:
                assert public.status == 404
            scrape = f"http://127.0.0.1:{metrics_port}"
            async with http.get(f"{scrape}/metrics") as metrics:
                assert metrics.status == 200
                assert "gateway_http_request_duration_seconds" in await metrics.text()
            async with http.get(f"{scrape}/readyz") as other:
                assert other.status == 404, "the metrics listener serves /metrics alone"
