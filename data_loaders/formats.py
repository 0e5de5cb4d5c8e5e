"""Which reader handles a set of files: Binance recordings, Binance public-data CSV, Tardis CSV.

Every reader answers in one shape here, `(frame, stats)`, so the CLI treats them alike. Readers
are imported lazily: each pulls in its own dependencies only when used.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import polars as pl

from data_loaders.csv_lines import agreed
from data_loaders.order_book import resample_book
from data_loaders.quarantine import Quarantine

FORMATS = ("auto", "binance", "binance-csv", "tardis")
MODULES = {
    "binance": "data_loaders.binance_ws",
    "binance-csv": "data_loaders.binance_csv",
    "tardis": "data_loaders.tardis",
}


class FormatError(ValueError):
    """The files are of an unknown or mixed format, or the format cannot give what was asked."""


def _module(fmt: str):
    return importlib.import_module(MODULES[fmt])


def detect(path: Path) -> str:
    """The format of one file, by sniffing its first lines (Binance recording first: cheapest)."""
    for fmt in ("binance", "tardis", "binance-csv"):
        if _module(fmt).sniff(Path(path)):
            return fmt
    raise FormatError(f"{path}: not a Binance recording, Binance public-data CSV or Tardis CSV")


def resolve(files: list[Path], fmt: str = "auto") -> str:
    """The one format of `files` (detected when fmt is auto); mixed formats are an error."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not files:
        raise FormatError("no input files")
    for f in files:
        if not Path(f).is_file():
            raise FormatError(f"{f}: no such file")
    if fmt != "auto":
        return fmt
    found = {str(f): detect(Path(f)) for f in files}
    kinds = set(found.values())
    if len(kinds) > 1:
        raise FormatError(f"files of different formats given together: {found}")
    return kinds.pop()


def _with_stats(
    result: pl.DataFrame | tuple[pl.DataFrame, dict], quarantine: Quarantine
) -> tuple[pl.DataFrame, dict]:
    frame, stats = result if isinstance(result, tuple) else (result, {})
    return frame, {"rows": frame.height, **stats, "bad_lines": dict(quarantine.counts)}


def _named(fmt: str, symbol: str | None, market: str | None) -> dict[str, str | None]:
    """The caller's symbol and market, for the CSV readers (a recording names its own)."""
    return {} if fmt == "binance" else {"symbol": symbol, "market": market}


def _checked(
    result: tuple[pl.DataFrame, dict], fmt: str, symbol: str | None, market: str | None
) -> tuple[pl.DataFrame, dict]:
    """A recording's own symbol and market, which a given --symbol/--venue must match."""
    frame, stats = result
    if fmt == "binance":
        for key, option, value in (("symbol", "--symbol", symbol), ("market", "--venue", market)):
            if value:
                stats[key] = agreed(key, option, {"the recording": stats.get(key), option: value})
    return frame, stats


def read_trades(
    files: list[Path],
    quarantine: Quarantine,
    fmt: str = "auto",
    symbol: str | None = None,
    market: str | None = None,
) -> tuple[pl.DataFrame, dict]:
    fmt = resolve(files, fmt)
    result = _module(fmt).read_trades(files, quarantine, **_named(fmt, symbol, market))
    return _with_stats(_checked(result, fmt, symbol, market), quarantine)


def read_quotes(
    files: list[Path],
    quarantine: Quarantine,
    fmt: str = "auto",
    symbol: str | None = None,
    market: str | None = None,
) -> tuple[pl.DataFrame, dict]:
    fmt = resolve(files, fmt)
    if fmt == "tardis":
        raise FormatError("Tardis files give trades and books here, not quotes")
    result = _module(fmt).read_quotes(files, quarantine, **_named(fmt, symbol, market))
    return _with_stats(_checked(result, fmt, symbol, market), quarantine)


def read_book(
    files: list[Path],
    quarantine: Quarantine,
    fmt: str = "auto",
    levels: int = 10,
    every: str | None = None,
    on_gap: str = "flag",
    symbol: str | None = None,
    market: str | None = None,
) -> tuple[pl.DataFrame, dict]:
    fmt = resolve(files, fmt)
    if fmt == "binance-csv":
        raise FormatError("Binance public-data CSV files hold trades and quotes, not a book")
    if fmt == "binance":
        result = _module(fmt).read_book(files, quarantine, levels, every, on_gap)
        return _with_stats(_checked(result, fmt, symbol, market), quarantine)
    book, stats = _module(fmt).read_book(files, levels, quarantine, on_gap, symbol, market)
    if every is not None:
        book, stats["ts_backwards"] = resample_book(book, every)
    return _with_stats((book, {**stats, "rows": book.height}), quarantine)
