"""Tardis.dev CSV datasets (docs.tardis.dev, "Downloadable CSV files"): trades, quotes, book_snapshot_N,
incremental_book_L2.

Every file has a header naming its data type; times are microseconds since the epoch (UTC):
  trades               exchange,symbol,timestamp,local_timestamp,id,side,price,amount
  quotes / book_ticker exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
                       (the best bid and ask; a side with no order is an empty field)
  book_snapshot_25 / 5 exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0].price,
                       bids[0].amount,asks[1].price,... (top N per side, best first, empty where the book is thinner)
  incremental_book_L2  exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
`timestamp` is the exchange's time and `local_timestamp` the arrival time; rows come in arrival order, so
out-of-order checks run on `local_timestamp`, across files given in order. Plain or gzipped.

The symbol and market go in the stats as the recordings reader names them (`btcusdt`; Binance's
exchanges as `spot` / `usdm` / `coinm`, any other exchange by its Tardis id), from the rows'
`exchange,symbol`, the file name (`binance-futures_trades_2025-01-01_BTCUSDT.csv.gz`) and the
caller (`--symbol`, `--venue`), which must all agree. binance-delivery (COIN-M) amounts count contracts
and are turned into base units (data_loaders.coinm), as every Binance reader does.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from data_loaders import coinm
from data_loaders.csv_lines import (
    agreed,
    first_problem,
    head_lines,
    parse_float,
    parse_int,
    quarantine_rows,
    read_bytes,
    read_lines,
    split_fields,
    to_ns,
)
from data_loaders.order_book import ASK, BID, book_frame, rebuild_book, resample_book
from data_loaders.quarantine import Quarantine
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA, book_schema

COMMON = ["exchange", "symbol", "timestamp", "local_timestamp"]
TRADES_HEADER = [*COMMON, "id", "side", "price", "amount"]
INCREMENTAL_HEADER = [*COMMON, "is_snapshot", "side", "price", "amount"]
QUOTES_HEADER = [*COMMON, "ask_amount", "ask_price", "bid_price", "bid_amount"]
SIDES = {"buy": 1, "sell": -1, "unknown": None}  # the aggressor (liquidity taker) side


FILE_NAME = re.compile(
    r"(?P<exchange>[a-z0-9-]+)_[A-Za-z0-9_]+_\d{4}-\d{2}-\d{2}_(?P<symbol>.+?)\.csv(?:\.gz)?"
)
MARKETS = {"binance": "spot", "binance-futures": "usdm", "binance-delivery": "coinm"}
NAMES = "trades, quotes, book_snapshot_N or incremental_book_L2"  # the data types read here


def _market(exchange: str | None) -> str | None:
    return MARKETS.get(exchange, exchange) if exchange else None


def instrument(
    files: list[Path], rows: pl.DataFrame, symbol: str | None = None, market: str | None = None
) -> dict[str, str]:
    """{"symbol", "market"} from the rows' exchange and symbol, the file names and the caller; all must agree."""
    first = rows.row(0, named=True) if rows.height else {"symbol": None, "exchange": None}
    said = {"symbol": {"rows": first["symbol"]}, "market": {"rows": _market(first["exchange"])}}
    for f in files:
        found = FILE_NAME.fullmatch(Path(f).name)
        said["symbol"][Path(f).name] = found["symbol"] if found else None
        said["market"][Path(f).name] = _market(found["exchange"]) if found else None
    return {
        "symbol": agreed("symbol", "--symbol", {**said["symbol"], "--symbol": symbol}),
        "market": agreed("market", "--venue", {**said["market"], "--venue": market}),
    }


def _snapshot_header(depth: int) -> list[str]:
    levels = [
        f"{side}[{i}].{field}"
        for i in range(depth)
        for side in ("asks", "bids")
        for field in ("price", "amount")
    ]
    return [*COMMON, *levels]


def dataset(header: str) -> tuple[str, int] | None:
    """(data type, book depth) named by a Tardis CSV header line; None if it is not one we read."""
    names = header.strip().split(",")
    if names == TRADES_HEADER:
        return "trades", 0
    if names == QUOTES_HEADER:
        return "quotes", 0
    if names == INCREMENTAL_HEADER:
        return "incremental_book_L2", 0
    depth = (len(names) - len(COMMON)) // 4
    if depth > 0 and names == _snapshot_header(depth):
        return f"book_snapshot_{depth}", depth
    return None


