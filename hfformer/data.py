"""From a book Parquet (or a directory of them) to features, targets, the split and windows.

Every command (train, evaluate, predict, backtest) calls `prepare` with the run's resolved
DataConfig, so all models see exactly the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from data_loaders import formats
from data_loaders.atomic import checked
from data_loaders.features import (
    FeatureConfig,
    Features,
    TrainScaling,
    build_features,
    make_targets,
    target_scale,
)
from data_loaders.windows import Split, time_split, valid_window_ends
from hfformer.config import DataConfig, utc_ns
from hfformer.loader import WindowDataset

BOOK_COLUMNS = ["bid_px_1", "ask_px_1", "bid_qty_1", "ask_qty_1"]
GRID_SHARE = 0.99  # share of steps that must equal the grid step; the rest are gaps, counted
PARTS = ("train", "val", "test", "all")
# Below either, a split is too small to tell models apart: the block bootstrap has too few blocks
# of correlated windows, and an hour of one market's life is one regime.
MIN_WINDOWS, MIN_HOURS = 10_000, 1.0


@dataclass
class Prepared:
    features: Features  # x (N, F) float32, price/ts/valid (N,)
    y: np.ndarray  # (N, H) float32 scaled targets, NaN near the end
    ends: dict[str, np.ndarray]  # part -> window end rows (train, val, test, all)
    book: pl.DataFrame  # (N rows) ts + level-1 prices and sizes, aligned with features
    oracle: np.ndarray | None  # (N, H) float32 oracle forecast in scaled-target units (synthetic)
    ceiling: np.ndarray | None  # (N, H) float32 the best forecast from what the market showed (regime market)
    sources: list[Path]
    cfg: DataConfig
    scaling: TrainScaling | None  # data.size_norm or return_norm = "train": fitted on training rows, applied per batch
    grid: Grid  # the rows' clock and step

    def span_hours(self, part: str) -> float:
        """Hours a part covers, from its first forecast to its last realised target (0 when empty)."""
        ends = self.ends[part]
        if ends.size == 0:
            return 0.0
        last = self.features.ts[ends[-1] + max(self.cfg.horizons)]
        return float(last - self.features.ts[ends[0]] + self.grid.step_ns) / 3.6e12

    def dataset(self, part: str) -> WindowDataset:
        if self.scaling is None:
            return WindowDataset(self.features.x, self.y, self.ends[part], self.cfg.window)
        return WindowDataset(self.features.x, self.y, self.ends[part], self.cfg.window,
                             self.scaling.zscore_mask(), self.scaling.inputs)


Data = Path | Sequence[Path]  # one book Parquet or directory, or several in time order (--data A --data B)


def data_label(data: Data) -> str:
    """The data as a user named it, for messages and summaries."""
    return str(data) if isinstance(data, (str, Path)) else " ".join(map(str, data))


def resolve_inputs(data: Data) -> tuple[list[Path], Path | None]:
    """(book files in order, oracle file or None). A directory holds book.parquet (+ oracle.parquet,
    as `ticks synth` writes) or else book Parquet files, taken in name order. Several paths are one
    recording's files in the order given; an oracle belongs to a single synthetic market only."""
    if not isinstance(data, (str, Path)):
        if len(data) == 1:
            return resolve_inputs(data[0])
        files = [f for path in data for f in resolve_inputs(path)[0]]
        if len(set(files)) < len(files):
            raise ValueError(f"{data_label(data)}: a book file is given twice")
        return files, None
    path = Path(data)
    if path.is_file():
        oracle = path.with_name("oracle.parquet") if path.name == "book.parquet" else None
        return [path], oracle if oracle is not None and oracle.exists() else None
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such book Parquet file or directory")
    if (path / "book.parquet").exists():
        oracle = path / "oracle.parquet"
        return [path / "book.parquet"], oracle if oracle.exists() else None
    files = sorted(f for f in path.glob("*.parquet") if "bid_px_1" in pl.read_parquet_schema(f))
    if not files:
        raise FileNotFoundError(f"{path}: no book Parquet files (with bid_px_1) in this directory")
    return files, None


