"""`python -m bench.ingest --quick` runs end to end on a gateway it starts itself, reports every
figure of issue 7 with ratios computed from the figures it measured, and leaves no process behind.

Nothing here asserts a speed: machines are noisy. The figures are checked for presence and
consistency only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, "-m", "bench.ingest", "--quick", "--out", str(out)]
    # The test suite's own server when one is configured (as tests/conftest.py does), else the
    # benchmark's default: an embedded PostgreSQL.
    if url := os.environ.get("GATEWAY_TEST_DATABASE_URL"):
        command += ["--database-url", url]
    completed = subprocess.run(  # noqa: S603 — our own interpreter and module, fixed arguments
        command, cwd=REPO, capture_output=True, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-4000:]
    results: dict[str, Any] = orjson.loads(out.read_bytes())
    results["printed"] = completed.stdout.decode()
    return results


def test_every_figure_is_measured(quick_run: dict[str, Any]) -> None:
    figures = [
        quick_run["baselines"]["copy"]["rows_per_s"],
        quick_run["baselines"]["bare_handler"]["requests_per_s"],
        quick_run["batch"]["readings_per_s"],
        quick_run["single"]["readings_per_s"],
        quick_run["single"]["latency_ms"]["p50"],
        quick_run["single"]["latency_ms"]["p99"],
        quick_run["queryable"]["latency_ms"]["p50"],
        quick_run["queryable"]["latency_ms"]["p99"],
        quick_run["memory"]["peak_rss_mib"],
        quick_run["memory"]["soak"]["first_quarter_mib"],
        quick_run["memory"]["soak"]["last_quarter_mib"],
    ]
    assert all(isinstance(f, int | float) and f > 0 for f in figures), figures
    assert quick_run["queryable"]["label"].startswith("FHIR search")
    assert quick_run["queryable"]["latency_ms"]["count"] > 0
    assert quick_run["postgres"]["synchronous_commit"]
    assert quick_run["postgres"]["shared_buffers"]


def test_ratios_are_computed_from_the_measured_figures(quick_run: dict[str, Any]) -> None:
    copy = quick_run["baselines"]["copy"]["rows_per_s"]
    bare = quick_run["baselines"]["bare_handler"]["requests_per_s"]
    batch, single = quick_run["batch"], quick_run["single"]
    soak = quick_run["memory"]["soak"]
    assert batch["ratio_to_copy"] == pytest.approx(batch["readings_per_s"] / copy, abs=1e-4)
    assert single["ratio_to_bare"] == pytest.approx(single["readings_per_s"] / bare, abs=1e-4)
    drift = (soak["last_quarter_mib"] - soak["first_quarter_mib"]) / soak["first_quarter_mib"]
    assert soak["change_pct"] == pytest.approx(drift * 100, abs=0.05)


def test_targets_are_judged_from_the_figures(quick_run: dict[str, Any]) -> None:
    judged = {t["figure"]: t for t in quick_run["targets"]}
    batch, single = quick_run["batch"], quick_run["single"]
    expected = {
        "batch / raw COPY": batch["ratio_to_copy"] >= 0.5,
        "single / bare handler": single["ratio_to_bare"] >= 0.25,
        "single p99 at 64 connections (ms)": single["latency_ms"]["p99"] <= 50,
        "ingest -> queryable p99 (ms)": quick_run["queryable"]["latency_ms"]["p99"] <= 100
        and quick_run["queryable"]["not_found"] == 0,
        "RSS last vs first quarter (%)": abs(quick_run["memory"]["soak"]["change_pct"]) <= 10,
    }
    assert {name: t["met"] for name, t in judged.items()} == expected


def test_the_gateway_stored_every_reading_it_acknowledged(quick_run: dict[str, Any]) -> None:
    checks = quick_run["checks"]
    readings = quick_run["parameters"]["readings"]
    assert quick_run["baselines"]["copy"]["stored"] == readings
    assert quick_run["batch"]["created"] == readings
    assert checks["batch_stored"] == readings
    assert checks["batch_ids_same_as_copy"] is True
    assert set(quick_run["batch"]["statuses"]) == {"200"}
    assert set(quick_run["single"]["statuses"]) == {"200"}


def test_every_process_it_started_is_gone(quick_run: dict[str, Any]) -> None:
    pids = quick_run["pids"]
    assert pids["gateway"]
    assert pids["bare_server"]
    assert pids["load"]
    started = [pid for value in pids.values() if isinstance(value, list) for pid in value]
    if pids["postgres"] is not None:  # the embedded server's postmaster
        started.append(pids["postgres"])
    alive = []
    for pid in started:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    assert alive == []


def test_the_table_is_printed(quick_run: dict[str, Any]) -> None:
    printed = quick_run["printed"]
    for line in ("raw COPY of the same rows", "bare aiohttp handler", "batch ingest", "target"):
        assert line in printed
