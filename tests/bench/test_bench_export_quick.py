"""`python -m bench.export --quick` runs end to end and reports every figure of the research-export
benchmark. No speed is asserted (machines are noisy); memory growth is, loosely, since
the point of the design is that it does not grow with the size of the export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]


def test_quick_export_benchmark_reports_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    command = [sys.executable, "-m", "bench.export", "--quick", "--out", str(out)]
    if url := os.environ.get("GATEWAY_TEST_DATABASE_URL"):
        command += ["--database-url", url]
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        command, cwd=REPO, capture_output=True, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-4000:]
    results: dict[str, Any] = orjson.loads(out.read_bytes())
    export = results["export"]
    assert export["output"] == {
        "Patient": results["subjects"],
        "Observation": 20_000,
        "Device": results["subjects"],  # one watch per subject
    }
    assert export["resources_per_s"] > 0
    assert results["copy_baseline"]["rows_per_s"] > 0
    assert export["ratio_to_copy"] > 0
    assert export["rss_growth_mib"] < results["target_rss_growth_mib"]
