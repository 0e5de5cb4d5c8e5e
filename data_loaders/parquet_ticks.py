"""Ticks Parquet (trades, quotes, book: the contracts of ARCHITECTURE.md) as an input format.

What `ticks` writes, `ticks download` converts and a user brings in the same shape reads back
through the same protocol as the raw formats (data_loaders.formats). A file's kind is its `kind`
metadata, else told from its columns; the instrument comes from its `symbol` / `market` metadata
(as `ticks` writes them) or the caller. A sha256 written beside a file is checked; rows with a
price or size that is not finite and positive are quarantined (file, row number, the row).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq

from data_loaders.atomic import verify
from data_loaders.csv_lines import agreed
from data_loaders.order_book import resample_book
from data_loaders.quarantine import Quarantine
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA, book_levels, book_schema

SIZES = {"trades": ["price", "qty"], "quotes": ["bid_px", "bid_qty", "ask_px", "ask_qty"]}


def sniff(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def metadata(path: Path) -> dict[str, str]:
    """The file's own key-value metadata (Arrow's schema entry left out)."""
    kv = pq.read_metadata(path).metadata or {}
    return {k.decode(): v.decode() for k, v in kv.items() if not k.startswith(b"ARROW")}


def kind_of(path: Path) -> str:
    """trades, quotes or book (from the `kind` metadata, else the columns), or `parquet` for other tables."""
    kind = metadata(path).get("kind")
    if kind:
        return kind
    columns = pq.read_schema(path).names
    if "bid_px_1" in columns:
        return "book"
    if "trade_id" in columns:
        return "trades"
    return "quotes" if "bid_px" in columns else "parquet"


def _contract(frame: pl.DataFrame, schema: dict[str, pl.DataType], path: Path) -> pl.DataFrame:
    """The contract's columns, times as Int64 ns (a Datetime column is converted from its own unit); a
    receive time (`local_ts`) is null where the file has none."""
    if "local_ts" not in frame.columns:
        frame = frame.with_columns(local_ts=pl.lit(None, dtype=pl.Int64))
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: lacks the columns {missing} of the ticks contract's schema {list(schema)}")
    times = [pl.col(c).dt.epoch("ns") if isinstance(frame.schema[c], pl.Datetime) else pl.col(c)
             for c in ("ts", "local_ts")]
    try:
        return frame.with_columns(times).select(list(schema)).cast(schema)  # type: ignore[arg-type]
    except pl.exceptions.InvalidOperationError as exc:
        raise ValueError(f"{path}: a column does not fit the ticks contract ({exc})") from None


def _quarantined(frame: pl.DataFrame, kind: str, path: Path, quarantine: Quarantine) -> pl.DataFrame:
    """Rows whose prices and sizes are all finite and positive; the others to the quarantine."""
    good = pl.all_horizontal((pl.col(c).is_finite() & (pl.col(c) > 0)).fill_null(False) for c in SIZES[kind])
    frame = frame.with_row_index("row", offset=1)
    for row in frame.filter(~good).iter_rows(named=True):
        quarantine.add("non_positive_or_non_finite", str(path), row.pop("row"), orjson.dumps(row).decode())
    return frame.filter(good).drop("row")


def _read_file(kind: str, path: Path, quarantine: Quarantine, levels: int | None) -> pl.DataFrame:
    verify(path, remedy="write it again, or remove its .sha256 if you changed it on purpose")
    found = kind_of(path)
    if found != kind:
        raise ValueError(f"{path}: holds {found}, not {kind}")
    frame = pl.read_parquet(path)
    if kind == "book":
        return frame if levels is None else _contract(frame, book_schema(levels), path)
    return _quarantined(_contract(frame, TRADES_SCHEMA if kind == "trades" else QUOTES_SCHEMA, path), kind,
                        path, quarantine)


def read(kind: str, files: list[Path], *, quarantine: Quarantine, symbol: str | None = None,
         market: str | None = None, levels: int | None = None, every: str | None = None,
         **_: object) -> tuple[pl.DataFrame, dict]:
    """The reader protocol (data_loaders.formats). A book keeps every level it has when `levels` is
    None; stats' `file_rows` are the rows each file gave, in order (callers mark file boundaries)."""
    frames = [_read_file(kind, f, quarantine, levels) for f in files]
    if kind == "book" and levels is None and len({book_levels(f.columns) for f in frames}) > 1:
        raise ValueError(f"book files with different numbers of levels given together: {[str(f) for f in files]}")
    frame = pl.concat(frames, how="vertical_relaxed")
    stats: dict = {"file_rows": [f.height for f in frames]}
    named = [metadata(f) for f in files]
    for key, option, value in (("symbol", "--symbol", symbol), ("market", "--venue", market)):
        said = {f.name: m.get(key) for f, m in zip(files, named)}
        if value or any(said.values()):
            stats[key] = agreed(key, option, {**said, option: value})
    if kind == "book" and every is not None:
        frame, stats["ts_backwards"] = resample_book(frame, every)
    return frame, stats
