"""The features a quant's baselines see (hfformer/linear.py and hfformer/gbm.py share them): one row
per window, read at the window's last snapshot and the few before it, never after.

Columns: imbalance_i = log(bid_qty_i / ask_qty_i) for every book level i; spread_bp =
(ask_px_1 - bid_px_1) / price * 1e4; return_0 .. return_{k-1} = the log returns of the last k
snapshots (the features' unit); and, when the book comes with its trades, flow_1 and flow_k = the
signed traded quantity (buyer-initiated minus seller-initiated) over the last 1 and k snapshot
intervals (trades with ts_{t-j} < ts <= ts_t).

Trades are found beside each book file: `<prefix>trades.parquet` for `<prefix>book.parquet` (the
folder `ticks synth` writes holds book.parquet and trades.parquet). When any book file lacks its
trades file, no flow columns are built and `trade_flow` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data_loaders.atomic import checked
from hfformer.data import Prepared


@dataclass
class TradeFlow:
    """Cumulative signed traded quantity at each book row (N,) float64, or None with the reason."""

    cumulative: np.ndarray | None
    note: str  # "N trades from FILES" or why there is no flow


def trades_file(book: Path) -> Path | None:
    """The trades Parquet recorded with a book file, or None: <prefix>trades.parquet beside <prefix>book.parquet."""
    if not book.name.endswith("book.parquet"):
        return None
    path = book.with_name(book.name.removesuffix("book.parquet") + "trades.parquet")
    return path if path.exists() else None


def trade_flow(prep: Prepared) -> TradeFlow:
    """Signed flow of the trades recorded with prep's book files (taken in the book's time order)."""
    files = [trades_file(Path(f)) for f in prep.sources]
    lacking = [str(f) for f, t in zip(prep.sources, files) if t is None]
    if lacking:
        return TradeFlow(None, f"no trades file beside {', '.join(lacking)}: trade flow left out")
    scans = []
    for f in files:
        scan = pl.scan_parquet(checked(f))
        schema = scan.collect_schema()
        missing = [c for c in ("ts", "qty", "side") if c not in schema]
        if missing:
            raise ValueError(f"{f}: trades lack columns {missing} (trades contract: ts, qty, side)")
        ts = pl.col("ts").dt.epoch("ns") if isinstance(schema["ts"], pl.Datetime) else pl.col("ts").cast(pl.Int64)
        scans.append(scan.select(ts.alias("ts"), (pl.col("qty") * pl.col("side")).cast(pl.Float64).alias("signed")))
    trades = pl.concat(scans).sort("ts", maintain_order=True).collect()
    if trades["ts"].null_count() or trades["signed"].null_count() or not trades["signed"].is_finite().all():
        raise ValueError(f"{', '.join(map(str, files))}: trades with null ts, qty or side, or non-finite qty")
    cumulative = np.concatenate([[0.0], np.cumsum(trades["signed"].to_numpy())])
    # trades up to and including each book row's time
    at_row = cumulative[np.searchsorted(trades["ts"].to_numpy(), prep.features.ts, side="right")]
    return TradeFlow(at_row, f"{trades.height} trades from {', '.join(map(str, files))}")


def column_names(levels: int, lags: int, flow: bool) -> list[str]:
    names = [f"imbalance_{i}" for i in range(1, levels + 1)] + ["spread_bp"]
    names += [f"return_{j}" for j in range(lags)]
    return names + (["flow_1", f"flow_{lags}"] if flow else [])


def design(prep: Prepared, ends: np.ndarray, lags: int, flow: TradeFlow | None) -> np.ndarray:
    """(n, P) float64 features (column_names order) of the windows ending at `ends`; flow None or
    without cumulative: no flow columns. lags < data.window (config.validate), so every row read lies
    in the window."""
    names, x = prep.features.names, prep.features.x
    levels = prep.cfg.levels
    row = x[ends]
    bid = row[:, [names.index(f"bid_qty_{i}") for i in range(1, levels + 1)]].astype(np.float64)
    ask = row[:, [names.index(f"ask_qty_{i}") for i in range(1, levels + 1)]].astype(np.float64)
    # price columns share one constant shift (features.price_ref), so their difference is the spread
    spread = (row[:, names.index("ask_px_1")] - row[:, names.index("bid_px_1")]).astype(np.float64)
    spread_bp = spread / prep.features.price[ends] * 1e4
    returns = x[ends[:, None] - np.arange(lags)[None, :], names.index("log_return")].astype(np.float64)
    cols = [np.log(bid / ask), spread_bp[:, None], returns]
    if flow is not None and flow.cumulative is not None:
        c = flow.cumulative
        cols.append(np.column_stack([c[ends] - c[ends - 1], c[ends] - c[ends - lags]]))
    return np.concatenate(cols, axis=1)


@dataclass
class TabularInputs:
    """Which tabular features a model was fitted on; rebuilds them for any data."""

    lags: int
    flow: bool  # the trade-flow columns are used

    def design(self, prep: Prepared, ends: np.ndarray, name: str) -> np.ndarray:
        flow = None
        if self.flow:
            flow = trade_flow(prep)
            if flow.cumulative is None:
                raise ValueError(f"{name} was trained with trade flow, but {flow.note}")
        return design(prep, ends, self.lags, flow)

    @classmethod
    def fit(cls, prep: Prepared, lags: int, use_flow: bool) -> tuple[TabularInputs, dict[str, Any]]:
        """The inputs for this data (flow only when asked for and the trades are there) and a note."""
        flow = trade_flow(prep) if use_flow else None
        note = "trade flow off (trade_flow = false)" if flow is None else flow.note
        inputs = cls(lags, flow is not None and flow.cumulative is not None)
        return inputs, {"columns": column_names(prep.cfg.levels, lags, inputs.flow), "trade_flow": note}
