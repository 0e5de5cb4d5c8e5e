"""dbbench report from real results files: tables, CSV, an offline HTML page that Chromium renders."""

from __future__ import annotations

import re
import shutil
import subprocess
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
                  dsns={"clickhouse": f"chdb://{root / 'chdb'}", "timescaledb": "postgresql://postgres@127.0.0.1:1/x"}))
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
    slow = latency.filter(pl.col("run").str.starts_with("slowbox") & pl.col("valid"))
    assert slow["ratio"].to_list() == pytest.approx([30.0] * slow.height)
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
