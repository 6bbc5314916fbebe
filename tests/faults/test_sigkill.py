"""Issue 8: a gateway killed with SIGKILL mid-ingest loses no acknowledged reading, and the
clients' retries of everything unacknowledged leave every reading stored exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import aiohttp

from tests.conftest import DatabaseFactory
from tests.faults.harness import (
    REQUEST_TIMEOUT,
    GatewayProcess,
    Ledger,
    ReadingSource,
    enrol,
    free_port,
    gateway_environment,
    post_batch,
    provision,
    record,
    stored_ids,
    wait_for,
)

CLIENTS = 4
SUBJECTS = 8
FRESH_PER_BATCH = 40
REPEATS_PER_BATCH = 5  # readings already sent, by this client or another
ACKNOWLEDGED_BEFORE_KILL = 2000
LOAD_LIMIT_SECONDS = 60.0
RETRY_ATTEMPTS = 20


async def test_sigkill_mid_ingest_loses_no_acknowledged_reading_and_retries_add_no_duplicate(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await databases.create("cn")
    credentials = await provision({"cn": dsn}, tmp_path)
    env = gateway_environment({"cn": dsn}, credentials, free_port())
    source = ReadingSource("cn", SUBJECTS)
    token = credentials.vendor["cn"]
    ledgers = [Ledger() for _ in range(CLIENTS)]
    unacknowledged: list[list[list[int]]] = [[] for _ in range(CLIENTS)]
    sent: set[int] = set()
    killed = asyncio.Event()

    async with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        await gateway.start()
        await enrol(gateway, credentials.clinic["cn"], "cn", SUBJECTS)

        async def client(index: int) -> None:
            """Post batches until the gateway is gone: fresh readings of its own plus a few
            repeats; keep the numbers of every batch not fully acknowledged."""
            rng = random.Random(index)  # noqa: S311 — picks repeats, not secrets
            fresh = iter(range(index, 10**9, CLIENTS))
            async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
                while True:
                    numbers = [next(fresh) for _ in range(FRESH_PER_BATCH)]
                    if sent:
                        numbers += rng.sample(sorted(sent), min(REPEATS_PER_BATCH, len(sent)))
                    sent.update(numbers)
                    answer = await post_batch(http, gateway, token, source.body(numbers))
                    if left := record(ledgers[index], numbers, answer):
                        unacknowledged[index].append(left)
                    if answer.status == 0 and killed.is_set():
                        return

        async def acknowledged_enough() -> bool:
            return sum(len(ledger.acknowledged) for ledger in ledgers) >= ACKNOWLEDGED_BEFORE_KILL

        clients = [asyncio.create_task(client(i)) for i in range(CLIENTS)]
        try:
            await wait_for("acknowledgements", acknowledged_enough, timeout=LOAD_LIMIT_SECONDS)
            assert not any(task.done() for task in clients), "the kill lands mid-load"
            gateway.send(signal.SIGKILL)
            killed.set()
            assert await gateway.wait(10) == -signal.SIGKILL
            await asyncio.wait_for(asyncio.gather(*clients), 30)
        finally:
            for task in clients:
                task.cancel()
        acknowledged_at_kill = sum(len(ledger.acknowledged) for ledger in ledgers)
        assert sum(len(batches) for batches in unacknowledged) >= CLIENTS, (
            "each client has at least the request that found the gateway gone to retry"
        )

        await gateway.start()
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            for index in range(CLIENTS):
                for numbers in unacknowledged[index]:
                    left = numbers
                    for _ in range(RETRY_ATTEMPTS):
                        answer = await post_batch(http, gateway, token, source.body(left))
                        left = record(ledgers[index], left, answer)
                        if not left:
                            break
                        await asyncio.sleep(0.2)
                    assert not left, f"a retry is acknowledged (last answer {answer.status})"

    acknowledged: dict[int, str] = {}
    for ledger in ledgers:
        for number, observation_id in ledger.acknowledged.items():
            assert acknowledged.setdefault(number, observation_id) == observation_id
    stored = await stored_ids(dsn)
    assert acknowledged_at_kill >= ACKNOWLEDGED_BEFORE_KILL
    assert set(acknowledged) == sent, "every reading sent was acknowledged in the end"
    assert all(stored[observation_id] == 1 for observation_id in acknowledged.values()), (
        "every acknowledged reading is stored exactly once"
    )
    assert sum(stored.values()) == len(sent), "no duplicate rows from retries"
    assert set(stored) == set(acknowledged.values())
