"""Issue 11: commands that cannot start say why in one line and exit non-zero (no traceback), and
`demo` stopped by SIGTERM stops its embedded PostgreSQL as it does on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.storage import dsn_with_database
from tests.cli.test_commands import run
from tests.conftest import DatabaseFactory
from tests.faults.harness import gateway_environment, provision

START_TIMEOUT = 300.0  # the demo initialises a PostgreSQL cluster on a loaded machine
STOP_TIMEOUT = 60.0


def _one_clear_line(stderr: str) -> str:
    """The command's own error line (beside it stderr may hold JSON log lines and library
    warnings, never a traceback)."""
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("wearable-gateway: ")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


@contextmanager
def _port_in_use() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield int(busy.getsockname()[1])


async def test_migrate_against_a_missing_database_says_so_in_one_line(
    databases: DatabaseFactory,
) -> None:
    existing = await databases.create("cli", migrated=False)
    # dsn_with_database: the embedded server's URLs name their socket folder in the query.
    missing = dsn_with_database(existing, "wg_never_created")
    result = run(["migrate"], {"GATEWAY_ZONES": "cn", "GATEWAY_ZONE_CN_DATABASE_URL": missing})
    assert result.returncode != 0
    line = _one_clear_line(result.stderr)
    assert "zone cn" in line
    assert "does not exist" in line


async def test_serve_on_a_port_in_use_says_so_in_one_line(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await databases.create("cn")
    credentials = await provision({"cn": dsn}, tmp_path)
    with _port_in_use() as port:
        env = gateway_environment({"cn": dsn}, credentials, port)
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode != 0
    line = _one_clear_line(result.stderr)
    assert f"127.0.0.1:{port}" in line
    assert "already in use" in line


def test_demo_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with _port_in_use() as port:
        result = run(
            ["demo", "--once", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
            {},
            timeout=START_TIMEOUT,
        )
    assert result.returncode != 0
    assert "already in use" in _one_clear_line(result.stderr)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(what: str, predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_demo_stopped_by_sigterm_stops_its_embedded_postgresql(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(  # noqa: S603 — our own CLI with fixed arguments
            [sys.executable, "-m", "gateway", "demo", "--port", "0", "--data-dir", str(data_dir)],
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    postmaster = 0
    try:
        _wait(
            "the demo to serve",
            lambda: b"Serving on http://" in log.read_bytes() or demo.poll() is not None,
            START_TIMEOUT,
        )
        assert demo.poll() is None, log.read_text(errors="replace")[-2000:]
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        assert _alive(postmaster)

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=STOP_TIMEOUT) == 0
        _wait("the embedded PostgreSQL to stop", lambda: not _alive(postmaster), STOP_TIMEOUT)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=STOP_TIMEOUT)
        if postmaster and _alive(postmaster):  # left behind (the defect): stop it, by its PID
            os.kill(postmaster, signal.SIGTERM)
