"""Ticks Parquet (trades, quotes, book: the contracts of ARCHITECTURE.md) as an input format.

What `ticks` writes, `ticks download` converts and a user brings in the same shape reads back
through the same protocol as the raw formats (data_loaders.formats). A file's kind is its `kind`
metadata, else told from its columns; the instrument comes from its `symbol` / `market` metadata
(as `ticks` writes them), its `symbol` and `market` or `venue` columns (as the benchmark tables
have them), or the caller. A sha256 written beside a file is checked; rows with a price or size
that is not finite and positive, and trades whose id was met before, are quarantined (file, row
number, the row).
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

OPTIONAL = ("local_ts", "update_id")
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
    receive time (`local_ts`) or a quote's `update_id` is null where the file has none (the benchmark
    tables keep neither)."""
    frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias(c) for c in OPTIONAL
                               if c in schema and c not in frame.columns)
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


INSTRUMENT_COLUMNS = {"symbol": ("symbol",), "market": ("market", "venue")}


def _instrument_columns(columns: list[str]) -> dict[str, str]:
    """{"symbol": column, "market": column} where the file names its instrument in columns (market,
    or venue as the benchmark tables call it)."""
    found = {key: next((c for c in names if c in columns), None) for key, names in INSTRUMENT_COLUMNS.items()}
    return {key: c for key, c in found.items() if c is not None}


def instruments(path: Path) -> list[tuple[str, str]]:
    """The (symbol, market) pairs a file with instrument columns holds, in order of appearance ([] when
    the file names its instrument in metadata, or not at all)."""
    columns = _instrument_columns(pq.read_schema(path).names)
    if set(columns) != set(INSTRUMENT_COLUMNS):
        return []
    pairs = pl.scan_parquet(path).select(columns["symbol"], columns["market"]).unique(maintain_order=True)
    return [(str(s), str(m)) for s, m in pairs.collect().iter_rows()]


def _read_file(kind: str, path: Path, quarantine: Quarantine, levels: int | None, symbol: str | None,
               market: str | None) -> tuple[pl.DataFrame, dict[str, str]]:
    """One file's rows of the contract and the instrument its columns name, taking the caller's
    instrument where the file holds several."""
    verify(path, remedy="write it again, or remove its .sha256 if you changed it on purpose")
    found = kind_of(path)
    if found != kind:
        raise ValueError(f"{path}: holds {found}, not {kind}")
    frame = pl.read_parquet(path)
    named: dict[str, str] = {}
    for key, column in _instrument_columns(frame.columns).items():
        wanted = {"symbol": symbol, "market": market}[key]
        if wanted:
            frame = frame.filter(pl.col(column).str.to_lowercase() == wanted.lower())
        values = frame[column].unique().to_list()
        if len(values) > 1:
            raise ValueError(f"{path}: holds several instruments ({key}: {', '.join(map(str, values[:5]))}); "
                             f"pass --symbol and --venue to take one")
        if values:
            named[key] = str(values[0])
    if kind == "book":
        return (frame if levels is None else _contract(frame, book_schema(levels), path)), named
    schema = TRADES_SCHEMA if kind == "trades" else QUOTES_SCHEMA
    return _quarantined(_contract(frame, schema, path), kind, path, quarantine), named


def _without_repeated_ids(frames: list[pl.DataFrame], files: list[Path], quarantine: Quarantine) -> list[pl.DataFrame]:
    """The files are one dataset: a trade id met again, in the same file or a later one, is the same trade
    counted twice; it is quarantined (file, row number, the row), the first kept."""
    seen = pl.concat([f.select("trade_id").with_columns(file=pl.lit(i), row=pl.int_range(pl.len()))
                      for i, f in enumerate(frames)])
    repeated = seen.filter(pl.col("trade_id").is_not_null() & ~pl.col("trade_id").is_first_distinct())
    if repeated.is_empty():
        return frames
    out = []
    for i, (frame, path) in enumerate(zip(frames, files)):
        rows = repeated.filter(pl.col("file") == i)["row"]
        marked = frame.with_row_index("row")
        for row in marked.filter(pl.col("row").is_in(rows.implode())).iter_rows(named=True):
            quarantine.add("duplicate_id", str(path), row.pop("row") + 1, orjson.dumps(row).decode())
        out.append(marked.filter(~pl.col("row").is_in(rows.implode())).drop("row"))
    return out


def read(kind: str, files: list[Path], *, quarantine: Quarantine, symbol: str | None = None,
         market: str | None = None, levels: int | None = None, every: str | None = None,
         **_: object) -> tuple[pl.DataFrame, dict]:
    """The reader protocol (data_loaders.formats). A file names its instrument in its metadata or in
    `symbol` and `market` (or `venue`) columns; of a file holding several, `symbol` / `market` take one.
    A book keeps every level it has when `levels` is None; stats' `file_rows` are the rows each file
    gave, in order (callers mark file boundaries)."""
    read_files = [_read_file(kind, f, quarantine, levels, symbol, market) for f in files]
    frames = [frame for frame, _ in read_files]
    if kind == "book" and levels is None and len({book_levels(f.columns) for f in frames}) > 1:
        raise ValueError(f"book files with different numbers of levels given together: {[str(f) for f in files]}")
    if kind == "trades":
        frames = _without_repeated_ids(frames, files, quarantine)
    frame = pl.concat(frames, how="vertical_relaxed")
    stats = {"file_rows": [f.height for f in frames],
             **_instrument(files, [columns for _, columns in read_files], symbol, market)}
    if kind == "book" and every is not None:
        frame, stats["ts_backwards"] = resample_book(frame, every)
    return frame, stats


def _instrument(files: list[Path], columns: list[dict[str, str]], symbol: str | None,
                market: str | None) -> dict[str, str]:
    """{"symbol", "market"} as the files' metadata or instrument columns and the caller name them,
    where any does; they must all agree."""
    named = [{**metadata(f), **c} for f, c in zip(files, columns)]
    stats = {}
    for key, option, value in (("symbol", "--symbol", symbol), ("market", "--venue", market)):
        said = {f.name: m.get(key) for f, m in zip(files, named)}
        if value or any(said.values()):
            stats[key] = agreed(key, option, {**said, option: value})
    return stats


def scan_books(files: list[Path]) -> tuple[pl.LazyFrame, dict]:
    """Book Parquet files as one lazy frame, for work that reads a book a chunk at a time (hfformer's
    features): `read("book", files)`'s checks (sha256, kind, one instrument per file, one number of
    levels) and its stats (`file_rows`, `symbol`, `market`), with no file held in memory."""
    scans, columns = [], []
    for path in files:
        verify(path, remedy="write it again, or remove its .sha256 if you changed it on purpose")
        if kind_of(path) != "book":
            raise ValueError(f"{path}: holds {kind_of(path)}, not book")
        scan = pl.scan_parquet(path)
        named: dict[str, str] = {}
        for key, column in _instrument_columns(scan.collect_schema().names()).items():
            values = scan.select(pl.col(column).unique()).collect()[column].to_list()
            if len(values) > 1:
                raise ValueError(f"{path}: holds several instruments ({key}: {', '.join(map(str, values[:5]))}); "
                                 "give one instrument's book")
            if values:
                named[key] = str(values[0])
        scans.append(scan)
        columns.append(named)
    if len({book_levels(s.collect_schema().names()) for s in scans}) > 1:
        raise ValueError(f"book files with different numbers of levels given together: {[str(f) for f in files]}")
    stats = {"file_rows": [pq.read_metadata(f).num_rows for f in files], **_instrument(files, columns, None, None)}
    return pl.concat(scans, how="vertical_relaxed"), stats
