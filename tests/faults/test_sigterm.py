"""Issue 8: SIGTERM under load is a graceful shutdown: the gateway stops accepting, finishes the
batches in flight, drains its group-commit writers, closes its pools and exits 0 within the
grace period; every acknowledged reading is committed and no request hangs."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.conftest import DatabaseFactory
from tests.faults.harness import (
    GatewayProcess,
    LoadClient,
    ReadingSource,
    enrol,
    free_port,
    gateway_environment,
    provision,
    stored_ids,
    wait_for,
)

GRACE_SECONDS = 5.0
# Interpreter teardown after the app's cleanup, on a loaded machine: a bound on hanging.
EXIT_SLACK_SECONDS = 3.0
CLIENTS = 4
SUBJECTS = 8


async def test_sigterm_under_load_drains_commits_acknowledged_readings_and_exits_0(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await databases.create("cn")
    credentials = await provision({"cn": dsn}, tmp_path)
    env = gateway_environment({"cn": dsn}, credentials, free_port())
    source = ReadingSource("cn", SUBJECTS)
    stop = asyncio.Event()
    async with GatewayProcess(env, tmp_path / "gateway.log", grace=GRACE_SECONDS) as gateway:
        await gateway.start()
        await enrol(gateway, credentials.clinic["cn"], "cn", SUBJECTS)
        clients = [
            LoadClient(gateway, credentials.vendor["cn"], source, first=i, step=CLIENTS, batch=200)
            for i in range(CLIENTS)
        ]
        tasks = [asyncio.create_task(client.run(stop)) for client in clients]
        try:

            async def acknowledged_enough() -> bool:
                return sum(len(c.ledger.acknowledged) for c in clients) >= 2000

            await wait_for("acknowledgements", acknowledged_enough, timeout=60)
            assert not any(task.done() for task in tasks), "the signal lands mid-load"
            signalled = time.monotonic()
            gateway.send(signal.SIGTERM)
            status = await gateway.wait(GRACE_SECONDS + EXIT_SLACK_SECONDS)
            exited = time.monotonic()

            async def refused_after_exit() -> bool:
                return all(any(e.sent_at > exited for e in client.exchanges) for client in clients)

            await wait_for("requests after the exit", refused_after_exit, timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        assert status == 0
        events = [entry["event"] for entry in gateway.events()]

    exchanges = [e for client in clients for e in client.exchanges]
    assert all(e.answer.seconds <= GRACE_SECONDS + EXIT_SLACK_SECONDS for e in exchanges), (
        "no request hangs across the shutdown"
    )
    after_signal = [e for e in exchanges if e.sent_at > signalled]
    assert {e.answer.status for e in after_signal} <= {0, 200, 503}
    assert {e.answer.status for e in exchanges if e.sent_at > exited} == {0}, "refused"
    # The app's cleanup closes every zone: the writer writes what is queued, then the pool
    # closes; `app.stopped` is logged only after that.
    assert events.index("app.stopped") > events.index("app.started")

    stored = await stored_ids(dsn)
    sent = set().union(*(client.sent for client in clients))
    for client in clients:
        for observation_id in client.ledger.acknowledged.values():
            assert stored[observation_id] == 1, "every acknowledged reading is committed"
    assert sum(stored.values()) <= len(sent)
