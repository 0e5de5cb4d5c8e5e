"""What a linear model makes of exactly the windows the neural models see, on the validation split.

The ridge (hfformer.baselines.Ridge) is fitted on the flattened training windows (window x features,
as the LSTM and HFformer receive them: window z-score, data.size_norm, data.return_norm) for each
penalty of a grid and scored on the validation windows: ceiling_frac at h = 1, 5, 30, as
benchmarks/val_scores.py. It separates "the inputs lack the signal" (the ridge is low too) from
"the networks do not learn what the inputs hold" (the ridge is high). The test split is not read.
Usage: python benchmarks/window_ridge.py --data DATA --config TOML [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hfformer.baselines import Ridge
from hfformer.config import load_config
from hfformer.data import prepare
from hfformer.evaluate import oracle_frac_from_sums, oracle_stats

ALPHAS = (1.0, 1e2, 1e3, 1e4, 1e5)
SHOWN = (1, 5, 30)


def flat_windows(prep, part: str) -> tuple[np.ndarray, np.ndarray]:
    """((n, window * F) float64 inputs, (n, H) targets) of a part's windows."""
    ds = prep.dataset(part)
    x, y = ds.batch(np.arange(len(ds)))
    return x.reshape(x.shape[0], -1).astype(np.float64), y.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(args.config, args.sets)
    prep = prepare(args.data, cfg.data)
    X, Y = flat_windows(prep, "train")
    Xv, _ = flat_windows(prep, "val")
    ceiling = prep.ceiling[prep.ends["val"]]
    cols = [cfg.data.horizons.index(h) for h in SHOWN]
    print(f"inputs {X.shape[1]} ({cfg.data.window} x {X.shape[1] // cfg.data.window}), "
          f"train {X.shape[0]}, val {Xv.shape[0]}; ceiling_frac at h = {SHOWN}")
    for alpha in ALPHAS:
        f = Ridge.fit(X, Y, alpha).predict(Xv)[:, :, None]
        frac = oracle_frac_from_sums(oracle_stats(f, [0.5], ceiling).sum(axis=0))
        print(f"alpha {alpha:g}: " + " / ".join(f"{frac[c]:.3f}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
