"""Validation-split scores of trained runs, for choosing settings without reading the test split.

Per run and model: R2 and ceiling_frac (and oracle_frac) at each shown horizon, on the validation
windows (all of them, not train.max_val_windows), with the definitions of `hfformer evaluate`
(hfformer/evaluate.py), which scores only the test split. Nothing here reads or records the test
split; the runs' own validation loss (history.csv) is a pinball loss for the neural models and an
MSE for the tabular ones, so it cannot rank them against each other.
Usage: python benchmarks/val_scores.py --data DATA RUN[:model] [RUN[:model] ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hfformer.compare import parse_side
from hfformer.config import read_run_config
from hfformer.data import Prepared, prepare
from hfformer.evaluate import metrics_from_sums, oracle_frac_from_sums, oracle_stats, sample_stats
from hfformer.predict import Forecaster

SHOWN = (1, 5, 30)


def val_scores(prep: Prepared, run: Path, model: str) -> dict[str, dict[int, float]]:
    """{metric: {h: value}} of one model on prep's validation windows."""
    ends = prep.ends["val"]
    f = Forecaster(run, model)
    fc = f.forecast(prep, ends)
    scores = {"r2": metrics_from_sums(sample_stats(prep.y[ends], fc, f.quantiles).sum(axis=0))["r2"]}
    for reference in ("ceiling", "oracle"):
        known = getattr(prep, reference)
        if known is not None:
            scores[f"{reference}_frac"] = oracle_frac_from_sums(oracle_stats(fc, f.quantiles, known[ends]).sum(axis=0))
    horizons = prep.cfg.horizons
    return {m: {h: float(v[horizons.index(h)]) for h in SHOWN if h in horizons} for m, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("runs", nargs="+", help="RUN or RUN:model")
    args = parser.parse_args()
    prepared: dict[str, Prepared] = {}  # one preparation per data config
    print("run:model\tval_windows\t" + "\t".join(f"{m}_h{h}" for m in ("r2", "ceiling_frac") for h in SHOWN))
    for run, model in (pair for item in args.runs for pair in parse_side(item)):
        cfg = read_run_config(run).data
        key = repr(cfg)
        if key not in prepared:
            prepared[key] = prepare(args.data, cfg)
        scores = val_scores(prepared[key], run, model)
        cells = [f"{scores[m].get(h, np.nan):.3f}" for m in ("r2", "ceiling_frac") for h in SHOWN]
        print(f"{run}:{model}\t{prepared[key].ends['val'].size}\t" + "\t".join(cells), flush=True)


if __name__ == "__main__":
    main()
