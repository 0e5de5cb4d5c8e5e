"""Is the v2 (regime) market's predictable part out of a linear model's reach? R2 on the test rows.

For each market seed: generate M minutes (`ticks synth --market regime`), then on the test rows
(the last 15% in time) at horizon h (snapshots of 100 ms) print the R2 against the realised
log weighted-mid return of the oracle (E[r_h | hidden state]), of the ceiling (E[r_h | what the
book and trades show]) and of the best linear baseline: ridge on the per-level log imbalances
log(bid_qty_i / ask_qty_i) for levels 1..10, the spread, the last 10 mid and weighted-mid log
returns and the signed trade flow (count and volume) over the last 1, 5 and 20 snapshots, fitted on
the first 70% of rows with the penalty chosen on the next 15%. Targets (issue 16): R2(ceiling)
>= 1.3 x R2(linear) and R2(oracle) >= 1.5 x R2(linear) at h = 5 on 120 minutes.

    PYTHONPATH=. python benchmarks/bench_synth_v2.py [--minutes 120] [--seeds 0 1 2] [--horizons 1 5 30]
                                                     [--market regime] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from data_loaders.synth import generate

STEP_NS = 100_000_000
TRAIN, VALID = 0.70, 0.85  # row fractions: train below TRAIN, validation below VALID, then test
PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # ridge penalty per training row


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return 1.0 - float(np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def lagged(a: np.ndarray, k: int) -> np.ndarray:
    """a shifted k rows later (row t holds a[t - k]); NaN before the start."""
    out = np.full(a.shape[0], np.nan)
    out[k:] = a[: a.shape[0] - k]
    return out


def trailing_sum(a: np.ndarray, k: int) -> np.ndarray:
    """Row t: a[t - k] + ... + a[t - 1]."""
    c = np.concatenate([[0.0], np.cumsum(a)])
    out = np.full(a.shape[0], np.nan)
    out[k:] = c[k:-1] - c[: a.shape[0] - k]
    return out


def log_wmid(book: pl.DataFrame) -> np.ndarray:
    b = book
    num = b["ask_px_1"] * b["ask_qty_1"] + b["bid_px_1"] * b["bid_qty_1"]
    return np.log((num / (b["ask_qty_1"] + b["bid_qty_1"])).to_numpy())


def linear_features(book: pl.DataFrame, trades: pl.DataFrame, levels: int = 10) -> np.ndarray:
    """(rows, features) known at each book row: what a practitioner's linear model reads."""
    n = book.height
    imbalance = [np.log(book[f"bid_qty_{i}"] / book[f"ask_qty_{i}"]).to_numpy() for i in range(1, levels + 1)]
    spread = (book["ask_px_1"] - book["bid_px_1"]).to_numpy()
    mid = np.log(((book["ask_px_1"] + book["bid_px_1"]) / 2).to_numpy())
    returns = []
    for price in (mid, log_wmid(book)):
        step = np.concatenate([[np.nan], np.diff(price)])  # row t: price[t] - price[t-1]
        returns += [lagged(step, k) for k in range(10)]
    # Trades in step s (between rows s and s+1) are known from row s+1 on.
    step_of = ((trades["ts"].to_numpy() - book["ts"][0]) // STEP_NS).astype(np.int64)
    side = trades["side"].to_numpy().astype(np.float64)
    signed = [np.bincount(step_of, weights=w, minlength=n)[:n] for w in (side, side * trades["qty"].to_numpy())]
    flows = [trailing_sum(s, k) for s in signed for k in (1, 5, 20)]
    return np.column_stack([*imbalance, spread, *returns, *flows])


def ridge_fit(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised ridge with an unpenalised intercept: (mean, scale, coefficients incl. intercept)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-12
    z = np.column_stack([np.ones(x.shape[0]), (x - mean) / scale])
    reg = penalty * x.shape[0] * np.eye(z.shape[1])
    reg[0, 0] = 0.0
    return mean, scale, np.linalg.solve(z.T @ z + reg, z.T @ y)


def ridge_predict(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    mean, scale, coef = model
    return coef[0] + ((x - mean) / scale) @ coef[1:]


def linear_baseline(features: np.ndarray, y: np.ndarray, h: int) -> np.ndarray:
    """Forecasts for every row (NaN where features are missing): ridge fitted on the training rows
    (targets inside them), the penalty chosen by R2 on the validation rows."""
    n = y.shape[0]
    usable = ~np.isnan(features).any(axis=1) & ~np.isnan(y)
    idx = np.arange(n)
    train = usable & (idx < int(TRAIN * n) - h)
    valid = usable & (idx >= int(TRAIN * n)) & (idx < int(VALID * n) - h)
    best = max(PENALTIES, key=lambda pen: r2(y[valid], ridge_predict(ridge_fit(features[train], y[train], pen),
                                                                       features[valid])))
    out = np.full(n, np.nan)
    out[usable] = ridge_predict(ridge_fit(features[train], y[train], best), features[usable])
    return out


def scores(data: Path, horizons: list[int]) -> list[dict]:
    """Per horizon: R2 of oracle, ceiling (when present) and the linear baseline on the test rows."""
    book = pl.read_parquet(data / "book.parquet")
    trades = pl.read_parquet(data / "trades.parquet")
    oracle = pl.read_parquet(data / "oracle.parquet")
    logp, features = log_wmid(book), linear_features(book, trades)
    n = book.height
    rows = []
    for h in horizons:
        y = np.full(n, np.nan)
        y[: n - h] = logp[h:] - logp[: n - h]
        linear = linear_baseline(features, y, h)
        test = (np.arange(n) >= int(VALID * n)) & ~np.isnan(y) & ~np.isnan(linear)
        row = {"h": h, "test_rows": int(test.sum()), "linear": r2(y[test], linear[test])}
        for name in ("oracle", "ceiling"):
            if f"{name}_h{h}" in oracle.columns:
                row[name] = r2(y[test], oracle[f"{name}_h{h}"].to_numpy()[test])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 30])
    parser.add_argument("--market", default="regime")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_synth_v2_") as tmp:
        for seed in args.seeds:
            out = Path(tmp) / str(seed)
            summary = generate(out, args.minutes, seed, market=args.market)
            for row in scores(out, args.horizons):
                row = {"seed": seed, "gen_seconds": round(summary["seconds"], 1), **row}
                if "ceiling" in row:
                    row["ceiling/linear"] = row["ceiling"] / row["linear"]
                row["oracle/linear"] = row["oracle"] / row["linear"]
                results.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
                if not args.json:
                    print(results[-1], flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