def feature_config(cfg: DataConfig, clock: str = "ts") -> FeatureConfig:
    return FeatureConfig(levels=cfg.levels, price=cfg.price, include_ofi=cfg.include_ofi,
                         include_microprice=cfg.include_microprice,
                         include_imbalance=cfg.include_imbalance, return_bp=cfg.return_bp,
                         horizons=tuple(cfg.horizons), clock=clock)


@dataclass(frozen=True)
class Grid:
    """The regular time grid the rows lie on: horizons count rows, so a row must mean a fixed step."""

    clock: str  # "ts" (e.g. the synthetic market) or "local_ts" (`ticks book --every` resamples on it)
    step_ns: int


def find_grid(book: pl.LazyFrame, source: str | Path) -> Grid:
    """The clock column whose steps are (almost all) one constant: ts first, then local_ts.

    A book with one row per update is on no grid; its horizons would mean different times.
    """
    schema = book.collect_schema()
    seen = []
    for clock in ("ts", "local_ts"):
        if clock not in schema:
            continue
        steps = (book.select(pl.col(clock).cast(pl.Int64).diff().alias("d")).drop_nulls()
                 .group_by("d").len().sort("len", descending=True).collect())
        if steps.height == 0:
            continue
        step, count = steps.row(0)
        share = count / steps["len"].sum()
        if step > 0 and share >= GRID_SHARE:
            return Grid(clock, int(step))
        seen.append(f"{clock}: {share:.1%} of steps are {step / 1e6:g} ms")
    raise ValueError(f"{source}: the rows are not on a regular time grid ({'; '.join(seen) or 'no clock'}), "
                     "so a horizon in rows is no fixed time: resample it (ticks book --every 100ms)")


def grid_breaks(ts: np.ndarray, step_ns: int) -> np.ndarray:
    """Rows whose distance to the previous row is not one grid step (a gap, or a jump back)."""
    return np.flatnonzero(np.diff(ts) != step_ns) + 1


