"""Peak memory and batch throughput of hfformer's data path over a 10-million-snapshot book.

    PYTHONPATH=. python benchmarks/bench_windows_memory.py [--rows N] [--book PATH] [--batches B]

A child process writes a synthetic 10-level book (BTC-like prices on a 0.01 tick) to Parquet in
row groups, so its memory is not this process's. This process then runs what train, evaluate and
backtest run: hfformer.data.prepare (the book read a chunk at a time, features, the paper's 30
targets, the split, train scaling) and shuffled training batches, printing peak resident memory
(getrusage ru_maxrss) after each step.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from data_loaders.schema import book_schema
from hfformer.config import load_config
from hfformer.data import prepare
from hfformer.loader import make_loader

LEVELS = 10
GROUP = 262_144


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def write_book(path: Path, rows: int, seed: int = 0) -> None:
    """Synthetic book in the contract, one row group at a time (never the whole book in memory)."""
    rng = np.random.default_rng(seed)
    schema = pl.DataFrame(schema=book_schema(LEVELS)).to_arrow().schema
    tick, last = 0.01, 6_000_000  # price in ticks
    with pq.ParquetWriter(path, schema, compression="lz4") as w:
        for start in range(0, rows, GROUP):
            n = min(GROUP, rows - start)
            bid = last + np.cumsum(rng.integers(-1, 2, n))
            last = int(bid[-1])
            cols: dict[str, np.ndarray] = {
                "ts": (start + np.arange(n, dtype=np.int64)) * 100_000_000,
                "local_ts": (start + np.arange(n, dtype=np.int64)) * 100_000_000 + 5_000_000,
                "update_id": start + np.arange(n, dtype=np.int64),
                "in_sync": rng.random(n) > 1e-4,
            }
            bid_gap = np.cumsum(rng.integers(1, 4, (n, LEVELS)), axis=1) - 1
            ask_gap = np.cumsum(rng.integers(1, 4, (n, LEVELS)), axis=1)
            for side, px in (("bid", bid[:, None] - bid_gap), ("ask", bid[:, None] + ask_gap)):
                for i in range(LEVELS):
                    cols[f"{side}_px_{i + 1}"] = px[:, i] * tick
                for i in range(LEVELS):
                    cols[f"{side}_qty_{i + 1}"] = np.round(rng.lognormal(-1, 1.2, n), 5)
            w.write_table(pa.table({c: cols[c] for c in schema.names}, schema=schema))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--book", type=Path, help="existing book Parquet to reuse (written if absent)")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--size-norm", default="train", choices=["window", "train"],
                    help="train: sizes scaled by training statistics, per batch (tuned.toml's choice)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.book or Path(tmp) / "book.parquet"
        if not path.exists():
            t = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(
                target=write_book, args=(path, args.rows)
            )
            child.start()
            child.join()
            if child.exitcode:
                raise SystemExit(f"writing the synthetic book failed (exit {child.exitcode})")
            print(
                f"wrote {args.rows:,} rows to {path} ({path.stat().st_size / 2**30:.2f} GiB) "
                f"in {time.perf_counter() - t:.1f} s"
            )
        print(f"start: peak RSS {peak_gib():.2f} GiB")

        cfg = load_config(None, [f"data.window={args.window}", f"data.size_norm={args.size_norm}"]).data
        t = time.perf_counter()
        prep = prepare(path, cfg)  # what train, evaluate and backtest run: the book read a chunk at a time
        n, f = prep.features.x.shape
        print(
            f"prepare: x {prep.features.x.shape} float32 {prep.features.x.nbytes / 2**30:.2f} GiB, "
            f"y {prep.y.shape} {prep.y.nbytes / 2**30:.2f} GiB, {n / (time.perf_counter() - t):,.0f} rows/s; "
            f"peak RSS {peak_gib():.2f} GiB\n  report {prep.features.report}\n"
            f"  train/val/test {prep.ends['train'].size:,}/{prep.ends['val'].size:,}/{prep.ends['test'].size:,} windows"
        )

        loader = make_loader(prep.dataset("train"), batch_size=args.batch_size, shuffle=True, seed=0)
        t = time.perf_counter()
        windows = 0
        for b, (xb, yb) in enumerate(loader):
            assert xb.shape == (len(yb), args.window, f) and torch.isfinite(xb).all()
            windows += len(yb)
            if b + 1 == args.batches:
                break
        dt = time.perf_counter() - t
        print(
            f"batches: {args.batches} x {args.batch_size} shuffled windows in {dt:.2f} s = "
            f"{windows / dt:,.0f} windows/s; peak RSS {peak_gib():.2f} GiB"
        )
    print(f"PEAK RSS {peak_gib():.2f} GiB ({n:,} snapshots x {f} features, target < 4 GiB)")


if __name__ == "__main__":
    main()
