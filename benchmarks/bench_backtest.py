"""Backtest speed on a large synthetic forecast frame.

Run: PYTHONPATH=. python benchmarks/bench_backtest.py [--rows N] [--horizons H]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from hfformer.backtest import BacktestConfig, backtest_frame, backtest_models


def forecast_frame(rows: int, horizons: int, seed: int = 0) -> pl.DataFrame:
    """Random-walk prices and noisy quantile forecasts for horizons 1..H (the forecast contract)."""
    rng = np.random.default_rng(seed)
    price = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-5, rows)))
    columns = {
        "ts": pl.Series(np.arange(rows, dtype=np.int64) * 100_000_000).cast(
            pl.Datetime("ns", "UTC")
        ),
        "price": price,
        "bid_px_1": price - 0.05,
        "ask_px_1": price + 0.05,
        "bid_qty_1": np.ones(rows),
        "ask_qty_1": np.ones(rows),
    }
    for h in range(1, horizons + 1):
        median = rng.normal(0, 0.3, rows)
        columns.update(
            {
                f"y_h{h}": rng.normal(0, 1, rows),
                f"f_h{h}_q10": median - 1.0,
                f"f_h{h}_q50": median,
                f"f_h{h}_q90": median + 1.0,
            }
        )
    return pl.DataFrame(columns)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--horizons", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frame = forecast_frame(args.rows, args.horizons)
    print(
        f"frame: {frame.height:,} rows x {args.horizons} horizons x 3 quantiles, "
        f"{frame.estimated_size() / 2**20:,.0f} MiB"
    )
    cases = {
        "published rule, mid fills": BacktestConfig(),
        "touch fills, 50 ms latency, interval rule": BacktestConfig(
            fill="touch", latency_ms=50, require_interval=True
        ),
        "decide every tick": BacktestConfig(every=1),
    }
    for name, config in cases.items():
        seconds = best_of(args.repeats, lambda config=config: backtest_frame(frame, config))
        print(
            f"backtest_frame [{name}]: {seconds * 1e3:,.1f} ms "
            f"({frame.height / seconds / 1e6:,.1f} M rows/s)"
        )
    models = {m: frame for m in ("hfformer", "lstm", "naive")}
    seconds = best_of(args.repeats, lambda: backtest_models(models))
    print(f"backtest_models [3 models, shared checks]: {seconds * 1e3:,.1f} ms")


if __name__ == "__main__":
    main()
