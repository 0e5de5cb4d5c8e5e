"""The query suite: parameters, the Polars reference answer of every query, and the comparison.

The reference is the truth: every engine's answer is compared with it each time it runs, and a
mismatch is a failure, never a timed success. Definitions are written precisely so that four
dialects can agree on every row:

- Time is UTC nanoseconds. Every query reads only rows with `start <= ts < end`; nothing before
  `start` is carried in (a quote from before the range does not prevail inside it).
- `minute` / `second` columns are the bucket start: `ts` floored to the minute / second.
- Trades tie-break on `trade_id` (first/last trade of a bar is the one with the smallest/largest
  (ts, trade_id)). Quotes are unique per (symbol, venue, ts) — the dataset step guarantees it —
  so "the last quote at or before t" is always one row.
- Answers come in the query's order, `SORT_KEYS` (unique in every answer), and are compared strictly
  (`compare`): column names, order and types (a count is an integer, a price a Float64, a time a
  Datetime("ns", "UTC"), through the declared exact conversions of `_normalise` only), row order,
  integers, strings and times equal, floats within `REL_TOL` relative (`ABS_TOL` absolute for returns).
  An empty range answers no rows, with the same columns and types.

Queries (columns in order):

- `avg_trade_volume`: symbol, venue, minute, trades (count), avg_qty (mean traded quantity).
- `vwap`: symbol, venue, minute, volume (sum qty), vwap (sum(price*qty)/sum(qty) in the minute),
  vwap_range (the same over the whole range, per symbol and venue, repeated on each row).
- `ohlcv_1m`: symbol, venue, minute, open, high, low, close, volume, trades.
- `spread`: symbol, venue, minute, quotes (count), avg_spread, max_spread (ask_px - bid_px, price units).
- `nbbo`: symbol, ts, venue, best_bid, best_ask — one row per quote update (the quote's ts and
  venue); best_bid is the highest and best_ask the lowest of each venue's last quote at or before
  ts (same symbol, every venue that has quoted in the range so far, including quotes at ts itself).
- `mid_returns`: symbol, venue, second, mid, ret — the 1-second mid is the mid ((bid+ask)/2) of the
  last quote in that second; seconds without a quote have no row; ret = ln(mid / previous row's
  mid) of the same symbol and venue; the first sampled second of each symbol and venue has no
  previous mid and no row.
- `exec_volatility`: symbol, venue, minute, returns (count of mid_returns rows whose second falls
  in the minute), realized_vol = sqrt(sum(ret^2)) (not annualised).
- `asof_trades_quotes`: symbol, venue, ts, trade_id, price, qty, side, bid_px, ask_px,
  eff_spread_bps = 2e4 * side * (price - mid) / mid with mid = (bid_px + ask_px) / 2 of the
  prevailing quote: the last quote of the same symbol and venue with quote ts <= trade ts.
  Trades with no prevailing quote in the range are left out (an inner as-of join).
- `last_quote`: symbol, venue, ts, bid_px, bid_qty, ask_px, ask_qty — the latest quote in the range.
- `range_scan`: ts, symbol, venue, trade_id, price, qty, side — every trade of `symbol` (all venues)
  with `scan_start <= ts < scan_end` (a 5-minute window).

Windows (TSBS style: a query asks about a window, not the whole history). Aggregates answer a few
rows per minute, so they run over the dataset's whole range. The per-row queries (`ROW_QUERIES`:
nbbo, mid_returns, asof_trades_quotes) answer about one row per input row, which at 100 million
rows would be tens of millions of rows to transfer, convert and check; they run over a window of
whole minutes in the middle of the dataset holding about `WINDOW_ROWS` trades+quotes (estimated
from the manifest's rows per minute; the whole range when the dataset is smaller), so their
answers stay bounded as the dataset grows. `default_params` gives the window as
`window_start`/`window_end`; `params_for(name, params)` gives the `start`/`end` each query runs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dbbench.dataset import describe, scan_table
from dbbench.engines.base import QUERY_NAMES

MINUTE_NS = 60_000_000_000
SCAN_NS = 5 * MINUTE_NS
# Floats: |got - expected| <= REL_TOL * |expected| (+ ABS_TOL[column] where named). Engines sum in their own
# order: a few ulps per term, ~1e-16 relative for sums of positive terms, so 1e-9 leaves room for sums of
# millions of rows and still fails any wrong row (a tick is 1e-4 relative or more; 4 for 4.9 is 0.18).
# No absolute floor elsewhere: with prices of 1e-8 one would hide a wrong price. Returns are near zero and
# carry an absolute error: InfluxQL computes ret as ln(mid) - ln(previous mid), exact within a few ulps of
# ln(mid) (about 4e-15 at a mid of 1e9 or 1e-8), so ret and realized_vol may differ by 1e-12 absolute.
REL_TOL = 1e-9
ABS_TOL = {"ret": 1e-12, "realized_vol": 1e-12}

SORT_KEYS: dict[str, list[str]] = {
    "avg_trade_volume": ["symbol", "venue", "minute"],
    "vwap": ["symbol", "venue", "minute"],
    "ohlcv_1m": ["symbol", "venue", "minute"],
    "spread": ["symbol", "venue", "minute"],
    "nbbo": ["symbol", "ts", "venue"],
    "mid_returns": ["symbol", "venue", "second"],
    "exec_volatility": ["symbol", "venue", "minute"],
    "asof_trades_quotes": ["symbol", "venue", "ts", "trade_id"],
    "last_quote": ["symbol", "venue"],
    "range_scan": ["venue", "ts", "trade_id"],
}
assert tuple(SORT_KEYS) == QUERY_NAMES

PARAM_KEYS = ("start", "end", "symbol", "scan_start", "scan_end")
ROW_QUERIES = ("nbbo", "mid_returns", "asof_trades_quotes")  # one answer row per input row: asked about a window
WINDOW_ROWS = 250_000  # trades+quotes in the window of the ROW_QUERIES


def default_params(data: Path) -> dict[str, Any]:
    """The whole dataset's range (whole minutes), its first symbol, the first 5 minutes for range_scan,
    and the window of the per-row queries (whole minutes in the middle, about WINDOW_ROWS rows)."""
    manifest = describe(data)
    start = manifest["min_ts"] // MINUTE_NS * MINUTE_NS
    end = (manifest["max_ts"] // MINUTE_NS + 1) * MINUTE_NS
    minutes = (end - start) // MINUTE_NS
    rows = sum(manifest.get("rows", {}).values()) or WINDOW_ROWS
    window = min(minutes, max(1, minutes * WINDOW_ROWS // rows))
    window_start = start + (minutes - window) // 2 * MINUTE_NS
    return {
        "start": start,
        "end": end,
        "symbol": min(manifest["symbols"]),
        "scan_start": start,
        "scan_end": start + SCAN_NS,
        "window_start": window_start,
        "window_end": window_start + window * MINUTE_NS,
    }


def params_for(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters query `name` runs with: the per-row queries over the window (when `params` has one),
    the others over `start`/`end` as given."""
    if name in ROW_QUERIES and "window_start" in params:
        return {**params, "start": params["window_start"], "end": params["window_end"]}
    return params


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Engines interpolate these into query text: times must be ints (ns), the symbol a plain str."""
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"query parameters missing: {missing}")
    checked: dict[str, Any] = {k: int(params[k]) for k in ("start", "end", "scan_start", "scan_end")}
    if not isinstance(params["symbol"], str):
        raise TypeError(f"symbol must be a string, got {params['symbol']!r}")
    checked["symbol"] = params["symbol"]
    return checked


def _in_range(frame: pl.LazyFrame, p: dict[str, Any]) -> pl.LazyFrame:
    ts = pl.col("ts").dt.epoch("ns")
    return frame.filter((ts >= p["start"]) & (ts < p["end"]))


def _minute(col: str = "ts") -> pl.Expr:
    return pl.col(col).dt.truncate("1m").alias("minute")


def _mid_returns(quotes: pl.LazyFrame) -> pl.LazyFrame:
    seconds = (
        quotes.with_columns(pl.col("ts").dt.truncate("1s").alias("second"))
        .group_by("symbol", "venue", "second")
        .agg(((pl.col("bid_px") + pl.col("ask_px")) / 2).sort_by("ts").last().alias("mid"))
        .sort("symbol", "venue", "second")
    )
    ret = (pl.col("mid") / pl.col("mid").shift(1).over("symbol", "venue")).log()
    return seconds.with_columns(ret.alias("ret")).drop_nulls("ret")


def reference(name: str, data: Path, params: dict[str, Any]) -> pl.DataFrame:
    """The true answer of one query on the dataset directory `data` (Parquet, read lazily)."""
    p = check_params(params)
    trades = _in_range(scan_table(data, "trades"), p)
    quotes = _in_range(scan_table(data, "quotes"), p)
    keys = ["symbol", "venue", "minute"]
    match name:
        case "avg_trade_volume":
            out = trades.group_by("symbol", "venue", _minute()).agg(
                pl.len().cast(pl.Int64).alias("trades"), pl.col("qty").mean().alias("avg_qty")
            )
        case "vwap":
            per_minute = trades.group_by("symbol", "venue", _minute()).agg(
                pl.col("qty").sum().alias("volume"), (pl.col("price") * pl.col("qty")).sum().alias("pq")
            )
            out = per_minute.select(
                *keys,
                "volume",
                (pl.col("pq") / pl.col("volume")).alias("vwap"),
                (pl.col("pq").sum() / pl.col("volume").sum()).over("symbol", "venue").alias("vwap_range"),
            )
        case "ohlcv_1m":
            price = pl.col("price").sort_by("ts", "trade_id")
            out = trades.group_by("symbol", "venue", _minute()).agg(
                price.first().alias("open"),
                pl.col("price").max().alias("high"),
                pl.col("price").min().alias("low"),
                price.last().alias("close"),
                pl.col("qty").sum().alias("volume"),
                pl.len().cast(pl.Int64).alias("trades"),
            )
        case "spread":
            spread = pl.col("ask_px") - pl.col("bid_px")
            out = quotes.group_by("symbol", "venue", _minute()).agg(
                pl.len().cast(pl.Int64).alias("quotes"), spread.mean().alias("avg_spread"),
                spread.max().alias("max_spread"),
            )
        case "nbbo":
            out = _nbbo(quotes)
        case "mid_returns":
            out = _mid_returns(quotes)
        case "exec_volatility":
            out = _mid_returns(quotes).group_by("symbol", "venue", _minute("second")).agg(
                pl.len().cast(pl.Int64).alias("returns"), (pl.col("ret") ** 2).sum().sqrt().alias("realized_vol")
            )
        case "asof_trades_quotes":
            joined = trades.sort("ts").join_asof(
                quotes.sort("ts").select("ts", "symbol", "venue", "bid_px", "ask_px"),
                on="ts",
                by=["symbol", "venue"],
                strategy="backward",
                check_sortedness=False,  # sorted by ts; Polars cannot check it per group
            )
            mid = (pl.col("bid_px") + pl.col("ask_px")) / 2
            out = joined.drop_nulls("bid_px").select(
                "symbol", "venue", "ts", "trade_id", "price", "qty", "side", "bid_px", "ask_px",
                (2e4 * pl.col("side") * (pl.col("price") - mid) / mid).alias("eff_spread_bps"),
            )
        case "last_quote":  # sort_by inside the aggregation streams; sorting the whole range first would not
            columns = ["ts", "bid_px", "bid_qty", "ask_px", "ask_qty"]
            out = quotes.group_by("symbol", "venue").agg(pl.col(columns).sort_by("ts").last())
        case "range_scan":
            ts = pl.col("ts").dt.epoch("ns")
            out = (
                scan_table(data, "trades")
                .filter((pl.col("symbol") == p["symbol"]) & (ts >= p["scan_start"]) & (ts < p["scan_end"]))
                .select("ts", "symbol", "venue", "trade_id", "price", "qty", "side")
            )
        case _:
            raise ValueError(f"unknown query {name!r}; known: {', '.join(QUERY_NAMES)}")
    # The streaming engine: whole-range aggregates over 100 million rows never hold the input in memory.
    return out.sort(SORT_KEYS[name]).collect(engine="streaming")


def _nbbo(quotes: pl.LazyFrame) -> pl.LazyFrame:
    """Carry each venue's last bid/ask forward along each symbol's time line, then take the best."""
    venues = quotes.select(pl.col("venue").unique().sort()).collect(engine="streaming")["venue"].to_list()
    ordered = quotes.sort("symbol", "ts", "venue")
    if not venues:  # an empty range: no quotes, no rows (the best of no venues is undefined)
        return ordered.select("symbol", "ts", "venue", best_bid=pl.col("bid_px"), best_ask=pl.col("ask_px"))
    carried = [
        pl.when(pl.col("venue") == v).then(pl.col(side)).forward_fill().over("symbol").alias(f"{side}_{i}")
        for i, v in enumerate(venues)
        for side in ("bid_px", "ask_px")
    ]
    state = ordered.with_columns(carried)
    # Quotes of several venues at the same ts all prevail at ts: use the state after the last of them.
    best = state.group_by("symbol", "ts").agg(
        pl.max_horizontal([pl.col(f"bid_px_{i}").last() for i in range(len(venues))]).alias("best_bid"),
        pl.min_horizontal([pl.col(f"ask_px_{i}").last() for i in range(len(venues))]).alias("best_ask"),
    )
    return ordered.select("symbol", "ts", "venue").join(best, on=["symbol", "ts"], how="left")


def exact_cast(column: pl.Series, dtype: pl.DataType) -> pl.Series:
    """`column` as `dtype` only where every value survives unchanged (4 stays 4, 4.9 never becomes 4,
    2**62 + 1 never goes through a float): a driver's representation, never a rounding."""
    cast = column.cast(dtype, strict=False)
    back = cast.cast(column.dtype, strict=False)
    lost = (back != column).fill_null(True) & column.is_not_null()
    if lost.any():
        i = lost.arg_true()[0]
        raise ValueError(f"column {column.name}: {column[i]!r} ({column.dtype}) is not exactly a {dtype}")
    return cast


