"""The operator commands, run as a user would: `wearable-gateway …` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import DatabaseFactory

CLI = [sys.executable, "-m", "gateway"]


def run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 — our own CLI with fixed arguments
        [*CLI, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_keys_migrate_and_vendor_key_commands_prepare_a_zone(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    dsn = await databases.create("cli", migrated=False)
    key_file = tmp_path / "cn.keys.json"
    env = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": dsn,
        "GATEWAY_ZONE_CN_KEY_FILE": str(key_file),
    }

    keys = run(["keys", "init", "--zone", "cn", "--out", str(key_file)], env)
    assert keys.returncode == 0, keys.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = run(["keys", "init", "--zone", "cn", "--out", str(key_file)], env)
    assert again.returncode != 0

    refused = run(["vendors", "add", "--zone", "cn", "--name", "acme"], env)
    assert refused.returncode == 2
    assert "wearable-gateway migrate" in refused.stderr

    migrated = run(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert "0001_initial" in migrated.stdout
    assert "nothing to apply" in run(["migrate"], env).stdout

    vendor = run(["vendors", "add", "--zone", "cn", "--name", "acme"], env)
    assert vendor.returncode == 0, vendor.stderr
    token = vendor.stdout.strip().splitlines()[-1]
    assert token.startswith("wgk_cn_")
    key_id = token.split("_")[2]
    revoked = run(["credentials", "revoke", "--zone", "cn", "--key-id", key_id], env)
    assert revoked.returncode == 0
    assert "revoked" in revoked.stdout


def test_serve_refuses_to_start_without_its_key_file(tmp_path: Path) -> None:
    env = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": "postgresql://127.0.0.1:1/x",
        "GATEWAY_ZONE_CN_KEY_FILE": str(tmp_path / "missing.json"),
    }
    result = run(["serve", "--port", "0"], env, timeout=60)
    assert result.returncode == 2
    assert "missing.json" in result.stderr


def test_demo_once_runs_the_whole_scenario_and_exits_0(tmp_path: Path) -> None:
    result = run(
        ["demo", "--once", "--port", "0", "--data-dir", str(tmp_path / "demo")], {}, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("cn ", "eu "))}
    for zone in ("cn", "eu"):
        created, duplicate, rejected = map(int, rows[zone][1:4])
        assert created > 0
        assert duplicate > 0
        assert rejected > 0
    assert "curl" in result.stdout
    rerun = run(
        ["demo", "--once", "--port", "0", "--data-dir", str(tmp_path / "demo")], {}, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
