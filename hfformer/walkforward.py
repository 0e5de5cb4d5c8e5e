"""`hfformer walkforward`: train on earlier data, test on the next period, period after period.

Fold k tests on one calendar period (a UTC day, or N hours) and learns only from the rows before
it (expanding window; validation is the last part of those rows). Each fold is an ordinary run
directory (OUT/fold<k>: train, evaluate, backtest), so every other command reads it too; the
fold table (OUT/walkforward.{csv,json}) puts them side by side with the data warnings.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
from rich.console import Console
from rich.table import Table

from data_loaders.atomic import write_bytes
from hfformer.backtest import BacktestConfig, backtest_models, fee_preset, load_forecasts, write_backtest
from hfformer.config import Config
from hfformer.data import Data, data_label, describe_market, prepare
from hfformer.evaluate import evaluate
from hfformer.train import train

SHOWN_HORIZONS = (1, 5, 30)


def period_length(every: str) -> timedelta:
    """ "day" or "<N>h" as a duration."""
    if every == "day":
        return timedelta(days=1)
    match = re.fullmatch(r"(\d+)h", every)
    if not match or int(match[1]) == 0:
        raise ValueError(f"--every must be 'day' or a whole number of hours like '6h', got {every!r}")
    return timedelta(hours=int(match[1]))


def fold_periods(first_ns: int, last_ns: int, every: str, min_train_hours: float) -> list[tuple[datetime, datetime]]:
    """[start, end) test periods aligned to UTC period boundaries after the first `min_train_hours`
    of data; the last one ends at the data's end."""
    step = period_length(every)
    first = datetime.fromtimestamp(first_ns / 1e9, UTC)
    last = datetime.fromtimestamp(last_ns / 1e9, UTC)
    midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight + step * ((first - midnight) // step + 1)  # first boundary after the data starts
    while start - first < timedelta(hours=min_train_hours):
        start += step
    periods = []
    while start < last:
        periods.append((start, min(start + step, last + timedelta(microseconds=1))))
        start += step
    if not periods:
        raise ValueError(f"the data ({first:%Y-%m-%d %H:%M} - {last:%Y-%m-%d %H:%M} UTC) holds no test "
                         f"period of {every} after {min_train_hours:g} h of training data")
    return periods


def fold_rows(fold: int, period: tuple[datetime, datetime], evaluation: pl.DataFrame,
              backtest: dict[str, dict[str, Any]], prep_fields: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per model of a fold: R2 (with its interval) at the shown horizons, backtest PnL."""
    rows = []
    for model in dict.fromkeys(evaluation["model"]):
        record: dict[str, Any] = {"fold": fold, "test_from": period[0].isoformat(),
                                  "test_to": period[1].isoformat(), **prep_fields, "model": model}
        for h in SHOWN_HORIZONS:
            hit = evaluation.filter((pl.col("model") == model) & (pl.col("horizon") == h))
            if hit.height:
                r = hit.row(0, named=True)
                record.update({f"r2_h{h}": r["r2"], f"r2_h{h}_lo": r["r2_lo"], f"r2_h{h}_hi": r["r2_hi"],
                               f"sign_acc_h{h}": r["sign_acc"]})
        bt = backtest.get(model)
        record.update({"pnl": bt["pnl"] if bt else None, "pnl_lo": bt["pnl_lo"] if bt else None,
                       "pnl_hi": bt["pnl_hi"] if bt else None, "trades": bt["trades"] if bt else None})
        rows.append(record)
    return rows


def walkforward(data: Data, out: Path, models: list[str], cfg: Config, every: str = "day",
                min_train_hours: float = 1.0, backtest_config: BacktestConfig | None = None,
                n_boot: int = 200, progress=None) -> dict[str, Any]:
    """Train `models` and evaluate and backtest them on every test period; returns the summary
    (with "table", the fold table)."""
    started = time.perf_counter()
    backtest_config = backtest_config or BacktestConfig()
    whole = prepare(data, cfg.data)
    market = describe_market(whole)
    ts = whole.features.ts
    periods = fold_periods(int(ts[0]), int(ts[-1]), every, min_train_hours)
    rows: list[dict[str, Any]] = []
    warnings: dict[str, list[str]] = {}
    for k, period in enumerate(periods, start=1):
        fold_cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, test_start=period[0].isoformat(), test_end=period[1].isoformat()))
        fold_dir = Path(out) / f"fold{k}"
        for model in models:
            if progress:
                progress(f"fold {k}/{len(periods)} ({period[0]:%Y-%m-%d %H:%M} UTC): training {model}")
            train(data, fold_dir, model, fold_cfg)
        result = evaluate(fold_dir, data, n_boot=n_boot)  # the fold's split, with its data warnings
        warnings[f"fold{k}"] = result["too_little_data"]
        bt = backtest_models(load_forecasts(fold_dir), backtest_config)
        write_backtest(fold_dir, bt)
        rows += fold_rows(k, period, result["table"], bt.summary,
                          {"train_hours": result["span_hours"]["train"], "test_hours": result["span_hours"]["test"],
                           "test_windows": result["windows"], "warning": "; ".join(warnings[f"fold{k}"]) or None})
    table = pl.DataFrame(rows)
    write_bytes(Path(out) / "walkforward.csv", table.write_csv().encode())
    summary = {"data": data_label(data), "out": str(out), "market": market, "every": every, "folds": len(periods),
               "models": models, "fees": fee_preset(backtest_config),
               "warnings": {k: v for k, v in warnings.items() if v}}
    write_bytes(Path(out) / "walkforward.json",
                orjson.dumps({**summary, "folds_table": rows}, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return {**summary, "seconds": round(time.perf_counter() - started, 1), "table": table}


def print_folds(table: pl.DataFrame, market: str, console: Console | None = None) -> None:
    """One row per fold and model: R2 [95% interval] at h = 1, 5, 30, PnL, and the data warning."""
    console = console or Console()
    t = Table(title=f"walk-forward, test period by test period: {market}")
    for name in ("fold", "test from (UTC)", "test h", "train h", "test windows", "model",
                 *(f"R2 h={h}" for h in SHOWN_HORIZONS), "PnL [95%]", "trades"):
        t.add_column(name, justify="left" if name in ("model", "test from (UTC)") else "right")
    for r in table.iter_rows(named=True):
        cells = []
        for h in SHOWN_HORIZONS:
            r2 = r.get(f"r2_h{h}")
            cells.append("" if r2 is None else f"{r2:.3f} [{r[f'r2_h{h}_lo']:.3f}, {r[f'r2_h{h}_hi']:.3f}]")
        pnl = "" if r["pnl"] is None or np.isnan(r["pnl"]) else f"{r['pnl']:.2f} [{r['pnl_lo']:.2f}, {r['pnl_hi']:.2f}]"
        t.add_row(str(r["fold"]), r["test_from"][:16].replace("T", " "), f"{r['test_hours']:.1f}",
                  f"{r['train_hours']:.1f}", f"{r['test_windows']:,}", r["model"], *cells, pnl,
                  "" if r["trades"] is None else str(r["trades"]))
    console.print(t)
    for fold, warning in dict(zip(table["fold"], table["warning"])).items():
        if warning:
            console.print(f"[bold yellow]fold {fold}: too little data to tell models apart:[/] {warning}")