def _normalise(column: pl.Series, dtype: pl.DataType) -> pl.Series:
    """The answer's column in the contract's type by one of the declared, exact conversions below (each
    a driver's way of handing over the same values); any other type is a wrong answer, never cast:
    - dictionary-encoded strings (ClickHouse LowCardinality, as Polars Categorical) -> String;
    - integers of another width or signedness (ClickHouse count() is UInt64, PostgreSQL's smallest integer
      is smallint) -> the contract's integer, only if every value fits exactly;
    - times as Int64 ns since the epoch (TimescaleDB stores bigint ns) or as ns datetimes without a zone
      (DuckDB TIMESTAMP_NS, UTC by contract) or in another zone -> Datetime("ns", "UTC").
    A float where an integer is due, an integer where a float is due, a time in us: refused."""
    got = column.dtype
    if got == dtype:
        return column
    if dtype == pl.String and isinstance(got, (pl.Categorical, pl.Enum)):
        return column.cast(pl.String)
    if dtype.is_integer() and got.is_integer():
        return exact_cast(column, dtype)
    if dtype == pl.Datetime("ns", "UTC"):
        if got == pl.Int64:
            return pl.from_epoch(column, time_unit="ns").dt.replace_time_zone("UTC")
        if got == pl.Datetime("ns"):
            return column.dt.replace_time_zone("UTC")
        if isinstance(got, pl.Datetime) and got.time_unit == "ns":
            return column.dt.convert_time_zone("UTC")
    raise TypeError(f"column {column.name}: {got} where {dtype} is due")


