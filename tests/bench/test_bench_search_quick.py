"""`python -m bench.search --quick` runs end to end on a gateway it starts itself, reports every
figure of issue 4's search benchmark, captures the plan shape of the gateway's SQL, and leaves no
process behind.

Nothing here asserts a speed: machines are noisy. Figures are checked for presence only.
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
    out = tmp_path_factory.mktemp("bench-search") / "results.json"
    command = [sys.executable, "-m", "bench.search", "--quick", "--cluster", "--out", str(out)]
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


def test_the_rows_were_loaded(quick_run: dict[str, Any]) -> None:
    data = quick_run["data"]
    assert data["rows"] == quick_run["parameters"]["rows"]
    assert data["partitions"] >= 24  # ~2 years of monthly partitions
    assert data["load_rows_per_s"] > 0


def test_settled_partitions_were_clustered_and_every_row_kept(quick_run: dict[str, Any]) -> None:
    cluster = quick_run["cluster"]
    # ~2 years of months; all but the newest one or two have settled.
    assert cluster["partitions"] >= 20
    assert cluster["outcomes"] == {"clustered": cluster["partitions"]}
    assert cluster["total_size_mib_after"] > 0
    assert "clustered" in quick_run["printed"]


def test_every_figure_is_measured(quick_run: dict[str, Any]) -> None:
    searches = quick_run["searches"]
    patients = quick_run["parameters"]["patients"]
    for key in ("first_page_ms", "summary_count_query_ms", "summary_count_patient_ms"):
        assert searches[key]["count"] == patients, key
        assert 0 < searches[key]["p50"] <= searches[key]["p99"], key
    # Quick mode has 100 readings a patient, 60 of them heart rate: two pages each.
    assert searches["later_pages_ms"]["count"] > 0
    assert 0 < searches["later_pages_ms"]["p50"] <= searches["later_pages_ms"]["p99"]
    assert searches["entries_returned"] > 0
    assert searches["gateway_cpu_pct"] > 0


def test_the_plan_shape_was_captured(quick_run: dict[str, Any]) -> None:
    plans = quick_run["plans"]
    assert set(plans) == {
        "first_page",
        "later_page",
        "summary_count_query",
        "summary_count_patient",
    }
    for name, plan in plans.items():
        shape = plan["shape"]
        assert shape["nodes"], name
        assert shape["execution_ms"] > 0, name
        assert "Buffers:" in shape["top_buffers"], name
        assert any("observations" in line for line in plan["plan"]), name
        assert plan["sql"].startswith("SELECT"), name


def test_every_process_it_started_is_gone(quick_run: dict[str, Any]) -> None:
    pids = quick_run["pids"]
    assert pids["gateway"]
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
    for line in ("first page", "later pages", "_summary=count", "EXPLAIN ANALYZE", "indexes:"):
        assert line in printed
