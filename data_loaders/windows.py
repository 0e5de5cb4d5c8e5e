"""Lazy training windows over a feature matrix, and a leak-free time-ordered split.

A window is rows end-window+1 .. end of x, z-scored per feature within the window as the HFformer
paper does; its label is the target row y[end]. Windows are slices (views) of x: only the batch
being served is ever copied, so 10 million snapshots cost x itself and nothing per window.
numpy only: the models' side makes tensors of the batches (hfformer/loader.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ZSCORE_EPS = 0.01


def zscore_windows(w: np.ndarray, eps: float = ZSCORE_EPS, mask: np.ndarray | None = None) -> np.ndarray:
    """float32 (..., T, F): (w - mean) / (std + eps) per feature over the T axis.

    Population std (ddof=0); mean and std are computed in float64, so the result does not depend
    on how the float32 inputs are offset. mask: bool (F,), z-score only those features and pass
    the others through (columns already scaled by train statistics, features.TrainScaling).
    """
    w64 = w.astype(np.float64)
    d = w64 - w64.mean(axis=-2, keepdims=True)
    std = np.sqrt(np.mean(d * d, axis=-2, keepdims=True))
    z = d / (std + eps)
    if mask is not None:
        z = np.where(mask, z, w64)
    return z.astype(np.float32)


class Windows:
    """Item i: (z-scored window (T, F) float32, y[ends[i]] (H,) float32), T = window.

    x: (N, F) float32 features (zscore: bool (F,), the features the window z-score applies to;
    None: all); y: (N, H) float32 targets; ends: the last row of each window
    (e.g. from valid_window_ends / time_split); scale: what the rows of a window become before the
    z-score (features.TrainScaling.inputs), applied to each batch so x is never copied whole.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, ends: np.ndarray, window: int = 100,
                 zscore: np.ndarray | None = None, scale: Callable[[np.ndarray], np.ndarray] | None = None):
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x (N, F) and y (N, H) must share N, got {x.shape} and {y.shape}")
        ends = np.asarray(ends, dtype=np.int64)
        if ends.size and (ends.min() < window - 1 or ends.max() >= x.shape[0]):
            raise ValueError(f"window ends must lie in [{window - 1}, {x.shape[0] - 1}]")
        for part in np.array_split(ends, max(1, ends.size // 1_000_000)):  # bounded memory
            if not np.isfinite(y[part]).all():
                raise ValueError(
                    "some window ends have NaN targets; take ends from valid_window_ends"
                )
        if zscore is not None and np.shape(zscore) != (x.shape[1],):
            raise ValueError(f"zscore must be a bool mask of the {x.shape[1]} features, got {np.shape(zscore)}")
        self.x, self.y, self.ends, self.window, self.scale = x, y, ends, window, scale
        self.zscore = None if zscore is None or np.all(zscore) else np.asarray(zscore, dtype=bool)
        self._offsets = np.arange(1 - window, 1, dtype=np.int64)  # (T,)

    def __len__(self) -> int:
        return self.ends.size

    def window_view(self, i: int) -> np.ndarray:
        """The window of item i, (T, F), before the z-score: a view into x where nothing scales it."""
        end = int(self.ends[i])
        rows = self.x[end - self.window + 1 : end + 1]
        return rows if self.scale is None else self.scale(rows)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item i: its z-scored window (T, F) and a copy of its target row (H,), never aliasing y."""
        return zscore_windows(self.window_view(i), mask=self.zscore), self.y[self.ends[i]].copy()

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised batch: xb (B, T, F) float32 z-scored, yb (B, H) float32."""
        ends = self.ends[np.asarray(indices, dtype=np.int64)]  # (B,)
        rows = self.x[ends[:, None] + self._offsets]  # (B, T, F)
        return zscore_windows(rows if self.scale is None else self.scale(rows), mask=self.zscore), self.y[ends]


def valid_window_ends(valid: np.ndarray, window: int, max_h: int) -> np.ndarray:
    """int64 ends t (ascending) whose rows t-window+1 .. t+max_h all exist and are valid:
    the whole input window and every target row up to the largest horizon."""
    n = valid.shape[0]
    if n < window + max_h:
        return np.empty(0, dtype=np.int64)
    bad = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(~valid, out=bad[1:])  # bad[k] = invalid rows among 0..k-1
    # For t = window-1 .. n-max_h-1: bad[t + max_h + 1] == bad[t - window + 1] (slices: views).
    ok = bad[window + max_h :] == bad[: n - max_h - window + 1]
    return np.flatnonzero(ok) + (window - 1)


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def time_split(
    ends: np.ndarray,
    n_rows: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    *,
    gap: int,
) -> Split:
    """Split window ends by time: train rows first, then validation, then test.

    The rows are cut at n_rows*f0 and n_rows*(f0+f1); each part drops its ends within `gap` rows
    before the next cut. Guarantee: any end of a later part exceeds any end of an earlier part by
    more than `gap`. With gap >= max_h no target row of an earlier part reaches a later part's
    window end (so none of a later part's targets is ever seen earlier); with
    gap >= max_h + window - 1 the parts' rows (inputs and targets) are entirely disjoint.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    ends = np.asarray(ends, dtype=np.int64)
    cut1 = int(n_rows * fractions[0])
    cut2 = int(n_rows * (fractions[0] + fractions[1]))
    return Split(
        train=ends[ends < cut1 - gap],
        val=ends[(ends >= cut1) & (ends < cut2 - gap)],
        test=ends[ends >= cut2],
    )
