"""The one reader protocol: every input format, one registry, one keyword-only call.

    frame, stats = formats.read("trades", files, quarantine=q, fmt="auto", symbol=None, market=None)

`kind` is trades, quotes or book; the frame follows that Parquet contract of ARCHITECTURE.md
(data_loaders.schema). `stats` always holds `format`, `rows`, `bad_lines` (quarantined lines by
reason), and `symbol` / `market` where the input names them, plus each reader's own counts
(messages, skipped streams, gaps...). Every reader module exposes `sniff(path) -> bool` and
`read(kind, files, *, quarantine, symbol, market, levels, every, on_gap)`; `ticks`, `dbbench
dataset`, `ticks download` and hfformer all read through `read` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data_loaders import binance_csv, binance_ws, parquet_ticks, tardis
from data_loaders.quarantine import Quarantine

KINDS = ("trades", "quotes", "book")


class FormatError(ValueError):
    """The files are of an unknown or mixed format, or the format cannot give what was asked."""


@dataclass(frozen=True)
class Reader:
    name: str
    holds: str  # what a user is told the format holds
    kinds: tuple[str, ...]
    sniff: Callable[[Path], bool]
    read: Callable[..., tuple[pl.DataFrame, dict]]
    contents: Callable[[Path], tuple[str, ...]]  # the kinds one file of this format holds


# In sniffing order: the cheapest and most specific first.
READERS: dict[str, Reader] = {
    r.name: r
    for r in (
        Reader("parquet", "ticks Parquet", KINDS, parquet_ticks.sniff, parquet_ticks.read,
               lambda path: (parquet_ticks.kind_of(path),)),
        Reader("binance", "Binance recordings", KINDS, binance_ws.sniff, binance_ws.read, lambda _: KINDS),
        Reader("tardis", "Tardis.dev CSV files", KINDS, tardis.sniff, tardis.read, tardis.contents),
        Reader("binance-csv", "Binance public-data CSV files", ("trades", "quotes"), binance_csv.sniff,
               binance_csv.read, binance_csv.contents),
    )
}
FORMATS = ("auto", *READERS)


def detect(path: Path) -> str:
    """The format of one file, by sniffing its first bytes or lines."""
    for reader in READERS.values():
        if reader.sniff(Path(path)):
            return reader.name
    raise FormatError(f"{path}: not a Binance recording, Binance public-data CSV, Tardis CSV or ticks Parquet; "
                      "give files in one of those formats")


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
        raise FormatError(f"files of different formats given together: {found}; give each format on its own")
    return kinds.pop()


def contents(path: Path, fmt: str = "auto") -> tuple[str, tuple[str, ...]]:
    """(format, the kinds the file holds): what `read` can get from it."""
    reader = READERS[resolve([Path(path)], fmt)]
    return reader.name, reader.contents(Path(path))


def read(
    kind: str,
    files: list[Path],
    *,
    quarantine: Quarantine | None = None,
    fmt: str = "auto",
    symbol: str | None = None,
    market: str | None = None,
    levels: int | None = None,
    every: str | None = None,
    on_gap: str = "flag",
) -> tuple[pl.DataFrame, dict]:
    """`files` (one continuous recording or dataset, in order) -> (frame of `kind`, stats).

    quarantine: where bad lines go (None: counted only). symbol / market: the instrument where the
    files do not name it (and, where they do, a check they must pass). levels: book levels (None:
    10 for a rebuilt book, all of them for a book Parquet); every: resample a book on that grid;
    on_gap: flag | drop | error, what an update-id gap does to book rows."""
    if kind not in KINDS:
        raise FormatError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if on_gap not in ("flag", "drop", "error"):
        raise FormatError(f"on_gap must be flag, drop or error, not {on_gap!r}")
    files = [Path(f) for f in files]
    reader = READERS[resolve(files, fmt)]
    if kind not in reader.kinds:
        raise FormatError(f"{reader.holds} hold {' and '.join(reader.kinds)} here, not "
                          f"{'a book' if kind == 'book' else kind}")
    quarantine = Quarantine(None) if quarantine is None else quarantine
    frame, stats = reader.read(kind, files, quarantine=quarantine, symbol=symbol, market=market,
                               levels=levels, every=every, on_gap=on_gap)
    return frame, {"format": reader.name, **stats, "rows": frame.height, "bad_lines": dict(quarantine.counts)}


def scan_book(files: list[Path]) -> tuple[pl.LazyFrame, dict]:
    """Book Parquet files (what `ticks book` writes) as one lazy frame, read a chunk at a time by its
    consumer (hfformer): the checks and stats of `read("book", files, fmt="parquet")`, with the
    book never held in memory whole."""
    files = [Path(f) for f in files]
    if resolve(files, "auto") != "parquet":
        raise FormatError(f"{', '.join(map(str, files))}: a book to learn from is book Parquet; build one with "
                          "`ticks book`")
    frame, stats = parquet_ticks.scan_books(files)
    return frame, {"format": "parquet", **stats, "rows": sum(stats["file_rows"]), "bad_lines": {}}
