"""Forecasts of a trained run: the frames evaluate and backtest read, and `hfformer predict`.

Forecast frame columns: ts, price (target price p_t), bid_px_1, ask_px_1, ask_qty_1, bid_qty_1,
y_h{h} (realised scaled target), f_h{h}_q{10|50|90} (scaled-target units; point models give q50).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch

from data_loaders.atomic import atomic_output
from data_loaders.windows import valid_window_ends
from hfformer.baselines import ridge_design
from hfformer.checkpoint import TABULAR, Trained, load_trained
from hfformer.config import Config, read_run_config
from hfformer.data import BOOK_COLUMNS, Data, Prepared, data_label, prepare
from hfformer.lean import FastHFformer
from hfformer.loader import WindowDataset
from hfformer.model import HFformer
from hfformer.protocol import holds_test_split, record_test_read

POINT_MODELS = ("zero", "oracle", "ceiling")  # need no checkpoint
BATCH = 1024
FAST_CHUNK = 65_536  # windows per call of the numba kernel


class Forecaster:
    """A trained model of a run (or zero/oracle/ceiling) that maps window ends to (n, H, Q) forecasts."""

    def __init__(self, run_dir: Path, name: str, lean: bool = False):
        """lean: forecast an HFformer with the numba kernel (lean.FastHFformer; agrees with the
        PyTorch forward to ~1e-6, several times faster on CPU) instead of PyTorch."""
        t = Trained(name, name, read_run_config(run_dir)) if name in POINT_MODELS else load_trained(run_dir, name)
        self.name, self.kind, self.cfg, self.quantiles = name, t.kind, t.cfg, t.quantiles
        self.feature_names, self.model, self.ridge, self.scaling = t.feature_names, t.model, t.ridge, t.scaling
        self.tabular = t.tabular
        self.fast = FastHFformer(t.model) if lean and isinstance(t.model, HFformer) else None

    def check_features(self, prep: Prepared) -> None:
        if self.feature_names is not None and self.feature_names != prep.features.names:
            raise ValueError(f"{self.name}: trained on features {self.feature_names}, data gives "
                             f"{prep.features.names}")

    def forecast(self, prep: Prepared, ends: np.ndarray) -> np.ndarray:
        """(n, H, Q) float32 forecasts for windows ending at `ends`."""
        H = len(prep.cfg.horizons)
        self.check_features(prep)
        if self.kind == "zero":
            return np.zeros((ends.size, H, 1), dtype=np.float32)
        if self.kind in ("oracle", "ceiling"):
            known = getattr(prep, self.kind)
            if known is None:
                raise ValueError(f"the {self.kind} needs synthetic data (a directory with oracle.parquet"
                                 + (", from the regime market)" if self.kind == "ceiling" else ")"))
            return known[ends][:, :, None]
        if self.kind == "naive":
            X = ridge_design(prep.features, ends, self.cfg.ridge.lags)
            return self.ridge.predict(X).astype(np.float32)[:, :, None]
        if self.kind in TABULAR:
            return self.tabular.forecast(prep, ends).astype(np.float32)[:, :, None]
        # With train scaling, the training run's statistics, whatever data `prep` was fitted on.
        x, window = prep.features.x, prep.cfg.window
        zscore, scale = (None, None) if self.scaling is None else (self.scaling.zscore_mask(), self.scaling.inputs)
        out = np.empty((ends.size, H, len(self.quantiles)), dtype=np.float32)
        if self.fast is not None:  # the kernel takes rows: a chunk of windows' rows at a time, scaled
            for i in range(0, ends.size, FAST_CHUNK):
                chunk = ends[i : i + FAST_CHUNK]
                lo, hi = int(chunk.min()) - window + 1, int(chunk.max()) + 1
                rows = x[lo:hi] if scale is None else scale(x[lo:hi])
                out[i : i + FAST_CHUNK] = self.fast.forecast_ends(rows, chunk - lo, zscore=zscore)
            return out
        ds = WindowDataset(x, np.empty((x.shape[0], 0), np.float32), ends, window, zscore, scale)
        with torch.inference_mode():
            for i in range(0, ends.size, BATCH):
                xb, _ = ds.get_batch(np.arange(i, min(i + BATCH, ends.size)))
                out[i : i + BATCH] = self.model(xb).numpy()
        return out


def quantile_tag(q: float) -> str:
    return f"q{round(q * 100):02d}"


def frame(prep: Prepared, ends: np.ndarray, forecasts: np.ndarray, qs: list[float],
          with_targets: bool = True) -> pl.DataFrame:
    """The forecast frame (see module doc) of windows ending at `ends`."""
    horizons = prep.cfg.horizons
    cols: dict[str, Any] = {"price": prep.features.price[ends]}
    if with_targets:
        cols.update({f"y_h{h}": prep.y[ends, j] for j, h in enumerate(horizons)})
    for j, h in enumerate(horizons):
        for k, q in enumerate(qs):
            cols[f"f_h{h}_{quantile_tag(q)}"] = forecasts[:, j, k]
    book = prep.book.select("ts", *BOOK_COLUMNS)[ends]
    rest = [c for c in cols if c != "price"]
    return pl.concat([book, pl.DataFrame(cols)], how="horizontal").select(
        "ts", "price", "bid_px_1", "ask_px_1", "ask_qty_1", "bid_qty_1", *rest)


def forecast_frame(run_dir: Path, model: str, data: Data, split: str = "test",
                   prep: Prepared | None = None) -> pl.DataFrame:
    """Forecasts of `model` (a trained model of RUN, or zero/oracle) on a split of `data` (`prep`:
    the data already prepared with the run's config)."""
    prep = prep if prep is not None else prepare(data, read_run_config(run_dir).data)
    if split not in prep.ends:
        raise ValueError(f"split must be one of {sorted(prep.ends)}, got {split!r}")
    f = Forecaster(run_dir, model)
    ends = prep.ends[split]
    return frame(prep, ends, f.forecast(prep, ends), f.quantiles)


def predict(run_dir: Path, data: Data, out: Path, model: str = "hfformer",
            chunk: int = 65_536, again: bool = False) -> dict[str, Any]:
    """Forecast every window of `data` whose inputs are valid (targets may lie beyond the end),
    writing the frame without targets chunk by chunk, in time order. On the data the run was trained on,
    that includes its test windows: a read of the test split, recorded (hfformer/protocol.py)."""
    started = time.perf_counter()
    cfg: Config = read_run_config(run_dir)
    prep = prepare(data, cfg.data)
    if holds_test_split(run_dir, prep):
        record_test_read(run_dir, prep, data, "hfformer predict", [model], again)
    f = Forecaster(run_dir, model, lean=True)
    ends = valid_window_ends(prep.features.valid, cfg.data.window, 0)
    out = Path(out)
    writer = None
    with atomic_output(out, checksum=True) as partial:
        try:
            for i in range(0, max(ends.size, 1), chunk):
                part = ends[i : i + chunk]
                table = frame(prep, part, f.forecast(prep, part), f.quantiles, with_targets=False).to_arrow()
                writer = writer or pq.ParquetWriter(partial, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    seconds = time.perf_counter() - started
    return {"data": data_label(data), "model": model, "rows": prep.features.report["rows"],
            "forecasts": int(ends.size), "out": str(out), "seconds": round(seconds, 3)}
