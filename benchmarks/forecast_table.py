"""The forecasting table over market seeds, from the runs benchmarks/forecast_table.sh wrote.

Per model and horizon (1, 5, 30): R2, the fraction of the oracle's bar (oracle_frac) and of the
ceiling's (ceiling_frac), each as the mean over market seeds and the range of the seeds' own 95%
block-bootstrap intervals. Then HFformer against every other model, seed by seed, with
`hfformer compare`'s paired interval of MSE(HFformer) - MSE(other).
Usage: python benchmarks/forecast_table.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from hfformer.compare import compare

HORIZONS = (1, 5, 30)
METRICS = ("r2", "oracle_frac", "ceiling_frac")
ORDER = ("hfformer", "lstm", "lightgbm", "linear", "naive", "zero", "ceiling", "oracle")


def collect(out: Path) -> pl.DataFrame:
    """Every seed's evaluation rows, one per (seed, model, horizon); zero, ceiling and oracle once per seed."""
    frames = []
    for seed_dir in sorted(out.glob("seed*")):
        seen: set[str] = set()
        for evaluation in sorted(seed_dir.glob("*/evaluation.csv")):
            table = pl.read_csv(evaluation).filter(~pl.col("model").is_in(list(seen)))
            seen |= set(table["model"])
            frames.append(table.with_columns(seed=pl.lit(seed_dir.name)))
    if not frames:
        raise SystemExit(f"{out}: no seed*/<model>/evaluation.csv (run benchmarks/forecast_table.sh first)")
    return pl.concat(frames, how="diagonal_relaxed").filter(pl.col("horizon").is_in(HORIZONS))


def main(out: Path) -> None:
    rows = collect(out)
    seeds = rows["seed"].n_unique()
    table = Table(title=f"regime market (v2), test split, {seeds} market seeds: mean over seeds "
                        "[lowest, highest bound of the seeds' 95% block-bootstrap intervals]")
    table.add_column("model")
    table.add_column("h", justify="right")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    models = [m for m in ORDER if m in set(rows["model"])]
    for model in models:
        for h in HORIZONS:
            part = rows.filter((pl.col("model") == model) & (pl.col("horizon") == h))
            cells = []
            for metric in METRICS:
                if metric not in part.columns or part[metric].is_null().all():
                    cells.append("")
                    continue
                cells.append(f"{part[metric].mean():.3f} [{part[f'{metric}_lo'].min():.3f}, "
                             f"{part[f'{metric}_hi'].max():.3f}]")
            table.add_row(model, str(h), *cells)
    console = Console(width=160)
    console.print(table)
    console.print(paired_table(out, [m for m in models if m != "hfformer"]))


def paired_table(out: Path, others: list[str]) -> Table:
    """HFformer vs each model, per market seed: the paired 95% interval of MSE(HFformer) - MSE(other)."""
    table = Table(title="HFformer - other model, paired: MSE difference [95% block-bootstrap interval] and verdict "
                        "(A = HFformer)")
    table.add_column("other")
    table.add_column("seed")
    for h in HORIZONS:
        table.add_column(f"h={h}", justify="right")
    for other in others:
        for seed_dir in sorted(out.glob("seed*")):
            if not (seed_dir / "hfformer" / "forecasts" / "hfformer.parquet").exists():
                continue
            # zero, ceiling and oracle are in every run's forecasts
            run = seed_dir / (other if (seed_dir / other).is_dir() else "hfformer")
            rows = {r["horizon"]: r for r in compare(f"{seed_dir / 'hfformer'}:hfformer", f"{run}:{other}")["rows"]}
            table.add_row(other, seed_dir.name, *(
                f"{rows[str(h)]['diff']:+.3f} [{rows[str(h)]['diff_lo']:+.3f}, {rows[str(h)]['diff_hi']:+.3f}] "
                f"{rows[str(h)]['verdict']}" for h in HORIZONS))
    return table


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/forecast_table"))
