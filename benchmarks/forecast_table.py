"""The forecasting table over market seeds and training seeds, from the runs benchmarks/forecast_table.sh wrote.

Per model and horizon (1, 5, 30, those the runs forecast): R2, the fraction of the oracle's bar (oracle_frac) and of the
ceiling's (ceiling_frac), each as the mean over market seeds and training seeds and the range of
the runs' own 95% block-bootstrap intervals, and the spread of ceiling_frac between training
seeds. Then the paired comparisons, market seed by market seed, with `hfformer compare`'s interval
of MSE(A) - MSE(B), each side's training seeds averaged per window: HFformer against every other
model, and the LSTM against the per-level linear model.
Usage: python benchmarks/forecast_table.py OUT_DIR   (runs in OUT_DIR/seed<k>/<model>/t<training seed>/)
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hfformer.compare import compare

HORIZONS = (1, 5, 30)
METRICS = ("r2", "oracle_frac", "ceiling_frac")
ORDER = ("hfformer", "lstm", "lightgbm", "linear", "naive", "zero", "ceiling", "oracle")
REFERENCES = ("zero", "ceiling", "oracle")  # in every run's evaluation: kept once per market seed


def runs(seed_dir: Path, model: str) -> list[Path]:
    """The evaluated runs of a model on one market (one per training seed)."""
    return sorted(r for r in (seed_dir / model).glob("t*") if (r / "evaluation.csv").exists())


def collect(out: Path) -> pl.DataFrame:
    """One row per (market seed, run, model, horizon); zero, ceiling and oracle once per market seed."""
    frames = []
    for seed_dir in sorted(out.glob("seed*")):
        seen: set[str] = set()
        for evaluation in sorted(seed_dir.glob("*/t*/evaluation.csv")):
            table = pl.read_csv(evaluation).filter(~pl.col("model").is_in(list(seen & set(REFERENCES))))
            seen |= set(table["model"])
            frames.append(table.with_columns(seed=pl.lit(seed_dir.name), run=pl.lit(evaluation.parent.name)))
    if not frames:
        raise SystemExit(f"{out}: no seed*/<model>/t*/evaluation.csv (run benchmarks/forecast_table.sh first)")
    return pl.concat(frames, how="diagonal_relaxed").filter(pl.col("horizon").is_in(HORIZONS))


def main(out: Path) -> None:
    rows = collect(out)
    seeds = rows["seed"].n_unique()
    horizons = [h for h in HORIZONS if h in set(rows["horizon"])]
    table = Table(title=escape(f"regime market (v2), test split, {seeds} market seeds: mean over market and training "
                               "seeds [lowest, highest bound of the runs' 95% block-bootstrap intervals]; runs = "
                               "market seeds x training seeds; sd = ceiling_frac's standard deviation between "
                               "training seeds, mean over market seeds"))
    table.add_column("model")
    table.add_column("h", justify="right")
    table.add_column("runs", justify="right")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    table.add_column("sd", justify="right")
    models = [m for m in ORDER if m in set(rows["model"])]
    for model in models:
        for h in horizons:
            part = rows.filter((pl.col("model") == model) & (pl.col("horizon") == h))
            cells = []
            for metric in METRICS:
                if metric not in part.columns or part[metric].is_null().all():
                    cells.append("")
                    continue
                cells.append(f"{part[metric].mean():.3f} [{part[f'{metric}_lo'].min():.3f}, "
                             f"{part[f'{metric}_hi'].max():.3f}]")
            sd = (part.group_by("seed").agg(pl.col("ceiling_frac").std())["ceiling_frac"].mean()
                  if "ceiling_frac" in part.columns and part.height > seeds else None)
            table.add_row(model, str(h), str(part.height), *cells, "" if sd is None else f"{sd:.3f}")
    console = Console(width=200)
    console.print(table)
    others = [m for m in models if m != "hfformer"]
    pairs = [("hfformer", m) for m in others] + [("lstm", "linear")] * ("lstm" in models and "linear" in models)
    console.print(paired_table(out, pairs, horizons))


def side(seed_dir: Path, model: str) -> str:
    """`hfformer compare`'s side for a model on one market: its runs (training seeds), comma-separated;
    zero, ceiling and oracle are read from HFformer's first run, which holds their forecasts too."""
    if model in REFERENCES:
        return f"{runs(seed_dir, 'hfformer')[0]}:{model}"
    return ",".join(f"{run}:{model}" for run in runs(seed_dir, model))


def paired_table(out: Path, pairs: list[tuple[str, str]], horizons: list[int]) -> Table:
    """Per market seed: the paired 95% interval of MSE(A) - MSE(B), each side's training seeds averaged per window."""
    table = Table(title="A - B, paired: MSE difference [95% block-bootstrap interval] and verdict; "
                        "n = training seeds (runs) per side")
    for name in ("A", "B", "seed", "n"):
        table.add_column(name)
    for h in horizons:
        table.add_column(f"h={h}", justify="right")
    for a, b in pairs:
        for seed_dir in sorted(out.glob("seed*")):
            if not runs(seed_dir, "hfformer") or not all(m in REFERENCES or runs(seed_dir, m) for m in (a, b)):
                continue
            side_a, side_b = side(seed_dir, a), side(seed_dir, b)
            rows = {r["horizon"]: r for r in compare(side_a, side_b)["rows"]}
            table.add_row(a, b, seed_dir.name, f"{side_a.count(',') + 1}/{side_b.count(',') + 1}", *(
                f"{rows[str(h)]['diff']:+.3f} [{rows[str(h)]['diff_lo']:+.3f}, {rows[str(h)]['diff_hi']:+.3f}] "
                f"{rows[str(h)]['verdict']}" for h in horizons))
    return table


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/forecast_table"))