def sniff(path: Path) -> bool:
    """Is this a Tardis.dev trades, quotes, book_snapshot_N or incremental_book_L2 CSV (plain or gzipped)?"""
    head = head_lines(path, n=1)
    return bool(head) and dataset(head[0]) is not None


def contents(path: Path) -> tuple[str, ...]:
    """The kind a Tardis file holds: trades, quotes, or a book (snapshots or incremental updates)."""
    head = head_lines(path, n=1)
    found = dataset(head[0]) if head else None
    if found is None:
        raise ValueError(f"{path}: not a Tardis.dev {NAMES} CSV")
    return (found[0],) if found[0] in ("trades", "quotes") else ("book",)


def _columns(kind: str, depth: int) -> list[str]:
    """A data type's fields, named as in its header."""
    if kind == "trades":
        return TRADES_HEADER
    if kind == "quotes":
        return QUOTES_HEADER
    if kind == "incremental_book_L2":
        return INCREMENTAL_HEADER
    return _snapshot_header(depth)


def _read_file(path: Path) -> tuple[str, int, pl.DataFrame]:
    """One file -> (data type, depth, rows with String fields, `file`, `line`, `text`, `n_fields`)."""
    data = read_bytes(path)
    header = data[: data.find(b"\n") if b"\n" in data else len(data)].decode(
        "utf-8", errors="replace"
    )
    found = dataset(header)
    if found is None:
        raise ValueError(f"{path}: not a Tardis.dev {NAMES} CSV")
    kind, depth = found
    rows = split_fields(read_lines(data).slice(1), _columns(kind, depth))
    return kind, depth, rows.with_columns(file=pl.lit(str(path)))


def _read_all(
    files: list[Path], kinds: tuple[str, ...], symbol: str | None, market: str | None
) -> tuple[str, int, pl.DataFrame, dict[str, str]]:
    """All files, checked to be one dataset: one data type and depth, one exchange and symbol
    (returned as {"symbol", "market"})."""
    read = [_read_file(Path(f)) for f in files]
    types = {(kind, depth) for kind, depth, _ in read}
    if len(types) > 1:
        raise ValueError(
            f"files of different Tardis data types cannot form one dataset: {sorted(types)}"
        )
    kind, depth = types.pop()
    if not kind.startswith(kinds):
        raise ValueError(f"{files[0]}: is a Tardis {kind} file, expected {' or '.join(kinds)}")
    rows = pl.concat([rows for _, _, rows in read])
    named = rows.filter(pl.col("n_fields") == len(_columns(kind, depth)))
    instruments = named.unique(["exchange", "symbol"], keep="first", maintain_order=True)
    if instruments.height > 1:
        (*a, fa, la), (*b, fb, lb) = instruments.select("exchange", "symbol", "file", "line").head(2).rows()
        raise ValueError(f"files hold several instruments, expected one: {fa}:{la} names {a}, {fb}:{lb} names {b}")
    return kind, depth, rows, instrument(files, instruments.select("exchange", "symbol"), symbol, market)


def _times() -> list[pl.Expr]:
    return [
        to_ns("timestamp", "us").alias("ts"),
        to_ns("local_timestamp", "us").alias("local_ts"),
    ]


def _field_checks(parsed: list[str]) -> list[tuple[str, pl.Expr]]:
    """Checks every data type makes after the field count: fields that parse, times in 2010..2100."""
    return [
        ("non_numeric", pl.any_horizontal(pl.col(name).is_null() for name in parsed)),
        ("bad_timestamp", pl.col("ts").is_null() | pl.col("local_ts").is_null()),
    ]


def _with_order_check(rows: pl.DataFrame) -> pl.DataFrame:
    """Flag good rows whose arrival time goes back against the good rows before them (across files)."""
    good = pl.col("problem").is_null()
    previous = pl.when(good).then(pl.col("local_ts")).cum_max().forward_fill().shift(1)
    late = first_problem(
        [("out_of_order", (good & (pl.col("local_ts") < previous)).fill_null(False))]
    )
    return rows.with_columns(pl.coalesce("problem", late).alias("problem"))


