"""HFformer features and targets from a book (the Parquet book contract of schema.py).

The paper's per-snapshot features: the weighted mid price, its lagged log return, and the price
and size of every level; the target is the scaled h-step log return of that price in basis points.
Features are built chunk by chunk into one preallocated float32 matrix, so a 10-million-row book
(even a lazy Parquet scan) never needs a float64 copy of the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from data_loaders.schema import level_columns

PRICES = ("wmid", "microprice", "mid")
# Exclusive reasons a row is unusable, in the order they are checked (each row counts once).
INVALID_REASONS = ("not_in_sync", "missing_value", "nonpositive", "crossed", "no_previous")


@dataclass(frozen=True)
class FeatureConfig:
    levels: int = 10
    price: str = "wmid"  # "wmid" (paper), "microprice" (standard) or "mid"
    include_microprice: bool = False  # extra feature column "microprice"
    include_ofi: bool = (
        False  # extra feature column "ofi": Cont-Kukanov-Stoikov level-1 order-flow imbalance
    )
    # extra columns "imbalance_1..L": size imbalance (bid_qty_k - ask_qty_k) / (bid_qty_k + ask_qty_k)
    include_imbalance: bool = False
    # "log_return" in basis points (x 1e4): the window z-score's +0.01 then no longer swamps it
    return_bp: bool = False
    horizons: tuple[int, ...] = tuple(range(1, 31))
    # the row clock: "ts", or "local_ts" for a book resampled on receive time (`ticks book --every`)
    clock: str = "ts"


@dataclass
class Features:
    """Per-snapshot features.

    x: float32 (N, F), C-contiguous. Columns (names): "price", "log_return", bid_px_1..L,
       bid_qty_1..L, ask_px_1..L, ask_qty_1..L (the paper's 2 + 4L = 42), then "microprice",
       "ofi" and "imbalance_1..L" when enabled. "log_return" is log(p_t / p_t-1), in basis
       points when return_bp. Price-valued columns ("price", "*_px_*", "microprice")
       hold `value - price_ref`: float32 has ~0.004 resolution at 60,000 (40% of a 0.01 tick)
       and far better near zero; the per-window z-score is unchanged by this constant shift.
       Rows that are not valid may hold NaN.
    price: float64 (N,) the absolute target price p (cfg.price) of every row.
    ts: int64 (N,) UTC ns, read from the cfg.clock column.  valid: bool (N,) row usable (see build_features).
    price_ref: float64 constant subtracted from the price-valued columns of x.
    report: row counts: rows, valid, invalid and invalid by reason (INVALID_REASONS).
    """

    x: np.ndarray
    names: list[str]
    price: np.ndarray
    ts: np.ndarray
    valid: np.ndarray
    price_ref: float
    report: dict[str, int] = field(default_factory=dict)


def feature_names(cfg: FeatureConfig) -> list[str]:
    extra = ["microprice"] * cfg.include_microprice + ["ofi"] * cfg.include_ofi
    extra += [f"imbalance_{k}" for k in range(1, cfg.levels + 1)] * cfg.include_imbalance
    return ["price", "log_return", *level_columns(cfg.levels), *extra]


def _is_price_column(name: str) -> bool:
    return name in ("price", "microprice") or "_px_" in name


def _contract_dtype(column: str, dtype: pl.DataType) -> bool:
    """Whether a book column's type is one the contract allows (a Boolean price is not a number here)."""
    if column in ("ts", "local_ts"):
        return dtype.is_integer() or isinstance(dtype, pl.Datetime)
    if column == "in_sync":
        return dtype == pl.Boolean
    return dtype.is_numeric()


def build_features(
    book: pl.DataFrame | pl.LazyFrame,
    cfg: FeatureConfig = FeatureConfig(),
    chunk_rows: int = 262_144,
) -> Features:
    """Features of every book row, in time order; invalid rows are kept, flagged and counted.

    A row is valid when in_sync is true (null counts as false), no used column is null/NaN, every
    used price and size is > 0, level 1 is neither crossed nor locked (bid_px_1 < ask_px_1), and
    the previous row passes these checks too (the lagged return and OFI need it; the first row
    never does). report: rows, valid, invalid, and per INVALID_REASONS the rows whose first
    failing check it is (they sum to invalid). book: a DataFrame or a LazyFrame (e.g.
    pl.scan_parquet), read chunk_rows at a time.
    """
    if cfg.price not in PRICES:
        raise ValueError(f"price must be one of {PRICES}, got {cfg.price!r}")
    if cfg.include_microprice and cfg.price == "microprice":
        raise ValueError("include_microprice duplicates price='microprice'")
    levels = level_columns(cfg.levels)
    if cfg.clock not in ("ts", "local_ts"):
        raise ValueError(f"clock must be 'ts' or 'local_ts', got {cfg.clock!r}")
    needed = [cfg.clock, "in_sync", *levels]
    schema = book.collect_schema()
    missing = [c for c in needed if c not in schema]
    if missing:
        raise ValueError(
            f"book lacks columns {missing} (book contract: schema.book_schema({cfg.levels}))"
        )
    wrong = [f"{c} is {schema[c]}" for c in needed if not _contract_dtype(c, schema[c])]
    if wrong:
        raise ValueError(f"book columns of the wrong type: {', '.join(wrong)} (book contract: ts integer ns "
                         "or Datetime, in_sync Boolean, prices and sizes numbers)")
    ts_expr = (
        pl.col(cfg.clock).dt.epoch("ns")
        if isinstance(schema[cfg.clock], pl.Datetime)
        else pl.col(cfg.clock).cast(pl.Int64)
    )
    book = book.select(
        ts_expr.alias("ts"),
        pl.col("in_sync").fill_null(False),
        *[pl.col(c).cast(pl.Float64) for c in levels],
    )
    n = book.select(pl.len()).collect().item() if isinstance(book, pl.LazyFrame) else book.height

    names = feature_names(cfg)
    x = np.empty((n, len(names)), dtype=np.float32)
    price = np.empty(n, dtype=np.float64)
    ts = np.empty(n, dtype=np.int64)
    valid = np.empty(n, dtype=bool)
    reason = np.zeros(len(INVALID_REASONS) + 1, dtype=np.int64)  # last slot: valid rows
    price_ref: float | None = None
    shift = np.array([_is_price_column(c) for c in names])

    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        lo = max(start - 1, 0)  # one row of history for the lagged return and OFI
        chunk = book.slice(lo, stop - lo)
        chunk = chunk.collect() if isinstance(chunk, pl.LazyFrame) else chunk
        if chunk["ts"].null_count():
            raise ValueError(f"book has null {cfg.clock} in rows {start}..{stop - 1}")
        f, p, code = _chunk_features(chunk, cfg)
        k = start - lo  # 1 when the chunk carries the previous row
        if price_ref is None:  # any constant keeps z-scores; a typical price keeps precision
            finite = p[np.isfinite(p)]
            price_ref = (
                float(np.round(np.median(finite))) if finite.size else 0.0
            )  # fixed from here on
        f[:, shift] -= price_ref
        x[start:stop] = f[k:]
        price[start:stop] = p[k:]
        ts[start:stop] = chunk["ts"].to_numpy()[k:]
        valid[start:stop] = code[k:] == len(INVALID_REASONS)
        reason += np.bincount(code[k:], minlength=len(reason))

    report = {"rows": n, "valid": int(reason[-1]), "invalid": int(n - reason[-1])}
    report.update({name: int(c) for name, c in zip(INVALID_REASONS, reason[:-1])})
    return Features(x, names, price, ts, valid, price_ref or 0.0, report)


def _chunk_features(
    chunk: pl.DataFrame, cfg: FeatureConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features float64 (n, F), price float64 (n,), reason code int (n,)) for consecutive rows.

    Row 0 has no previous row here: its return/OFI are NaN and its code is at best "no_previous".
    Code len(INVALID_REASONS) means valid.
    """
    L = cfg.levels
    lv = chunk.select(level_columns(L)).to_numpy()  # (n, 4L) float64, null -> NaN
    bid, bq, ask, aq = lv[:, 0], lv[:, L], lv[:, 2 * L], lv[:, 3 * L]
    with np.errstate(divide="ignore", invalid="ignore"):
        wmid = (ask * aq + bid * bq) / (aq + bq)
        micro = (bid * aq + ask * bq) / (aq + bq)
        p = {"wmid": wmid, "microprice": micro, "mid": 0.5 * (bid + ask)}[cfg.price]
        logp = np.log(p)
    ret = np.full_like(p, np.nan)
    ret[1:] = np.diff(logp) * (1e4 if cfg.return_bp else 1.0)
    cols = [p[:, None], ret[:, None], lv]
    if cfg.include_microprice:
        cols.append(micro[:, None])
    if cfg.include_ofi:
        cols.append(_ofi(bid, bq, ask, aq)[:, None])
    if cfg.include_imbalance:
        bqs, aqs = lv[:, L : 2 * L], lv[:, 3 * L :]
        with np.errstate(divide="ignore", invalid="ignore"):
            cols.append((bqs - aqs) / (bqs + aqs))

    # Reason codes: the first failing check, in INVALID_REASONS order.
    ok_sync = chunk["in_sync"].to_numpy()
    ok_present = np.isfinite(lv).all(axis=1)
    with np.errstate(invalid="ignore"):
        ok_positive = (lv > 0).all(axis=1)
        ok_uncrossed = bid < ask
    base = ok_sync & ok_present & ok_positive & ok_uncrossed
    ok_previous = np.zeros_like(base)
    ok_previous[1:] = base[:-1]
    fails = np.stack(
        [~ok_sync, ~ok_present, ~ok_positive, ~ok_uncrossed, ~ok_previous, np.ones_like(base)]
    )
    code = np.argmax(fails, axis=0).astype(
        np.int64
    )  # first failing check; the last row means valid
    return np.hstack(cols), p, code


def _ofi(bid: np.ndarray, bq: np.ndarray, ask: np.ndarray, aq: np.ndarray) -> np.ndarray:
    """Level-1 order-flow imbalance e_t of Cont, Kukanov and Stoikov (2014), in size units:
    bq_t 1[b_t >= b_t-1] - bq_t-1 1[b_t <= b_t-1] - aq_t 1[a_t <= a_t-1] + aq_t-1 1[a_t >= a_t-1].
    """
    e = np.full_like(bid, np.nan)
    b0, b1, a0, a1 = bid[:-1], bid[1:], ask[:-1], ask[1:]
    e[1:] = bq[1:] * (b1 >= b0) - bq[:-1] * (b1 <= b0) - aq[1:] * (a1 <= a0) + aq[:-1] * (a1 >= a0)
    return e


def target_scale(h: int) -> float:
    """The paper's per-horizon scale: about one over the h-step return's std in bp."""
    return 1.0 / (1.1 * np.sqrt(h) + 0.01 * h)


def make_targets(
    price: np.ndarray, horizons: tuple[int, ...] = tuple(range(1, 31)), block_rows: int = 262_144
) -> np.ndarray:
    """y float32 (N, H): y[t, j] = log(p[t+h] / p[t]) * 1e4 * target_scale(h), h = horizons[j];
    NaN where t + h >= N. Computed in float64 (as log p[t+h] - log p[t]) a block of rows at a time,
    so the only full-size allocation is y itself."""
    h = np.asarray(horizons, dtype=np.int64)
    if h.ndim != 1 or h.size == 0 or h.min() < 1:
        raise ValueError(f"horizons must be integers >= 1, got {horizons}")
    n = len(price)
    logp = np.log(np.asarray(price, dtype=np.float64))
    logp = np.concatenate([logp, np.full(int(h.max()), np.nan)])  # NaN past the data
    scale = np.array([1e4 * target_scale(int(k)) for k in h])  # (H,)
    y = np.empty((n, h.size), dtype=np.float32)
    for start in range(0, n, block_rows):
        t = np.arange(start, min(start + block_rows, n))
        y[t] = (logp[t[:, None] + h] - logp[t, None]) * scale  # (B, H)
    return y


SIZE_NORMS = ("window", "train")


def train_scaled_columns(names: list[str], sizes: bool = True, returns: bool = False) -> tuple[list[int], list[bool]]:
    """(column indices, log first?) of the columns taken out of the window z-score and standardised
    on the training rows instead: with `sizes` (size_norm = "train") every size (log) and size
    imbalance, with `returns` (return_norm = "train") log_return. They are stationary, so their level
    carries signal that a per-window z-score removes (for returns: the window's drift and
    volatility); prices stay window z-scored."""
    cols = [i for i, n in enumerate(names)
            if (sizes and ("_qty_" in n or n.startswith("imbalance_"))) or (returns and n == "log_return")]
    return cols, ["_qty_" in names[i] for i in cols]


@dataclass
class TrainScaling:
    """Sizes (as logs) and imbalances, or log returns, standardised with statistics of the training rows only.

    inputs(x) is what a model sees before the window z-score, which then applies only where
    zscore_mask is true: a test window is scaled with numbers fitted before its time (no leak).
    """

    names: list[str]  # every feature name, in x's column order
    columns: np.ndarray  # int64 (K,) scaled columns
    log: np.ndarray  # bool (K,) take the log first (sizes)
    mean: np.ndarray  # float64 (K,)
    std: np.ndarray  # float64 (K,)

    @classmethod
    def fit(cls, x: np.ndarray, names: list[str], rows: np.ndarray, sizes: bool = True,
            returns: bool = False) -> TrainScaling:
        """Mean and population std of each scaled column (train_scaled_columns) over x[rows] (rows:
        the training rows)."""
        columns, log = train_scaled_columns(names, sizes, returns)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size < 2:
            raise ValueError(f"train scaling needs training rows, got {rows.size}")
        mean, std = np.empty(len(columns)), np.empty(len(columns))
        for k, (c, lg) in enumerate(zip(columns, log)):  # one column at a time: bounded memory
            v = x[rows, c].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.log(v) if lg else v
            if not np.isfinite(v).all():
                raise ValueError(f"train scaling: column {names[c]} has non-finite values on training rows")
            mean[k], std[k] = v.mean(), v.std()
        return cls(list(names), np.asarray(columns, dtype=np.int64), np.asarray(log), mean, std + 1e-12)

    def zscore_mask(self) -> np.ndarray:
        """bool (F,): true for the columns the window z-score still applies to."""
        mask = np.ones(len(self.names), dtype=bool)
        mask[self.columns] = False
        return mask

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """float32 (..., F) copy of rows of x (a batch of windows, or all of x) with the scaled columns
        replaced by (log) standardised values."""
        if x.shape[-1] != len(self.names):
            raise ValueError(f"train scaling fitted on {len(self.names)} features, x has {x.shape[-1]}")
        out = x.astype(np.float32, copy=True)
        v = x[..., self.columns].astype(np.float64)  # every scaled column at once: a batch is served per step
        with np.errstate(divide="ignore", invalid="ignore"):  # invalid rows may hold 0 or NaN
            v[..., self.log] = np.log(v[..., self.log])
        out[..., self.columns] = (v - self.mean) / self.std
        return out

    def state_dict(self) -> dict:
        return {"names": list(self.names), "columns": self.columns.tolist(), "log": self.log.tolist(),
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> TrainScaling:
        return cls(list(state["names"]), np.asarray(state["columns"], dtype=np.int64),
                   np.asarray(state["log"], dtype=bool), np.asarray(state["mean"]), np.asarray(state["std"]))
