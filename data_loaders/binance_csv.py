"""Binance public-data CSV files (data.binance.vision): trades, aggTrades and bookTicker -> trades / quotes.

Layouts, from the binance-public-data README and the published files:
  spot  trades      id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch                   no header
  USD-M trades      id,price,qty,quote_qty,time,is_buyer_maker                            header
  spot  aggTrades   aggId,price,qty,firstId,lastId,time,isBuyerMaker,isBestMatch          no header
  USD-M aggTrades   agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker
  USD-M bookTicker  update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time
A file is recognised by the shape of its data rows (field count and where the true/false columns are),
never by its name, and a first line counts as a header only if it looks like one and has that shape,
so a data row is never swallowed. Times are ms, or us in spot files since 2025: the unit is read per
file from the magnitude. Files given in order are one dataset: order checks run across them.

The symbol and market (as the recordings reader names them: `btcusdt`, `spot` / `usdm`) come from
the data.binance.vision layout, `.../spot|futures/um/.../BTCUSDT-trades-2025-01-01.zip`, or from
the caller (`--symbol`, `--venue`) where the path does not say; the rows never name them. COIN-M
(`futures/cm`) quantities count contracts: they are turned into base units (data_loaders.coinm).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data_loaders import coinm
from data_loaders.csv_lines import (
    agreed,
    first_problem,
    head_lines,
    parse_bool,
    parse_float,
    parse_int,
    quarantine_rows,
    read_bytes,
    read_lines,
    split_fields,
    time_unit,
    to_ns,
)
from data_loaders.quarantine import Quarantine
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA


@dataclass(frozen=True)
class Layout:
    name: str
    kind: str  # "trades" or "quotes"
    fields: tuple[str, ...]
    types: str  # one letter per field: i integer, f decimal, b true/false


LAYOUTS = (
    Layout(
        "spot trades",
        "trades",
        ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"),
        "ifffibb",
    ),
    Layout(
        "usdm trades",
        "trades",
        ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker"),
        "ifffib",
    ),
    Layout(
        "spot aggTrades",
        "trades",
        ("id", "price", "qty", "first_id", "last_id", "time", "is_buyer_maker", "is_best_match"),
        "iffiiibb",
    ),
    Layout(
        "usdm aggTrades",
        "trades",
        ("id", "price", "qty", "first_id", "last_id", "time", "is_buyer_maker"),
        "iffiiib",
    ),
    Layout(
        "bookTicker",
        "quotes",
        ("update_id", "bid_px", "bid_qty", "ask_px", "ask_qty", "time", "event_time"),
        "iffffii",
    ),
)

INT = re.compile(r"-?\d+")
FLOAT = re.compile(r"-?\d+(\.\d*)?([eE][-+]?\d+)?")
HEADER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ ()]*")


def _field_type(text: str) -> str:
    if text.lower() in ("true", "false"):
        return "b"
    if INT.fullmatch(text):
        return "i"
    return "f" if FLOAT.fullmatch(text) else "x"


def _fits(layout: Layout, line: str) -> bool:
    """Does this data line have the layout's shape: field count, integers, decimals and booleans in place?"""
    types = [_field_type(f) for f in line.split(",")]
    return len(types) == len(layout.types) and all(
        got == want or (want == "f" and got == "i") for got, want in zip(types, layout.types)
    )


def _is_header(line: str, layout: Layout) -> bool:
    names = line.split(",")
    return len(names) == len(layout.fields) and all(
        HEADER_NAME.fullmatch(n) and n.lower() not in ("true", "false") for n in names
    )


def detect(head: list[str]) -> tuple[Layout, bool] | None:
    """(layout, has_header) from a file's first lines: the layout most sample data lines fit; None if none fits."""
    votes = Counter(layout for line in head[1:] for layout in LAYOUTS if _fits(layout, line))
    for layout in LAYOUTS:  # the first line votes too, unless it is a header
        if head and _fits(layout, head[0]):
            votes[layout] += 1
    if not votes:
        return None
    layout, _ = votes.most_common(1)[0]
    return layout, bool(head) and _is_header(head[0], layout)


