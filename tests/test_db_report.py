"""dbbench report from real results files: tables, CSV, an offline HTML page that Chromium renders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from dbbench import results
from dbbench.cli import app
from dbbench.dataset import build_synth
from dbbench.engines.base import QUERY_NAMES
from dbbench.report import LOG_SCALE_RATIO, bar_chart, write_report
from dbbench.runner import RunConfig, run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One chDB run (PostgreSQL skipped), and the same run as if from a second, 30x slower machine
    whose vwap answer was wrong: the report must put both side by side."""
    root = tmp_path_factory.mktemp("report")
    build_synth(root / "data", 2000)
    first = root / "a.json"
    run(RunConfig(data=root / "data", engines=["clickhouse", "timescaledb"], repeat=2, clients=(1, 2), out=first,
                  cold=True, drop_caches=False, dsns={"clickhouse": f"chdb://{root / 'chdb'}", "timescaledb": "postgresql://postgres@127.0.0.1:1/x"}))
    other = orjson.loads(first.read_bytes())
    other["machine"]["hostname"] = "slowbox"
    for q in other["engines"]["clickhouse"]["queries"].values():
        for key in ("min", "median", "mean", "p95", "max"):
            q["hot"]["client"][key] *= 30
    other["engines"]["clickhouse"]["queries"]["vwap"].update(status="wrong", valid=False,
                                                             verdict="run 1: WRONG: column vwap")
    second = results.write(root / "b.json", other)
    return [first, second]


@pytest.fixture(scope="module")
def report(runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(runs, tmp_path_factory.mktemp("out"))


def test_tables_cover_every_engine_and_query(report: dict[str, Path]) -> None:
    md = report["markdown"].read_text()
    for query in QUERY_NAMES:
        assert f"| {query} |" in md
    assert md.count("clickhouse @ ") >= 2 and "slowbox" in md and "skipped" in md and "127.0.0.1:1" in md
    latency = pl.read_csv(report["latency"])
    assert latency.height == 2 * len(QUERY_NAMES) and set(latency["query"]) == set(QUERY_NAMES)
    fastest = latency.filter(pl.col("valid")).group_by("query").agg(pl.col("ratio").min())
    assert fastest["ratio"].to_list() == pytest.approx([1.0] * len(QUERY_NAMES))
    slow = latency.filter(pl.col("run").str.starts_with("slowbox") & pl.col("valid")).sort("query")
    fast = latency.filter(~pl.col("run").str.starts_with("slowbox") & pl.col("query").is_in(slow["query"].to_list()))
    fast = fast.sort("query")
    assert slow["median_s"].to_list() == pytest.approx((fast["median_s"] * 30).to_list())
    assert slow["ratio"].to_list() == pytest.approx(((slow["median_s"] + 0.01) / (fast["median_s"] + 0.01)).to_list())
    wrong = latency.filter(pl.col("status") == "wrong")
    assert wrong["query"].to_list() == ["vwap"] and wrong["median_s"].is_null().all()
    assert "| vwap | " in md and "wrong" in md
    for name in ("ingest", "storage", "concurrency", "engines"):
        assert pl.read_csv(report[name]).height > 0


def test_html_is_self_contained(report: dict[str, Path]) -> None:
    page = report["html"].read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.IGNORECASE)
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", page, re.IGNORECASE)
    assert page.count("<svg") >= len(QUERY_NAMES)


