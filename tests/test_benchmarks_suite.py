"""The pytest-benchmark suite runs (chDB, tiny dataset): benchmarks grouped by query, checked, JSON written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from dbbench.engines.base import QUERY_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_suite_runs_on_the_embedded_engines(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks/test_db_queries.py"),
         str(ROOT / "benchmarks/test_db_load.py"), "--db-engines", "clickhouse,duckdb,kdb",
         "--db-dsn", "kdb=kdb://127.0.0.1:1", "--db-rows", "2000", "--db-rounds", "2",
         "--benchmark-only", f"--benchmark-json={out}", "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "22 passed, 11 skipped" in proc.stdout
    assert "kdb: cannot connect to kdb://127.0.0.1:1" in proc.stdout  # the skip says why
    assert not (tmp_path / ".dbbench").exists()  # the embedded engines' files went to a scratch folder
    benchmarks = orjson.loads(out.read_bytes())["benchmarks"]
    assert {b["group"] for b in benchmarks} == {*QUERY_NAMES, "load"}
    engines = {"clickhouse": "ClickHouse", "duckdb": "DuckDB"}
    assert {b["extra_info"]["engine"] for b in benchmarks} == set(engines)
    for b in benchmarks:
        assert f"[{b['extra_info']['engine']}" in b["name"]  # named for the engine measured
        assert b["extra_info"]["version"].startswith(engines[b["extra_info"]["engine"]])
        assert set(b["extra_info"]["dataset_rows"]) == {"trades", "quotes"}
        assert all(len(digest) == 64 for digest in b["extra_info"]["dataset_sha256"].values())
        if b["group"] != "load":
            assert b["stats"]["rounds"] == 2 and b["extra_info"]["verdict"].startswith("correct")