def sniff(path: Path) -> bool:
    """Is this a Binance public-data trades, aggTrades or bookTicker CSV (plain or zipped)?"""
    head = head_lines(path)
    found = detect(head)
    if found is None:
        return False
    layout, has_header = found
    data = [line for line in (head[1:] if has_header else head) if line]
    return 2 * sum(_fits(layout, line) for line in data) > len(
        data
    )  # most sample lines, so one bad row is fine


def contents(path: Path) -> tuple[str, ...]:
    """The kind a Binance public-data file holds: trades (trades, aggTrades) or quotes (bookTicker)."""
    found = detect(head_lines(path))
    if found is None:
        raise ValueError(f"{path}: not a Binance public-data trades, aggTrades or bookTicker CSV")
    return (found[0].kind,)


def _parse_file(path: Path, kind: str) -> tuple[Layout, pl.DataFrame]:
    """One file -> its rows with parsed fields, `ts` in ns, and the first per-row `problem` (or null)."""
    data = read_bytes(path)
    head = data[: 64 * 1024].decode("utf-8", errors="replace").splitlines()[:20]
    found = detect(head)
    if found is None:
        raise ValueError(f"{path}: not a Binance public-data trades, aggTrades or bookTicker CSV")
    layout, has_header = found
    if layout.kind != kind:
        raise ValueError(
            f"{path}: is a Binance {layout.name} file, which holds {layout.kind}, not {kind}"
        )
    lines = read_lines(data)
    if has_header:
        lines = lines.slice(1)
    parsers = {"i": parse_int, "f": parse_float, "b": parse_bool}
    rows = split_fields(lines, list(layout.fields)).with_columns(
        [parsers[t](name) for name, t in zip(layout.fields, layout.types)]
    )
    unit = time_unit(rows["time"].filter(rows["n_fields"] == len(layout.fields)))
    rows = rows.with_columns(ts=to_ns("time", unit), file=pl.lit(str(path)))
    if kind == "trades":
        sizes = [pl.col("price"), pl.col("qty")]
        crossed = pl.lit(False)
    else:
        sizes = [pl.col("bid_px"), pl.col("bid_qty"), pl.col("ask_px"), pl.col("ask_qty")]
        crossed = pl.col("bid_px") >= pl.col("ask_px")
    problem = first_problem(
        [
            ("malformed", pl.col("n_fields") != len(layout.fields)),
            ("non_numeric", pl.any_horizontal(pl.col(name).is_null() for name in layout.fields)),
            ("bad_timestamp", pl.col("ts").is_null()),
            ("non_positive", pl.any_horizontal(s <= 0 for s in sizes)),
            ("crossed", crossed),
        ]
    )
    return layout, rows.with_columns(problem)


FILE_NAME = re.compile(
    r"(?P<symbol>[A-Z0-9_]+)-(?:trades|aggTrades|bookTicker)-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|zip)(?:\.gz)?"
)
MARKET_DIRS = {("spot",): "spot", ("futures", "um"): "usdm", ("futures", "cm"): "coinm"}


def named_instrument(path: Path) -> tuple[str | None, str | None]:
    """(symbol, market) as the data.binance.vision path names them; None where it does not."""
    found = FILE_NAME.fullmatch(path.name)
    dirs = path.parent.parts
    market = next(
        (
            market
            for i in range(len(dirs), 0, -1)  # the nearest market folder
            for parts, market in MARKET_DIRS.items()
            if dirs[max(i - len(parts), 0) : i] == parts
        ),
        None,
    )
    return (found["symbol"] if found else None), market


def instrument(
    files: list[Path], layout: Layout, symbol: str | None = None, market: str | None = None
) -> dict[str, str]:
    """{"symbol", "market"} of the files, from their paths or else the caller; a market the rows' layout
    rules out is an error."""
    named = {Path(f).name: named_instrument(Path(f)) for f in files}
    found = {
        "symbol": agreed("symbol", "--symbol", {**{n: s for n, (s, _) in named.items()}, "--symbol": symbol}),
        "market": agreed("market", "--venue", {**{n: m for n, (_, m) in named.items()}, "--venue": market}),
    }  # fmt: skip
    if layout.name.startswith("spot") != (found["market"] == "spot"):
        raise ValueError(
            f"{files[0]}: rows in the {layout.name} layout cannot be the {found['market']} market"
        )
    return found