def read(kind: str, files: list[Path], *, quarantine: Quarantine, symbol: str | None = None,
         market: str | None = None, levels: int | None = None, every: str | None = None,
         on_gap: str = "flag") -> tuple[pl.DataFrame, dict]:
    """The reader protocol (data_loaders.formats): trades, or the book (resampled on `every`).
    binance-delivery (COIN-M) amounts are contracts, as Binance gives them: turned into base units."""
    if kind == "trades":
        trades, stats = _read_trades(files, quarantine, symbol, market)
        if stats["market"] == "coinm":
            trades = coinm.to_base(trades, stats["symbol"], [("qty", "price")])
        return trades, stats
    if kind == "quotes":
        quotes, stats = _read_quotes(files, quarantine, symbol, market)
        if stats["market"] == "coinm":
            quotes = coinm.to_base(quotes, stats["symbol"], [("bid_qty", "bid_px"), ("ask_qty", "ask_px")])
        return quotes, stats
    levels = levels or 10
    book, stats = _read_book(files, levels, quarantine, on_gap, symbol, market)
    if stats["market"] == "coinm":
        book = coinm.to_base(book, stats["symbol"], [(f"{side}_qty_{i}", f"{side}_px_{i}")
                                                     for side in ("bid", "ask") for i in range(1, levels + 1)])
    if every is not None:
        book, stats["ts_backwards"] = resample_book(book, every)
    return book, stats


def _read_trades(
    files: list[Path], quarantine: Quarantine, symbol: str | None = None, market: str | None = None
) -> tuple[pl.DataFrame, dict]:
    """Tardis trades CSV files -> TRADES_SCHEMA and stats {"symbol", "market"}.
    side: buy +1, sell -1, unknown null; an empty id is null."""
    if not files:
        raise ValueError("no input files")
    kind, depth, rows, stats = _read_all(files, ("trades",), symbol, market)
    rows = rows.with_columns(
        parse_int("timestamp"),
        parse_int("local_timestamp"),
        parse_float("price"),
        parse_float("amount"),
        pl.when(pl.col("id") == "")
        .then(None)
        .otherwise(pl.col("id").cast(pl.Int64, strict=False))
        .alias("trade_id"),
        pl.col("side").replace_strict(SIDES, default=None, return_dtype=pl.Int8).alias("sign"),
    ).with_columns(_times())
    problem = first_problem(
        [
            ("malformed", pl.col("n_fields") != len(_columns(kind, depth))),
            *_field_checks(["timestamp", "local_timestamp", "price", "amount"]),
            (
                "non_numeric",
                ((pl.col("id") != "") & pl.col("trade_id").is_null())
                | ~pl.col("side").is_in(list(SIDES)),
            ),
            ("non_positive", (pl.col("price") <= 0) | (pl.col("amount") <= 0)),
        ]
    )
    columns = ["ts", "local_ts", "trade_id", "price", pl.col("amount").alias("qty"), pl.col("sign").alias("side")]
    return _kept(rows, problem, quarantine, columns, TRADES_SCHEMA), stats


