"""Block bootstrap over a time series of additive statistics (neighbouring samples are correlated,
so whole blocks of consecutive ones are resampled): evaluate's metric intervals, the backtest's PnL."""

from __future__ import annotations

import numpy as np


def block_sums(stats: np.ndarray, block: int) -> np.ndarray:
    """(n_blocks, ...) sums over consecutive blocks of `block` samples (the last may be shorter)."""
    return np.add.reduceat(stats, np.arange(0, stats.shape[0], block), axis=0)


def bootstrap_counts(n_blocks: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_blocks): how often each block is drawn in each resample (with replacement)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks))
    counts = np.zeros((n_boot, n_blocks))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1)
    return counts


def resampled_totals(samples: np.ndarray, block: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, ...) totals of `samples` (n, ...) over resamples of blocks of `block` samples."""
    sums = block_sums(samples.astype(np.float64), block)
    return np.tensordot(bootstrap_counts(sums.shape[0], n_boot, seed), sums, axes=1)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of the finite `values` (nan, nan when there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)