def _running_max_before(name: str) -> pl.Expr:
    """The largest `name` among the good rows before this one (null before the first)."""
    return pl.when(pl.col("problem").is_null()).then(pl.col(name)).cum_max().forward_fill().shift(1)


def _read(files: list[Path], kind: str) -> tuple[Layout, pl.DataFrame]:
    """All files in order: per-row checks, then the order checks, which run across file boundaries."""
    layouts, parts = zip(*(_parse_file(Path(f), kind) for f in files))
    if len(set(layouts)) > 1:
        names = ", ".join(f"{f}: {layout.name}" for f, layout in zip(files, layouts))
        raise ValueError(f"files of different layouts cannot form one dataset ({names})")
    rows = pl.concat(parts)
    checks = [("out_of_order", pl.col("ts") < _running_max_before("ts"))]
    if kind == "trades":
        checks.append(("duplicate_id", pl.col("id") <= _running_max_before("id")))
    for (
        kind_name,
        failed,
    ) in checks:  # in turn, so a row flagged by one check cannot mislead the next
        flagged = pl.col("problem").is_null() & failed.fill_null(False)
        rows = rows.with_columns(
            pl.when(flagged).then(pl.lit(kind_name)).otherwise(pl.col("problem")).alias("problem")
        )
    return layouts[0], rows


def read(kind: str, files: list[Path], *, quarantine: Quarantine, symbol: str | None = None,
         market: str | None = None, **_: object) -> tuple[pl.DataFrame, dict]:
    """The reader protocol (data_loaders.formats): trades or quotes (book options do not apply)."""
    return (_read_trades if kind == "trades" else _read_quotes)(files, quarantine, symbol, market)


def _read_trades(
    files: list[Path], quarantine: Quarantine, symbol: str | None = None, market: str | None = None
) -> tuple[pl.DataFrame, dict]:
    """Binance trades or aggTrades CSV files -> TRADES_SCHEMA (side -1 when the buyer was the maker, else +1)
    and stats {"symbol", "market"}.

    For aggTrades, `trade_id` is the aggregate trade id. `local_ts` is null: the files carry no receive time.
    """
    if not files:
        raise ValueError("no input files")
    layout, rows = _read(files, "trades")
    stats = instrument(files, layout, symbol, market)
    quarantine_rows(rows, quarantine)
    frame = (
        rows.filter(pl.col("problem").is_null())
        .select(
            pl.col("ts"),
            pl.lit(None, dtype=pl.Int64).alias("local_ts"),
            pl.col("id").alias("trade_id"),
            pl.col("price"),
            pl.col("qty"),
            pl.when(pl.col("is_buyer_maker")).then(-1).otherwise(1).cast(pl.Int8).alias("side"),
        )
        .cast(TRADES_SCHEMA)
    )
    if stats["market"] == "coinm":
        frame = coinm.to_base(frame, stats["symbol"], [("qty", "price")])
    return frame, stats


def _read_quotes(
    files: list[Path], quarantine: Quarantine, symbol: str | None = None, market: str | None = None
) -> tuple[pl.DataFrame, dict]:
    """Binance bookTicker CSV files -> QUOTES_SCHEMA and stats {"symbol", "market"}; `ts` is the
    transaction time, `local_ts` is null."""
    if not files:
        raise ValueError("no input files")
    layout, rows = _read(files, "quotes")
    stats = instrument(files, layout, symbol, market)
    quarantine_rows(rows, quarantine)
    frame = (
        rows.filter(pl.col("problem").is_null())
        .select(
            pl.col("ts"),
            pl.lit(None, dtype=pl.Int64).alias("local_ts"),
            "update_id",
            "bid_px",
            "bid_qty",
            "ask_px",
            "ask_qty",
        )
        .cast(QUOTES_SCHEMA)
    )
    if stats["market"] == "coinm":
        frame = coinm.to_base(frame, stats["symbol"], [("bid_qty", "bid_px"), ("ask_qty", "ask_px")])
    return frame, stats