def _kept(rows: pl.DataFrame, problem: pl.Expr, quarantine: Quarantine, columns: list[str | pl.Expr],
          schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The rows without a problem (the arrival order checked across files too) as `columns` in `schema`;
    the others quarantined with their file and line."""
    rows = _with_order_check(rows.with_columns(problem))
    quarantine_rows(rows, quarantine)
    return rows.filter(pl.col("problem").is_null()).select(columns).cast(schema)


def _read_quotes(
    files: list[Path], quarantine: Quarantine, symbol: str | None = None, market: str | None = None
) -> tuple[pl.DataFrame, dict]:
    """Tardis quotes (or book_ticker) CSV files -> QUOTES_SCHEMA and stats {"symbol", "market"}.
    A row with an empty side (no bid or no ask), or crossed or locked, is quarantined, not guessed."""
    if not files:
        raise ValueError("no input files")
    _, _, rows, stats = _read_all(files, ("quotes",), symbol, market)
    fields = ["ask_amount", "ask_price", "bid_price", "bid_amount"]
    rows = rows.with_columns(pl.any_horizontal(pl.col(f) == "" for f in fields).alias("empty_side")).with_columns(
        parse_int("timestamp"), parse_int("local_timestamp"), *[parse_float(f) for f in fields]
    ).with_columns(_times())
    problem = first_problem(
        [
            ("malformed", pl.col("n_fields") != len(QUOTES_HEADER)),
            ("empty_side", pl.col("empty_side")),
            *_field_checks(["timestamp", "local_timestamp", *fields]),
            ("non_positive", pl.any_horizontal(pl.col(f) <= 0 for f in fields)),
            ("crossed", pl.col("bid_price") >= pl.col("ask_price")),
        ]
    )
    columns = ["ts", "local_ts", pl.lit(None, dtype=pl.Int64).alias("update_id"), pl.col("bid_price").alias("bid_px"),
               pl.col("bid_amount").alias("bid_qty"), pl.col("ask_price").alias("ask_px"),
               pl.col("ask_amount").alias("ask_qty")]
    return _kept(rows, problem, quarantine, columns, QUOTES_SCHEMA), stats


def _read_snapshots(
    rows: pl.DataFrame, depth: int, levels: int, quarantine: Quarantine
) -> tuple[pl.DataFrame, dict]:
    """book_snapshot_N rows -> book rows: level i from bids[i-1] / asks[i-1]; a level the file lacks stays null."""
    px = {s: [f"{s}[{i}].price" for i in range(depth)] for s in ("bids", "asks")}
    qty = {s: [f"{s}[{i}].amount" for i in range(depth)] for s in ("bids", "asks")}
    level_fields = _snapshot_header(depth)[len(COMMON) :]
    present = {name: pl.col(name).fill_null("") != "" for name in level_fields}
    rows = rows.with_columns(
        parse_int("timestamp"),
        parse_int("local_timestamp"),
        *(parse_float(name) for name in level_fields),
    ).with_columns(_times())
    garbled = pl.any_horizontal(present[n] & pl.col(n).is_null() for n in level_fields)
    half_level = pl.any_horizontal(
        present[p] != present[q] for s in px for p, q in zip(px[s], qty[s])
    )
    unsorted = pl.any_horizontal(
        [pl.lit(False)]  # a book_snapshot_1 has no pairs of levels to compare
        + [pl.col(a) >= pl.col(b) for a, b in zip(px["asks"], px["asks"][1:])]
        + [pl.col(a) <= pl.col(b) for a, b in zip(px["bids"], px["bids"][1:])]
    )
    problem = first_problem(
        [
            ("malformed", pl.col("n_fields") != len(_snapshot_header(depth))),
            *_field_checks(["timestamp", "local_timestamp"]),
            ("non_numeric", garbled | half_level),
            (
                "non_positive",
                pl.any_horizontal((pl.col(n) <= 0).fill_null(False) for n in level_fields),
            ),
            ("crossed", (pl.col(px["bids"][0]) >= pl.col(px["asks"][0])).fill_null(False)),
            ("unsorted_levels", unsorted.fill_null(False)),
        ]
    )
    rows = _with_order_check(rows.with_columns(problem))
    quarantine_rows(rows, quarantine)

    def level(columns: list[str], i: int) -> pl.Expr:
        return pl.col(columns[i - 1]) if i <= depth else pl.lit(None, dtype=pl.Float64)

    sources = {
        "bid_px": px["bids"],
        "bid_qty": qty["bids"],
        "ask_px": px["asks"],
        "ask_qty": qty["asks"],
    }
    book = (
        rows.filter(pl.col("problem").is_null())
        .select(
            "ts",
            "local_ts",
            pl.lit(None, dtype=pl.Int64).alias("update_id"),
            pl.lit(True).alias("in_sync"),
            *(
                level(sources[name], i).alias(f"{name}_{i}")
                for name in sources
                for i in range(1, levels + 1)
            ),
        )
        .cast(book_schema(levels))
    )
    stats = {
        "messages": rows.height,
        "snapshots": book.height,
        "crossed": rows.filter(pl.col("problem") == "crossed").height,
        "gaps": 0,  # every row is a whole top-N book: nothing carries over a bad row
        "out_of_sync_rows": 0,
        "skipped_before_snapshot": 0,
        "quarantined": rows.height - book.height,
        "rows": book.height,
    }
    return book, stats


def _parse_updates(rows: pl.DataFrame, quarantine: Quarantine) -> pl.DataFrame:
    """incremental_book_L2 rows -> the good level updates (quarantining the rest), in file order."""
    rows = rows.with_columns(
        parse_int("timestamp"),
        parse_int("local_timestamp"),
        parse_float("price"),
        parse_float("amount"),
        pl.col("is_snapshot").replace_strict(
            {"true": True, "false": False}, default=None, return_dtype=pl.Boolean
        ),
        pl.col("side")
        .replace_strict({"bid": BID, "ask": ASK}, default=None, return_dtype=pl.Int8)
        .alias("side_code"),
    ).with_columns(_times())
    problem = first_problem(
        [
            ("malformed", pl.col("n_fields") != len(INCREMENTAL_HEADER)),
            *_field_checks(
                ["timestamp", "local_timestamp", "price", "amount", "is_snapshot", "side_code"]
            ),
            (
                "non_positive",
                (pl.col("price") <= 0) | (pl.col("amount") < 0),
            ),  # amount 0 deletes the level
        ]
    )
    rows = _with_order_check(rows.with_columns(problem))
    quarantine_rows(rows, quarantine)
    return rows.filter(pl.col("problem").is_null())


def _read_incremental(
    rows: pl.DataFrame, levels: int, quarantine: Quarantine, on_gap: str
) -> tuple[pl.DataFrame, dict]:
    """incremental_book_L2 -> one book row per message (the rows sharing a local_timestamp), via the shared kernel.

    A run of is_snapshot rows after other rows replaces the book (Tardis: a new day or a reconnect);
    rows before the first snapshot are skipped and counted, as Tardis documents. A book that comes
    out crossed has missed updates: its rows are in_sync=false until the next snapshot (a gap).
    """
    updates = _parse_updates(rows, quarantine)
    started = updates.filter(pl.col("is_snapshot").cast(pl.Int8).cum_max() == 1)
    skipped = updates.height - started.height
    new_message = (pl.col("local_ts") != pl.col("local_ts").shift(1)) | (
        pl.col("is_snapshot") != pl.col("is_snapshot").shift(1)
    )
    started = started.with_columns(
        message=new_message.fill_null(True).cum_sum() - 1
    ).with_row_index("row")
    messages = (
        started.group_by("message", maintain_order=True)
        .agg(
            start=pl.col("row").first(),
            end=pl.col("row").last() + 1,
            ts=pl.col("ts").last(),
            local_ts=pl.col("local_ts").last(),
            is_snapshot=pl.col("is_snapshot").first(),
            file=pl.col("file").last(),
            line=pl.col("line").last(),
            text=pl.col("text").last(),
        )
        .with_columns(
            reset=pl.col("is_snapshot") & ~pl.col("is_snapshot").shift(1).fill_null(False),
            # a snapshot spread over several messages is shown only once complete
            emit=~(pl.col("is_snapshot") & pl.col("is_snapshot").shift(-1).fill_null(False)),
        )
        .with_columns(segment=pl.col("reset").cum_sum())
    )
    arrays = rebuild_book(
        messages["start"].to_numpy(),
        messages["end"].to_numpy(),
        started["side_code"].to_numpy(),
        started["price"].to_numpy(),
        started["amount"].to_numpy(),
        levels,
        reset=messages["reset"].to_numpy(),
        emit=messages["emit"].to_numpy(),
    )
    emitted = messages[arrays.position].with_columns(crossed=pl.Series(arrays.crossed))
    emitted = emitted.with_columns(in_sync=~pl.col("crossed").cum_max().over("segment"))
    crossed = emitted.filter(pl.col("crossed")).with_columns(problem=pl.lit("crossed"))
    if on_gap == "error" and crossed.height:
        first = crossed.row(0, named=True)
        raise ValueError(
            f"{first['file']}:{first['line']}: book crossed (missed updates) and on_gap=error"
        )
    quarantine_rows(crossed, quarantine)
    no_ids = pl.repeat(None, emitted.height, dtype=pl.Int64, eager=True)
    book = book_frame(arrays, emitted["ts"], emitted["local_ts"], no_ids, emitted["in_sync"])
    stats = {
        "messages": messages.height,
        "snapshots": int(messages["reset"].sum()),
        "crossed": crossed.height,
        "gaps": crossed["segment"].n_unique(),
        "out_of_sync_rows": int((~emitted["in_sync"]).sum()),
        "skipped_before_snapshot": skipped,
        "quarantined": rows.height - updates.height,
        "updates_applied": started.height,  # rows = updates_applied + skipped_before_snapshot + quarantined
    }
    if on_gap == "drop":
        book = book.filter(pl.col("in_sync"))
    stats["rows"] = book.height
    return book, stats


def _read_book(
    files: list[Path],
    levels: int,
    quarantine: Quarantine,
    on_gap: str = "flag",
    symbol: str | None = None,
    market: str | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Tardis book_snapshot_N or incremental_book_L2 CSV files -> book rows with `levels` levels,
    and stats (with "symbol" and "market")."""
    if on_gap not in ("flag", "drop", "error"):
        raise ValueError(f"on_gap must be flag, drop or error, not {on_gap!r}")
    if not files:
        raise ValueError("no input files")
    kind, depth, rows, names = _read_all(
        files, ("book_snapshot", "incremental_book_L2"), symbol, market
    )
    if kind == "incremental_book_L2":
        book, stats = _read_incremental(rows, levels, quarantine, on_gap)
    else:
        book, stats = _read_snapshots(rows, depth, levels, quarantine)
    return book, {**names, **stats}
