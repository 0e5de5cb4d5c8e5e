"""Speed, peak memory and oracle quality of the synthetic markets (`ticks synth --market M`).

Each (market, minutes, chunk_rows) case runs in a fresh process, so its peak resident memory is its
own. Then, per market, the oracle's R^2 (and the ceiling's, for the regime market) against the
realised log weighted-mid return is measured per horizon on the largest case, and a linear fit on
observable book features (levels 2..10 log size imbalance, lagged returns) trained on the first
half shows how much of the oracle is learnable that way (benchmarks/bench_synth_v2.py has the
practitioner's baseline for the regime market).

    PYTHONPATH=. python benchmarks/bench_synth.py [--markets regime linear] [--minutes 60 1440]
                                                  [--chunk-rows 1000000 250000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from data_loaders.synth import generate

R2_HORIZONS = (1, 2, 3, 5, 10, 20, 30)


def run_one(out: Path, market: str, minutes: float, chunk_rows: int) -> dict:
    summary = generate(out, minutes, seed=2024, chunk_rows=chunk_rows, market=market)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024  # Linux: kB
    return {
        "market": market,
        "minutes": minutes,
        "chunk_rows": chunk_rows,
        "peak_rss_mb": round(peak_mb, 1),
        "seconds": round(summary["seconds"], 2),
        "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),  # imports included
        "book_rows_per_s": round(summary["book_rows_per_s"]),
        "rows_per_s": round(summary["rows_per_s"]),
        "rows": summary["rows"],
        "mb_on_disk": round(summary["bytes"] / 1e6, 1),
    }


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return 1.0 - float(np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def lagged(a: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(a, np.nan)
    out[k:] = a[: a.shape[0] - k]
    return out


def oracle_quality(out: Path) -> list[dict]:
    """Oracle (and ceiling) R^2 per horizon, and a linear book-feature forecast's R^2 on the second half."""
    book = pl.read_parquet(out / "book.parquet")
    oracle = pl.read_parquet(out / "oracle.parquet")
    wmid = (book["ask_px_1"] * book["ask_qty_1"] + book["bid_px_1"] * book["bid_qty_1"]) / (
        book["ask_qty_1"] + book["bid_qty_1"]
    )
    logp = np.log(wmid.to_numpy())
    n = logp.shape[0]
    imbalance = np.column_stack(
        [np.log(book[f"bid_qty_{i}"] / book[f"ask_qty_{i}"]).to_numpy() for i in range(2, 11)]
    )
    returns = np.concatenate([[np.nan], np.diff(logp)])
    features = np.column_stack(
        [imbalance, np.ones(n)]
        + [lagged(imbalance.mean(axis=1), k) for k in range(1, 6)]
        + [lagged(returns, k) for k in range(10)]
    )
    rows = []
    for h in R2_HORIZONS:
        realised = np.full(n, np.nan)
        realised[: n - h] = logp[h:] - logp[: n - h]
        usable = ~np.isnan(realised) & ~np.isnan(features).any(axis=1)
        train, test = usable.copy(), usable.copy()
        train[n // 2 :], test[: n // 2] = False, False
        coef, *_ = np.linalg.lstsq(features[train], realised[train], rcond=None)
        forecast = oracle[f"oracle_h{h}"].to_numpy()
        oracle_test = r2(realised[test], forecast[test])
        linear_test = r2(realised[test], (features @ coef)[test])
        row = {
            "h": h,
            "oracle_r2": round(r2(realised[usable], forecast[usable]), 4),
            "oracle_r2_test_half": round(oracle_test, 4),
            "linear_book_r2_test_half": round(linear_test, 4),
            "linear_fraction_of_oracle": round(linear_test / oracle_test, 3),
        }
        if f"ceiling_h{h}" in oracle.columns:
            row["ceiling_r2_test_half"] = round(r2(realised[test], oracle[f"ceiling_h{h}"].to_numpy()[test]), 4)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markets", nargs="+", default=["regime", "linear"])
    parser.add_argument("--minutes", type=float, nargs="+", default=[60, 1440])
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[1_000_000, 250_000])
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--one", nargs=4, metavar=("OUT", "MARKET", "MINUTES", "CHUNK_ROWS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        out, market, minutes, chunk_rows = args.one
        print(json.dumps(run_one(Path(out), market, float(minutes), int(chunk_rows))))
        return
    cases, quality = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        for market in args.markets:
            generate(Path(tmp) / "warm", 0.1, seed=0, market=market)  # compile numba kernels into the cache
            for minutes in args.minutes:
                for chunk_rows in args.chunk_rows:
                    out = Path(tmp) / f"{market}_{minutes}_{chunk_rows}"
                    cmd = [sys.executable, __file__, "--one", str(out), market, str(minutes), str(chunk_rows)]
                    cases.append(
                        json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                    )
                    if not args.json:
                        print(cases[-1], flush=True)
            quality[market] = oracle_quality(out)
    if args.json:
        print(json.dumps({"cases": cases, "oracle_quality": quality}))
    else:
        for market, rows in quality.items():
            print(f"oracle quality of the {market} market on {args.minutes[-1]} minutes:")
            for row in rows:
                print(row)


if __name__ == "__main__":
    main()