def test_bar_chart_switches_to_log_scale() -> None:
    assert "linear scale" in bar_chart("q", [("a", 0.001, ""), ("b", 0.002, "")], {})
    assert "log scale" in bar_chart("q", [("a", 0.001, ""), ("b", 0.001 * LOG_SCALE_RATIO * 2, "")], {})


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (Debian package chromium)")
def test_page_renders_in_headless_chromium(report: dict[str, Path], tmp_path: Path) -> None:
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = report["html"].resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr
    assert "<svg" in dom.stdout and "dbbench report" in dom.stdout
    for name in (*QUERY_NAMES, "clickhouse", "timescaledb", "slowbox"):
        assert name in dom.stdout, name
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", url], capture_output=True, timeout=120,
                   check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_cli_report(runs: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").exists() and orjson.loads(result.stdout)["runs"] == 2
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"schema": "something else"}))
    result = CliRunner().invoke(app, ["report", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 3 and "results lack" in result.output


def _timing(seconds: float) -> dict:
    stats = {"n": 1, "min": seconds, "median": seconds, "mean": seconds, "p95": seconds, "max": seconds}
    return {"client_s": [seconds], "server_s": None, "client": stats, "server": None, "overhead_s": None,
            "overhead_pct": None}


def _hand_made(times: dict[str, dict[str, float | str]], sha: str = "a" * 64) -> dict:
    """A results file of one cold run: times[engine][query] is the hot median (and cold time), or a status."""
    engines = {}
    for engine, per in times.items():
        queries = {}
        for query, t in per.items():
            ok = not isinstance(t, str)
            queries[query] = {"status": "ok" if ok else t, "valid": ok, "verdict": None, "error": None,
                              "hot": _timing(t) if ok else None, "cold": _timing(2 * t) if ok else None}
        engines[engine] = {"engine": engine, "name": engine, "status": "ok", "reason": None, "failures": [],
                           "version": "1", "load": [], "storage": {}, "queries": queries, "concurrency": []}
    engines["kdb"] = {"engine": "kdb", "name": "kdb", "status": "skipped", "reason": "no q", "failures": [],
                      "load": [], "storage": {}, "queries": {}, "concurrency": []}
    dataset = {"path": "/d/hand", "source": {"kind": "synth"}, "rows": {"trades": 10, "quotes": 20}, "min_ts": 1,
               "max_ts": 2, "sha256": {"trades": sha, "quotes": "b" * 64}}
    return {"schema": results.SCHEMA, "started": "2024-08-09T00:00:00Z", "finished": "2024-08-09T00:01:00Z",
            "machine": {"hostname": "h"}, "dataset": {**dataset, "identity": results.dataset_identity(dataset)},
            "config": {"repeat": 1, "cold": True}, "caches": {"os_page_cache": "kept"}, "engines": engines}


def test_clickbench_score_by_hand(tmp_path: Path) -> None:
    """a: fastest on q1, wrong on q3 (the penalty: 2 x max(300 s, its slowest answer 0.1 s) = 600 s);
    b: answers everything. Ratios (t + 10 ms) / (best + 10 ms), geometric mean over q1..q3."""
    path = results.write(tmp_path / "hand.json", _hand_made({"a": {"q1": 0.01, "q2": 0.1, "q3": "wrong"},
                                                              "b": {"q1": 0.02, "q2": 0.05, "q3": 1.0}}))
    written = write_report([path], tmp_path / "out")
    hot = {r["column"]: r for r in pl.read_csv(written["score_hot"]).iter_rows(named=True)}
    a = ((0.02 / 0.02) * (0.11 / 0.06) * (600.01 / 1.01)) ** (1 / 3)
    b = ((0.03 / 0.02) * (0.06 / 0.06) * (1.01 / 1.01)) ** (1 / 3)
    assert hot["a"]["score"] == pytest.approx(a) and hot["b"]["score"] == pytest.approx(b)
    assert hot["a"]["penalty_s"] == 600 and hot["a"]["penalized"] == "q3 (wrong)" and hot["a"]["answered"] == "2/3"
    assert hot["kdb"]["score"] is None and "not scored" in hot["kdb"]["penalized"]
    assert list(hot) == ["b", "a", "kdb"]  # best first
    cold = {r["column"]: r for r in pl.read_csv(written["score_cold"]).iter_rows(named=True)}
    a_cold = ((0.03 / 0.03) * (0.21 / 0.11) * (600.01 / 2.01)) ** (1 / 3)  # cold times are twice the hot ones
    assert cold["a"]["score"] == pytest.approx(a_cold)
    md = written["markdown"].read_text()
    assert "## Score, hot" in md and "## Score, cold" in md and "hand (synth): 30 rows, sha256" in md


def test_results_of_different_datasets_refuse_to_merge(tmp_path: Path) -> None:
    times = {"a": {"q1": 0.01}}
    one = results.write(tmp_path / "one.json", _hand_made(times))
    other = results.write(tmp_path / "other.json", _hand_made(times, sha="c" * 64))
    same = results.write(tmp_path / "same.json", _hand_made(times))
    assert write_report([one, same], tmp_path / "ok")["html"].exists()
    with pytest.raises(results.ResultsError, match="different datasets") as refused:
        write_report([one, other], tmp_path / "no")
    assert str(one) in str(refused.value) and str(other) in str(refused.value)
    result = CliRunner().invoke(app, ["report", str(one), str(other), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 3 and "different datasets" in result.output
    assert not (tmp_path / "cli" / "report.html").exists()


def test_html_has_cold_and_hot_scores_and_latency(report: dict[str, Path]) -> None:
    page = report["html"].read_text()
    for anchor in ("score-hot", "score-cold", "latency-hot", "latency-cold"):
        assert f"id='{anchor}'" in page, anchor
    assert "Dataset: data (synth)" in page and "sha256" in page
    cold = page[page.index("id='latency-cold'"):page.index("Per query")]
    assert all(query in cold for query in QUERY_NAMES) and " ms" in cold


def test_main_summary_shows_the_clickbench_score(runs: list[Path], tmp_path: Path) -> None:
    """benchmarks/main_summary.py, as main_job.sh runs it, on a real chDB run (the only engine: score 1)."""
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "results.json").write_bytes(runs[0].read_bytes())
    script = Path(__file__).parents[1] / "benchmarks" / "main_summary.py"
    shown = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120,
                           check=True, env={**os.environ, "COLUMNS": "250"}).stdout
    assert "score, hot" in shown and "score, cold" in shown and "ClickBench" in shown and "sha256" in shown
    row = next(line for line in shown.splitlines() if "clickhouse" in line and "ClickHouse" in line)
    assert row.count("1.00") == 2 and "10/10" in row  # hot and cold: the only engine scores 1 in both
