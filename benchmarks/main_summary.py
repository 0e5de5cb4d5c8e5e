"""The main job's closing screen: every model and every engine on one page, each line with its data.

Usage: python benchmarks/main_summary.py OUT   (OUT: the main job's output directory)

Reads what the main job wrote and computes nothing new: OUT/<run>/evaluation.json and
backtest.json per forecasting run, OUT/db/results.json and OUT/servers.json for the databases.
Figures are the test split's, with their 95% block-bootstrap intervals.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from rich.console import Console
from rich.table import Table

HORIZON = 5
# (run directory under OUT, model, label); a run or model that is absent is left out.
MODELS = (
    ("synth_run", "hfformer", "HFformer, best settings on validation (hfformer/tuned_v2.toml)"),
    ("synth_paper", "hfformer", "HFformer, paper's settings (ablation, its own run)"),
    ("synth_run", "lstm", "LSTM (same settings and budget as the headline)"),
    ("synth_run", "lightgbm", "LightGBM on the per-level features (grid chosen on validation)"),
    ("synth_run", "linear", "linear: ridge on per-level imbalances, spread, returns, trade flow"),
    ("synth_run", "naive", "ridge: lagged returns, level-1 and whole-book imbalance"),
    ("synth_run", "zero", "zero forecast"),
    ("synth_run", "ceiling", "ceiling (best forecast from what the market showed)"),
    ("synth_run", "oracle", "oracle (exact conditional mean given the hidden state)"),
    ("binance_run", "hfformer", "HFformer, settings chosen on the synthetic market (hfformer/tuned_v2.toml)"),
    ("binance_run", "lstm", "LSTM (same settings and budget as the headline)"),
    ("binance_run", "lightgbm", "LightGBM on the per-level features (grid chosen on validation)"),
    ("binance_run", "linear", "linear: ridge on per-level imbalances, spread, returns, trade flow"),
    ("binance_run", "naive", "ridge: lagged returns, level-1 and whole-book imbalance"),
    ("binance_run", "zero", "zero forecast"),
)


def _read(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def _span(ns: int) -> str:
    minutes = ns / 60e9
    return f"{minutes:,.0f} min" if minutes < 180 else f"{minutes / 60:,.1f} h"


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def describe_book(data: Path) -> str:
    """'synthetic market, 72,000 book rows, 120 min' or 'real Binance ..., rows, span from ...'."""
    data = Path(data)
    book = data / "book.parquet" if data.is_dir() else data
    ts = pl.scan_parquet(book).select(pl.col("ts").cast(pl.Int64)).collect()["ts"]
    rows, span = ts.len(), int(ts.max() - ts.min())
    if (data / "oracle.parquet").exists():
        return f"synthetic market ({data}): {rows:,} book rows, {_span(span)}"
    return f"real Binance book ({book}): {rows:,} rows, {_span(span)} from {_utc(int(ts.min()))} UTC"


def _interval(row: dict[str, Any], key: str, digits: int = 3) -> str:
    value, lo, hi = row.get(key), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def forecast_table(out: Path, runs: list[str], title: str) -> Table | None:
    evaluations = {r: _read(out / r / "evaluation.json") for r in runs if (out / r / "evaluation.json").exists()}
    if not evaluations:
        return None
    backtests = {r: _read(out / r / "backtest.json") for r in evaluations if (out / r / "backtest.json").exists()}
    first = next(iter(evaluations.values()))
    fees = next(iter(backtests.values()))["config"] if backtests else {}
    caption = f"data: {describe_book(Path(first['data']))}; test split, h={HORIZON}; 95% block-bootstrap intervals"
    if fees:
        caption += (f"; backtest: the published rule, fees {fees['taker_fee_bps']} bp taker / "
                    f"{fees['maker_fee_bps']} bp maker per side (preset {fees.get('fees', 'custom')})")
    table = Table(title=title, caption=caption, caption_justify="left")
    for column in ("model", "test windows", "R2", "oracle fraction", "ceiling fraction", "sign accuracy",
                   "backtest PnL, USDT", "trades"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for run, model, label in MODELS:
        if run not in evaluations:
            continue
        rows = [m for m in evaluations[run]["metrics"] if m["model"] == model and m["horizon"] == HORIZON]
        if not rows:
            continue
        row = rows[0]
        bt = backtests.get(run, {}).get("models", {}).get(model)
        pnl = "-" if bt is None else _interval(bt, "pnl", 2)
        table.add_row(label, f"{row['windows']:,}", _interval(row, "r2"), _interval(row, "oracle_frac"),
                      _interval(row, "ceiling_frac"), _interval(row, "sign_acc"), pnl,
                      "-" if bt is None else f"{bt['trades']:,}")
    return table


def clickbench_scores(res: dict[str, Any], run: str = "hot") -> dict[str, Any]:
    """ClickBench's score per engine of the run's hot or cold timings (dbbench.score: penalties for queries
    without a correct answer)."""
    from dbbench.score import scores

    times = {name: {q: v[run]["client"]["median"] if v["valid"] and v.get(run) else None
                    for q, v in e["queries"].items()}
             for name, e in res["engines"].items() if e["status"] != "skipped"}
    why = {name: {q: v["status"] for q, v in e["queries"].items()} for name, e in res["engines"].items()}
    return {s.column: s for s in scores(times, why)}


def database_table(out: Path) -> Table | None:
    path = out / "db" / "results.json"
    if not path.exists():
        return None
    res = _read(path)
    ds = res["dataset"]
    rows = sum(ds["rows"].values())
    source = ds.get("source", {})
    kind = source.get("kind", "?") if isinstance(source, dict) else str(source)
    origin = "real Binance recordings" if kind == "binance" else f"{kind} data"
    per_table = ", ".join(f"{t} {n:,}" for t, n in ds["rows"].items())
    digest = (ds.get("identity") or {}).get("digest")
    caption = (f"data: {origin} ({ds['path']}): {rows:,} rows ({per_table}), "
               f"{_span(ds['max_ts'] - ds['min_ts'])} from {_utc(ds['min_ts'])} UTC, venues {', '.join(ds['venues'])}"
               + (f", sha256 {digest[:12]}" if digest else "") + "; "
               f"hot latency: median of {res['config']['repeat']} runs per query, each with its own parameters "
               f"(seed {(res['config'].get('workload') or {}).get('seed', '-')})"
               + ("; cold: one run right after a restart of the engine" if res["config"].get("cold") else "")
               + "; score: ClickBench's (per query "
               "(t + 10 ms) / (fastest + 10 ms), a query without a correct answer counted as 2 x max(300 s, the "
               "engine's slowest), geometric mean over the suite; 1 is best)")
    server_skips = _read(out / "servers.json").get("skipped", {}) if (out / "servers.json").exists() else {}
    skipped: list[str] = []
    table = Table(title="Tick databases: the same ticks, the same ten queries, answers checked against Polars",
                  caption=caption, caption_justify="left")
    cold = res["config"].get("cold", False)
    for column in ("engine", "version", "load rows/s", "storage MB", "score, hot", *["score, cold"] * cold,
                   "answers correct", "note"):
        table.add_column(column, justify="left" if column in ("engine", "version", "note") else "right")
    score = clickbench_scores(res)
    cold_score = clickbench_scores(res, "cold") if cold else {}
    for name, e in res["engines"].items():
        if e["status"] == "skipped":
            skipped.append(f"skipped {name}: {server_skips.get(e['engine']) or e['reason']}")
            continue
        loads = [t for load in e["load"] if load["valid"] for t in load["tables"].values()]
        load_rate = sum(t["rows"] for t in loads) / sum(t["seconds"] for t in loads) if loads else float("nan")
        storage = sum(s["bytes_on_disk"] for s in e["storage"].values()) / 1e6 if e["storage"] else float("nan")
        valid = [q for q in e["queries"].values() if q["valid"]]
        hot = score[name].score
        note = "" if e["status"] == "ok" else f"{e['status']}: {e['reason']}"
        unsupported = [q for q, v in e["queries"].items() if v["status"] == "unsupported"]
        if unsupported:
            note = (note + "; " if note else "") + f"unsupported in its dialect: {', '.join(unsupported)}"
        cells = ["-" if hot is None else f"{hot:,.2f}"]
        if cold:
            cells.append("-" if cold_score[name].score is None else f"{cold_score[name].score:,.2f}")
        table.add_row(name, str(e.get("version") or "-"), f"{load_rate:,.0f}", f"{storage:,.2f}", *cells,
                      f"{len(valid)}/{len(e['queries'])}", note)
    if skipped:
        table.caption += "\n" + "\n".join(skipped)
    return table


def main(out: Path) -> None:
    console = Console(width=max(Console().width, 160))
    tables = [
        forecast_table(out, ["synth_run", "synth_paper"],
                       "Forecasting log returns: synthetic regime market with a known oracle and ceiling"),
        forecast_table(out, ["binance_run"],
                       "Forecasting on real data (too short to rank models: read the intervals)"),
        database_table(out),
    ]
    for table in tables:
        if table is not None:
            console.print(table)
            console.print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/main_summary.py OUT")
    main(Path(sys.argv[1]))
