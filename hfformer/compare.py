"""`hfformer compare A B`: is one model's test error really lower than another's?

Both models forecast the same test windows, so their errors share the same noise: the question is
answered by the per-window difference of squared errors d = (y - f_A)^2 - (y - f_B)^2, not by two
separate intervals. Neighbouring windows overlap, so the 95% interval of mean(d) comes from a
block bootstrap with blocks of window + longest horizon windows (as in evaluate). A side given as
several runs (training seeds: A1,A2,A3) has its squared errors averaged per window first. A model
wins only where the interval excludes 0.

Reads RUN/forecasts/<model>.parquet, which `hfformer evaluate` writes (realised targets y_h{h} and
median forecasts f_h{h}_q50 on the test split); runs on different test windows are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from data_loaders.atomic import checked
from hfformer.bootstrap import percentile_interval, resampled_totals
from hfformer.config import PAPER_HORIZONS, read_run_config

SHOWN = (1, 5, 30)


def parse_side(text: str) -> list[tuple[Path, str]]:
    """"RUN[:model][,RUN[:model]...]" -> [(run, model)]; a run without :model must hold one trained model."""
    side = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        run, _, model = item.partition(":")
        if not model:
            trained = sorted(p.parent.name for p in Path(run).glob("*/checkpoint.pt"))
            if len(trained) != 1:
                raise ValueError(f"{run}: holds models {trained or 'none'}; name one as {run}:MODEL")
            model = trained[0]
        side.append((Path(run), model))
    if not side:
        raise ValueError("each side needs at least one RUN[:model]")
    return side


def squared_errors(side: list[tuple[Path, str]], horizons: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(ts of the test windows, (n, H) squared errors averaged over the side's runs)."""
    ts, total = None, None
    for run, model in side:
        path = run / "forecasts" / f"{model}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no test forecasts; run `hfformer evaluate {run} --data ...` first")
        frame = pl.read_parquet(checked(path))
        missing = [c for h in horizons for c in (f"y_h{h}", f"f_h{h}_q50") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} lacks columns {missing[:4]}")
        stamps = frame["ts"].to_numpy()
        if ts is None:
            ts = stamps
        elif not np.array_equal(ts, stamps):
            raise ValueError(f"{path}: other test windows than {side[0][0]}; compare runs on the same data and split")
        y = frame.select(f"y_h{h}" for h in horizons).to_numpy().astype(np.float64)
        f = frame.select(f"f_h{h}_q50" for h in horizons).to_numpy().astype(np.float64)
        errors = (y - f) ** 2
        total = errors if total is None else total + errors
    return ts, total / len(side)


def compare(side_a: str, side_b: str, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Paired block-bootstrap intervals of mean((y - f_A)^2 - (y - f_B)^2) per horizon and over all."""
    a, b = parse_side(side_a), parse_side(side_b)
    configs = [read_run_config(run).data for run, _ in a + b]
    horizons = configs[0].horizons
    if any(c.horizons != horizons for c in configs):
        raise ValueError("the runs forecast different horizons")
    ts_a, err_a = squared_errors(a, horizons)
    ts_b, err_b = squared_errors(b, horizons)
    if not np.array_equal(ts_a, ts_b):
        raise ValueError(f"{a[0][0]} and {b[0][0]} were evaluated on different test windows; "
                         "compare runs on the same data and split")
    diff = err_a - err_b
    block = configs[0].window + max(horizons)  # >= the longest horizon: overlapping windows share a block
    rows = []
    shown = sorted({h for h in (*SHOWN, *PAPER_HORIZONS) if h in horizons}) or horizons
    columns = {h: horizons.index(h) for h in shown}
    for label, pick in [*((str(h), [j]) for h, j in columns.items()), ("all", list(range(len(horizons))))]:
        d = diff[:, pick].mean(axis=1)
        boot = resampled_totals(d, block, n_boot, seed) / d.size
        lo, hi = percentile_interval(boot)
        verdict = "A better" if hi < 0 else "B better" if lo > 0 else "no difference"
        rows.append({"horizon": label, "mse_a": float(err_a[:, pick].mean()), "mse_b": float(err_b[:, pick].mean()),
                     "diff": float(d.mean()), "diff_lo": lo, "diff_hi": hi, "verdict": verdict})
    return {"a": [f"{run}:{model}" for run, model in a], "b": [f"{run}:{model}" for run, model in b],
            "windows": int(ts_a.size), "block_windows": block, "resamples": n_boot, "rows": rows}


def print_comparison(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"A = {', '.join(result['a'])}  vs  B = {', '.join(result['b'])}: "
                    f"{result['windows']:,} test windows, paired block bootstrap (blocks of "
                    f"{result['block_windows']} windows), 95% interval of MSE(A) - MSE(B)")
    for name in ("h", "MSE A", "MSE B", "A - B", "95% interval", "verdict"):
        t.add_column(name, justify="left" if name == "verdict" else "right")
    for r in result["rows"]:
        t.add_row(r["horizon"], f"{r['mse_a']:.4f}", f"{r['mse_b']:.4f}", f"{r['diff']:+.4f}",
                  f"[{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}]", r["verdict"])
    console.print(t)
