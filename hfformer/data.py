"""From a book Parquet (or a directory of them) to features, targets, the split and windows.

Every command (train, evaluate, predict, backtest) calls `prepare` with the run's resolved
DataConfig, so all models see exactly the same windows.
"""

from __future__ import annotations

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
from data_loaders.windows import Split, WindowDataset, time_split, valid_window_ends
from hfformer.config import DataConfig

BOOK_COLUMNS = ["bid_px_1", "ask_px_1", "bid_qty_1", "ask_qty_1"]
PARTS = ("train", "val", "test", "all")


@dataclass
class Prepared:
    features: Features  # x (N, F) float32, price/ts/valid (N,)
    y: np.ndarray  # (N, H) float32 scaled targets, NaN near the end
    ends: dict[str, np.ndarray]  # part -> window end rows (train, val, test, all)
    book: pl.DataFrame  # (N rows) ts + level-1 prices and sizes, aligned with features
    oracle: np.ndarray | None  # (N, H) float32 oracle forecast in scaled-target units (synthetic)
    sources: list[Path]
    cfg: DataConfig
    scaling: TrainScaling | None  # data.size_norm = "train": fitted on this data's training rows
    inputs: np.ndarray  # (N, F) float32 what the models' windows are cut from: x, or scaling.inputs(x)

    def dataset(self, part: str) -> WindowDataset:
        zscore = None if self.scaling is None else self.scaling.zscore_mask()
        return WindowDataset(self.inputs, self.y, self.ends[part], self.cfg.window, zscore)


def resolve_inputs(path: Path) -> tuple[list[Path], Path | None]:
    """(book files in order, oracle file or None). A directory holds book.parquet (+ oracle.parquet,
    as `ticks synth` writes) or else book Parquet files, taken in name order."""
    path = Path(path)
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


def feature_config(cfg: DataConfig) -> FeatureConfig:
    return FeatureConfig(levels=cfg.levels, price=cfg.price, include_ofi=cfg.include_ofi,
                         include_microprice=cfg.include_microprice,
                         include_imbalance=cfg.include_imbalance, return_bp=cfg.return_bp,
                         horizons=tuple(cfg.horizons))


def load_oracle(path: Path, ts: np.ndarray, horizons: list[int]) -> np.ndarray:
    """Oracle E_t[log(p_{t+h}/p_t)] aligned to rows by ts, converted to scaled-target units."""
    oracle = pl.read_parquet(checked(path))
    missing = [f"oracle_h{h}" for h in horizons if f"oracle_h{h}" not in oracle.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    cols = [f"oracle_h{h}" for h in horizons]
    joined = pl.DataFrame({"ts": ts}).join(oracle.select("ts", *cols), on="ts", how="left",
                                           maintain_order="left")
    scale = np.array([1e4 * target_scale(h) for h in horizons])
    return (joined.select(cols).to_numpy() * scale).astype(np.float32)


def prepare(path: Path, cfg: DataConfig) -> Prepared:
    files, oracle_path = resolve_inputs(path)
    frame, stats = formats.read("book", files, fmt="parquet")
    try:
        feats = build_features(frame.lazy(), feature_config(cfg))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    book = frame.select(BOOK_COLUMNS)
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
    split: Split = time_split(ends, feats.x.shape[0], tuple(cfg.fractions), gap=cfg.gap)
    parts = {"train": split.train, "val": split.val, "test": split.test, "all": ends}
    oracle = load_oracle(oracle_path, feats.ts, cfg.horizons) if oracle_path is not None else None
    scaling, inputs = None, feats.x
    if cfg.size_norm == "train":
        scaling = TrainScaling.fit(feats.x, feats.names, training_rows(feats.valid, split.train))
        inputs = scaling.inputs(feats.x)
    return Prepared(feats, y, parts, book, oracle, files, cfg, scaling, inputs)


def training_rows(valid: np.ndarray, train_ends: np.ndarray) -> np.ndarray:
    """The valid rows up to the last training window's end: all the train split may learn from.
    Every later part's window ends more than `gap` rows after it (time_split)."""
    if train_ends.size == 0:
        raise ValueError("data.size_norm = 'train' needs a non-empty training split")
    return np.flatnonzero(valid[: int(train_ends.max()) + 1])
