"""Report on a small hand-built run directory: files, offline HTML, models, headless Chromium."""

import json
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from data_loaders.features import make_targets
from hfformer.cli import app
from hfformer.report import build_report, fan_stretch

HORIZONS = tuple(range(1, 31))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FETCHES = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def forecast_frame(
    price: np.ndarray, skill: float, quantiles: bool, rng: np.random.Generator
) -> pl.DataFrame:
    """Test-split forecasts: realised scaled target plus noise; none for the first 99 rows."""
    n = price.size
    y = make_targets(price, HORIZONS).astype(np.float64)
    columns = {
        "ts": pl.Series(1_723_075_200_000_000_000 + np.arange(n) * 100_000_000).cast(
            pl.Datetime("ns", "UTC")
        ),
        "price": price,
        "bid_px_1": price - 0.05,
        "ask_px_1": price + 0.05,
        "bid_qty_1": np.ones(n),
        "ask_qty_1": np.ones(n),
    }
    noise = rng.normal(0, 0.4, n)  # shared across horizons, as a model's errors are
    for j, h in enumerate(HORIZONS):
        median = np.nan_to_num(skill * y[:, j]) + noise
        median[:99] = np.nan
        columns[f"y_h{h}"] = y[:, j]
        columns[f"f_h{h}_q50"] = median
        if quantiles:
            columns[f"f_h{h}_q10"], columns[f"f_h{h}_q90"] = median - 0.8, median + 0.8
    return pl.DataFrame(columns, nan_to_null=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(7)
    price = 60_000 * np.exp(np.cumsum(rng.normal(0, 2e-5, 3_000)))
    (run / "forecasts").mkdir()
    for model, skill, quantiles in (
        ("hfformer", 0.6, True),
        ("lstm", 0.5, False),
        ("oracle", 1.0, True),
    ):
        forecast_frame(price, skill, quantiles, rng).write_parquet(
            run / "forecasts" / f"{model}.parquet"
        )
    rows = []
    for model, base in (("hfformer", 0.66), ("lstm", 0.64), ("oracle", 0.75)):
        for h in HORIZONS:
            acc, r2 = base - 0.002 * h, (base - 0.5) * (0.6 - 0.01 * h)
            rows.append(
                {
                    "model": model,
                    "horizon": h,
                    "sign_acc": acc,
                    "sign_acc_lo": acc - 0.01,
                    "sign_acc_hi": acc + 0.01,
                    "r2": r2,
                    "r2_lo": r2 - 0.02,
                    "r2_hi": r2 + 0.02,
                    "mse": 1 - r2,
                    "pinball": 0.3,
                    "coverage80": 0.8,
                    "r2_oracle_frac": r2 / (0.25 * (0.6 - 0.01 * h)),
                }
            )
    pl.DataFrame(rows).write_csv(run / "evaluation.csv")
    (run / "evaluation.json").write_text(json.dumps({
        "market": "NEXOUSDT spot: tick 0.001 = 8.3 bp of price (not BTC-USDT: a large-tick market)",
        "too_little_data": ["test: 946 windows over 0.03 h"], "metrics": rows}))
    for model in ("hfformer", "lstm"):
        (run / model).mkdir()
        steps = np.arange(1, 61) * 50
        pl.DataFrame(
            {
                "epoch": steps // 1000,
                "step": steps,
                "train_loss": 1 / np.sqrt(steps),
                "val_loss": np.where(steps % 1000 == 0, 1.1 / np.sqrt(steps), np.nan),
                "lr": np.full(60, 1e-3),
                "windows_per_s": np.full(60, 1500.0),
            },
            nan_to_null=True,
        ).write_csv(run / model / "metrics.csv")
    (run / "config.toml").write_text('[model]\nd_model = 36\n[data]\npath = "synthetic"\n')
    return run


def test_report_files_offline_and_every_model(run_dir):
    out = run_dir / "report"
    files = build_report(run_dir, out)
    assert files.models == ["hfformer", "lstm", "oracle"] and files.missing == []
    assert sorted(p.name for p in files.figures) == [
        "accuracy.png",
        "fan.png",
        "pnl.png",
        "training.png",
    ]
    for path in files.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    page = files.html.read_text()
    assert not FETCHES.search(page), FETCHES.search(page)
    assert page.count("src='data:image/png;base64,") == 4
    markdown = files.markdown.read_text()
    for model in files.models:
        assert f"<td>{model}</td>" in page and f"| {model} |" in markdown
    assert "![Backtest](pnl.png)" in markdown and "| model | h | sign_acc |" in markdown
    # what the data is and the small-data warning stand beside the accuracy table
    assert "Data: NEXOUSDT spot: tick 0.001 = 8.3 bp of price (not BTC-USDT" in markdown
    assert "too little data to tell models apart (test: 946 windows over 0.03 h)" in markdown
    assert (run_dir / "backtest.json").exists()  # the report ran the default backtest


def test_report_lists_what_is_missing(tmp_path, run_dir):
    shutil.copytree(run_dir / "forecasts", tmp_path / "forecasts")
    files = build_report(tmp_path)
    assert files.html.parent == tmp_path / "report"
    assert any(m.startswith("evaluation") for m in files.missing)
    assert any(m.startswith("training") for m in files.missing)
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "nope")


def test_fan_stretch_picks_widest_complete_block():
    price = np.zeros(100)
    price[35] = 5.0  # block 1 (rows 30..59) widest
    price[75] = 9.0  # block 2 wider but has a row without a forecast
    has = np.ones(100, dtype=bool)
    has[61] = False
    assert fan_stretch(price, has, 30) == 30
    assert fan_stretch(price, np.zeros(100, dtype=bool), 30) is None


def test_cli_backtest_and_report(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["backtest", str(run_dir), "--json", "--set", "fill=touch"])
    assert result.exit_code == 0, result.output
    assert '"command":"hfformer backtest"' in result.output and '"hfformer"' in result.output
    result = runner.invoke(app, ["backtest", str(run_dir), "--set", "fill=limit"])
    assert result.exit_code == 2 and "fill must be" in result.output
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0 and "report:" in result.output
    assert (tmp_path / "r" / "report.html").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_html_renders_in_headless_chromium(run_dir, tmp_path):
    files = build_report(run_dir, tmp_path / "out")
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            files.html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    assert "HFformer run report" in dom and dom.count("<img") == 4
    for model in files.models:
        assert f"<td>{model}</td>" in dom