def _in_contract(answer: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame([_normalise(answer[c], t) for c, t in reference.schema.items()])


def as_contract(answer: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    """The answer in the reference's types where `_normalise` converts every column exactly (times as UTC
    datetimes, whatever the engine's driver gave), so every engine's answer prints alike; else as it came."""
    if answer.columns != reference.columns:
        return answer
    try:
        return _in_contract(answer, reference)
    except (TypeError, ValueError):
        return answer


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rows: int
    expected_rows: int
    detail: str  # "" when ok, else the first difference found

    def __str__(self) -> str:
        if self.ok:
            return f"correct ({self.rows} rows, floats within rel {REL_TOL:g}, abs {ABS_TOL} near zero)"
        return f"WRONG: {self.detail}"


def compare(answer: pl.DataFrame, reference: pl.DataFrame, query: str) -> Verdict:
    """Strictly: the same columns in the same order, each of the reference's type (or one of `_normalise`'s
    exact conversions), the same rows in the query's order (`SORT_KEYS`), integers, strings and times
    equal, floats within REL_TOL relative (ABS_TOL absolute for the columns it names)."""
    n, expected = answer.height, reference.height
    if answer.columns != reference.columns:
        return Verdict(False, n, expected, f"columns {answer.columns} != expected {reference.columns}")
    try:
        got = _in_contract(answer, reference)
    except (TypeError, ValueError) as exc:
        return Verdict(False, n, expected, f"wrong type: {exc}")
    if n != expected:
        return Verdict(False, n, expected, f"{n} rows, expected {expected}")
    keys = SORT_KEYS[query]
    want = reference.sort(keys)
    if not got.select(keys).equals(want.select(keys)) and got.sort(keys).select(keys).equals(want.select(keys)):
        return Verdict(False, n, expected, f"rows are not in the query's order (by {', '.join(keys)})")
    for name, dtype in want.schema.items():
        a, b = got[name], want[name]
        if (a.is_null() != b.is_null()).any():
            return Verdict(False, n, expected, f"column {name}: nulls differ")
        if dtype.is_float():
            close = (a == b) | ((a - b).abs() <= REL_TOL * b.abs() + ABS_TOL.get(name, 0.0))
            bad = ~close.fill_null(True)
        else:
            bad = (a != b).fill_null(False)
        if bad.any():
            i = bad.arg_true()[0]
            row = {k: want[k][i] for k in keys}
            return Verdict(False, n, expected, f"column {name} at {row}: got {a[i]!r}, expected {b[i]!r}")
    return Verdict(True, n, expected, "")