def load_oracle(path: Path, ts: np.ndarray, horizons: list[int], prefix: str = "oracle") -> np.ndarray:
    """The `prefix`_h{h} columns (oracle: E[log(p_{t+h}/p_t) | hidden state]; ceiling: the same
    given only what the market showed) aligned to rows by ts, in scaled-target units."""
    oracle = pl.read_parquet(checked(path))
    cols = [f"{prefix}_h{h}" for h in horizons]
    missing = [c for c in cols if c not in oracle.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    joined = pl.DataFrame({"ts": ts}).join(oracle.select("ts", *cols), on="ts", how="left",
                                           maintain_order="left")
    scale = np.array([1e4 * target_scale(h) for h in horizons])
    return (joined.select(cols).to_numpy() * scale).astype(np.float32)


def has_ceiling(path: Path) -> bool:
    """Whether an oracle file also holds the observable ceiling (the regime market, v2)."""
    return "ceiling_h1" in pl.read_parquet_schema(path)


def prepare(data: Data, cfg: DataConfig) -> Prepared:
    files, oracle_path = resolve_inputs(data)
    path = data_label(data)
    frame, stats = formats.scan_book(files)  # read a chunk at a time: only the features stay in memory
    grid = find_grid(frame, path)
    try:
        feats = build_features(frame, feature_config(cfg, grid.clock))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    breaks = grid_breaks(feats.ts, grid.step_ns)  # no window or horizon reaches across a gap
    feats.valid[breaks] = False
    feats.report["grid_gap"] = int(breaks.size)
    book = frame.select(BOOK_COLUMNS).collect()
    book = book.insert_column(0, pl.Series("ts", feats.ts))
    if len(files) > 1:  # windows never span two separately recorded files
        starts = np.cumsum(stats["file_rows"])[:-1]
        feats.valid[starts] = False
        feats.report["file_boundary"] = len(starts)
    y = make_targets(feats.price, tuple(cfg.horizons))
    ends = valid_window_ends(feats.valid, cfg.window, max(cfg.horizons))
    if ends.size == 0:
        raise ValueError(f"{path}: no complete windows ({feats.report}); need > window + max horizon "
                         f"= {cfg.window + max(cfg.horizons)} consecutive valid rows")
    if cfg.test_start:
        split = forward_split(ends, feats.ts, cfg)
    else:
        split = time_split(ends, feats.x.shape[0], tuple(cfg.fractions), gap=cfg.gap)
    parts = {"train": split.train, "val": split.val, "test": split.test, "all": ends}
    oracle = load_oracle(oracle_path, feats.ts, cfg.horizons) if oracle_path is not None else None
    ceiling = (load_oracle(oracle_path, feats.ts, cfg.horizons, "ceiling")
               if oracle_path is not None and has_ceiling(oracle_path) else None)
    scaling = None
    if "train" in (cfg.size_norm, cfg.return_norm):
        scaling = TrainScaling.fit(feats.x, feats.names, training_rows(feats.valid, split.train),
                                   sizes=cfg.size_norm == "train", returns=cfg.return_norm == "train")
    return Prepared(feats, y, parts, book, oracle, ceiling, files, cfg, scaling, grid)


def forward_split(ends: np.ndarray, ts: np.ndarray, cfg: DataConfig) -> Split:
    """Walk-forward: test on [test_start, test_end) and learn only from what came before.

    Train and validation come from the rows before test_start, in the proportion
    fractions[0] : fractions[1] (validation last); test windows end at or after test_start and
    their targets end before test_end. Parts stay `gap` rows apart, as in time_split.
    """
    if np.any(np.diff(ts) < 0):
        raise ValueError("a walk-forward split needs rows in time order; the clock goes backwards")
    cut = int(np.searchsorted(ts, utc_ns(cfg.test_start)))
    stop = int(np.searchsorted(ts, utc_ns(cfg.test_end))) if cfg.test_end else ts.size
    if cut == 0 or cut >= stop:
        raise ValueError(f"test_start {cfg.test_start} leaves no rows before it or none in the test period")
    f0, f1 = cfg.fractions[0], cfg.fractions[1]
    before = time_split(ends[ends < cut], cut, (f0 / (f0 + f1), f1 / (f0 + f1), 0.0), gap=cfg.gap)
    test = ends[(ends >= cut) & (ends + max(cfg.horizons) < stop)]
    return Split(train=before.train, val=before.val, test=test)


def training_rows(valid: np.ndarray, train_ends: np.ndarray) -> np.ndarray:
    """The valid rows up to the last training window's end: all the train split may learn from.
    Every later part's window ends more than `gap` rows after it (time_split)."""
    if train_ends.size == 0:
        raise ValueError("data.size_norm or return_norm = 'train' needs a non-empty training split")
    return np.flatnonzero(valid[: int(train_ends.max()) + 1])


def data_warnings(prep: Prepared) -> list[str]:
    """The parts with too little data to tell models apart (fewer than MIN_WINDOWS windows or
    spanning less than MIN_HOURS), each as "part: N windows over H h"."""
    small = []
    for part in ("train", "val", "test"):
        windows, hours = prep.ends[part].size, prep.span_hours(part)
        if windows < MIN_WINDOWS or hours < MIN_HOURS:
            small.append(f"{part}: {windows:,} windows over {hours:.2f} h")
    return small


def describe_market(prep: Prepared) -> str:
    """What the data is, for every table on it: instrument, venue, and how coarse its tick is.

    A forecast of a thin, large-tick altcoin says little about BTC-USDT: the label says so."""
    meta = pl.read_parquet_metadata(prep.sources[0])
    symbol = meta.get("symbol", "unknown symbol").upper()
    venue = meta.get("venue") or meta.get("market") or "unknown venue"
    bid = prep.book["bid_px_1"].drop_nulls().to_numpy()
    steps = np.abs(np.diff(bid))
    tick = float(steps[steps > 0].min()) if (steps > 0).any() else float("nan")
    tick_bp = tick / float(np.median(bid)) * 1e4
    mid = (prep.book["bid_px_1"] + prep.book["ask_px_1"]).to_numpy() / 2
    still = float(np.mean(np.diff(mid[np.isfinite(mid)]) == 0))
    label = (f"{symbol} {venue}: tick {tick:g} = {tick_bp:.2g} bp of price, mid unchanged over "
             f"{still:.1%} of {prep.grid.step_ns / 1e6:g} ms steps")
    if symbol != "BTCUSDT":
        label += " (not BTC-USDT" + (": a large-tick market)" if tick_bp >= 1 else ")")
    return label
