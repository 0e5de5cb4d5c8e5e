"""ArcticDB, embedded: Man Group's tick store on LMDB (`lmdb:///path/to/dir`, its own URI form), no server.

Layout: one library per table (`trades`, `quotes`) and, in it, one ArcticDB symbol per (symbol,
venue), named `SYMBOL@VENUE`, indexed by `ts` (nanoseconds, UTC), the symbol and venue kept as
columns. ArcticDB's query engine (QueryBuilder) buckets time only with `resample`, which runs over
one ArcticDB symbol's index and groups by nothing else, and its `groupby` takes a single column
with no time bucket: per-minute bars per (symbol, venue) are native only if each pair is its own
ArcticDB symbol. A query reads every pair in one `read_batch_and_join`, each pair through the
query's own QueryBuilder, the answers concatenated by ArcticDB (`concat`), symbol and venue
coming out as `first` of their columns: the whole answer is computed by ArcticDB.

What QueryBuilder cannot express is `Unsupported`, never computed on the client in its place: it
has filters, projections with + - * / abs, single-column groupby, resample with
sum/mean/min/max/count/first/last, date ranges, head/tail and concatenation, but no window
functions (lag, a group total beside each row), no logarithm or square root, and no join beyond
concatenation (no as-of join).

Loading: each batch is split by (symbol, venue), sorted by (ts, trade_id), and staged (`stage`);
then each pair's staged parts are finalized into one version. Parts that arrived in time order are
finalized as they are (`finalize_staged_data`), which keeps equal timestamps in (ts, trade_id)
order, so `first`/`last` of a bar break ties on trade_id as the suite requires; otherwise ArcticDB
sorts them (`sort_and_finalize_staged_data`, in memory), and its sort does not keep the order of
equal timestamps across parts (measured: it interleaves them), which an OHLCV answer's check would
then catch. The libraries are deleted and recreated at each load, so a failed load leaves nothing behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arcticdb
import pandas as pd
import polars as pl
import pyarrow as pa
from arcticdb import QueryBuilder, ReadRequest

from dbbench.engines.base import (
    QUERY_NAMES,
    TABLES,
    Engine,
    EngineError,
    LoadResult,
    Storage,
    Unsupported,
    identifier,
    plain_table,
)
from dbbench.queries import check_params

# ArcticDB logs each compaction at INFO on stderr, where dbbench's commands print their one-line summary.
arcticdb.config.set_log_level("WARN")
# Library with one symbol per table whose load was verified: its (symbol, venue) pairs, the row count as metadata.
# Queries read their pairs there: ArcticDB's list_symbols took a second on its first call after a load.
LOADED = "dbbench_loaded"
SORT_KEYS = {"trades": ["ts", "trade_id"], "quotes": ["ts"]}
SEPARATOR = "@"  # ArcticDB symbol names: SYMBOL@VENUE


@dataclass(frozen=True)
class Plan:
    """One query: the library read, the QueryBuilder each (symbol, venue) runs, the answer's columns in
    order (the ArcticDB index `ts` named as the query names it)."""

    table: str
    query: QueryBuilder
    columns: list[str]
    index: str = "ts"


def _range(start: int, end: int) -> QueryBuilder:
    """start <= ts < end: ArcticDB's date ranges include both ends, and its times are nanoseconds."""
    return QueryBuilder().date_range((pd.Timestamp(start, tz="UTC"), pd.Timestamp(end - 1, tz="UTC")))


def _labels() -> dict[str, tuple[str, str]]:
    return {"symbol": ("symbol", "first"), "venue": ("venue", "first")}


def _avg_trade_volume(p: dict[str, Any]) -> Plan:
    q = _range(p["start"], p["end"]).resample("1min").agg(
        {**_labels(), "trades": ("qty", "count"), "avg_qty": ("qty", "mean")})
    return Plan("trades", q, ["symbol", "venue", "minute", "trades", "avg_qty"], "minute")


def _ohlcv_1m(p: dict[str, Any]) -> Plan:
    q = _range(p["start"], p["end"]).resample("1min").agg(
        {**_labels(), "open": ("price", "first"), "high": ("price", "max"), "low": ("price", "min"),
         "close": ("price", "last"), "volume": ("qty", "sum"), "trades": ("price", "count")})
    return Plan("trades", q, ["symbol", "venue", "minute", "open", "high", "low", "close", "volume", "trades"],
                "minute")


def _spread(p: dict[str, Any]) -> Plan:
    q = _range(p["start"], p["end"])
    q = q.apply("spread", q["ask_px"] - q["bid_px"]).resample("1min").agg(
        {**_labels(), "quotes": ("spread", "count"), "avg_spread": ("spread", "mean"),
         "max_spread": ("spread", "max")})
    return Plan("quotes", q, ["symbol", "venue", "minute", "quotes", "avg_spread", "max_spread"], "minute")


def _last_quote(p: dict[str, Any]) -> Plan:
    q = _range(p["start"], p["end"]).tail(1)  # quotes are unique per (symbol, venue, ts): the last row is the one
    return Plan("quotes", q, ["symbol", "venue", "ts", "bid_px", "bid_qty", "ask_px", "ask_qty"])


def _range_scan(p: dict[str, Any]) -> Plan:
    q = _range(p["scan_start"], p["scan_end"])
    q = q[q["symbol"] == p["symbol"]]
    return Plan("trades", q, ["ts", "symbol", "venue", "trade_id", "price", "qty", "side"])


_NO_WINDOWS = "QueryBuilder has no window functions"
QUERIES: dict[str, Callable[[dict[str, Any]], Plan] | Unsupported] = {
    "avg_trade_volume": _avg_trade_volume,
    "vwap": Unsupported(f"vwap_range puts each (symbol, venue)'s whole-range VWAP beside every minute: {_NO_WINDOWS} "
                        "and no join to bring a group's total back to its rows"),
    "ohlcv_1m": _ohlcv_1m,
    "spread": _spread,
    "nbbo": Unsupported("carrying every venue's last quote onto each quote of the symbol is an as-of join across "
                        "ArcticDB symbols; QueryBuilder joins symbols only by concatenating them"),
    "mid_returns": Unsupported(f"ln(mid / previous second's mid) needs the previous row ({_NO_WINDOWS}: no lag) and "
                               "a logarithm (its arithmetic is + - * / abs and integer powers)"),
    "exec_volatility": Unsupported("built on mid_returns (no lag, no logarithm) and needs a square root, which "
                                   "QueryBuilder arithmetic does not have"),
    "asof_trades_quotes": Unsupported("an as-of join of trades to quotes; QueryBuilder joins symbols only by "
                                      "concatenating them"),
    "last_quote": _last_quote,
    "range_scan": _range_scan,
}
assert tuple(QUERIES) == QUERY_NAMES


def plan(name: str, params: dict[str, Any]) -> Plan:
    """The query's plan with its parameters (raises NotImplementedError for an unsupported query)."""
    build = QUERIES[name]
    if isinstance(build, Unsupported):
        raise NotImplementedError(f"arcticdb: {name} unsupported: {build.reason}")
    return build(check_params(params))


# LMDB must not be opened twice in one process (ArcticDB warns and data may be corrupted), so every
# adapter over one path shares one Arctic instance, released when the last of them closes.
_OPEN: dict[str, tuple[arcticdb.Arctic, int]] = {}
_OPEN_LOCK = threading.Lock()


def _acquire(uri: str) -> arcticdb.Arctic:
    with _OPEN_LOCK:
        arctic, users = _OPEN.get(uri) or (arcticdb.Arctic(uri), 0)
        _OPEN[uri] = (arctic, users + 1)
        return arctic


def _release(uri: str) -> None:
    with _OPEN_LOCK:
        arctic, users = _OPEN.pop(uri)
        if users > 1:
            _OPEN[uri] = (arctic, users - 1)


class ArcticDB(Engine):
    name = "arcticdb"
    compaction = ("none: the load finalizes each (symbol, venue) as one version of its staged parts, earlier versions "
                  "pruned")
    in_process = ("the Arctic instance over the LMDB directory is released (every adapter of this process over it "
                  "closed first) and opened again; LMDB's pages stay in the OS page cache")

    def __init__(self, dsn: str) -> None:
        if not dsn.startswith("lmdb://") or dsn == "lmdb://":
            raise ValueError("arcticdb DSN must be lmdb:///path/to/dir (ArcticDB's LMDB URI)")
        self.uri = dsn
        try:
            Path(dsn.removeprefix("lmdb://").split("?")[0]).mkdir(parents=True, exist_ok=True)
            self.arctic = _acquire(dsn)
        except Exception as exc:  # ArcticDB raises its own and LMDB's errors
            raise EngineError(self.name, "connect", f"{type(exc).__name__}: {exc}") from exc
        self._closed = False

    def _library(self, name: str) -> Any:
        return self.arctic.get_library(name, create_if_missing=True)

    @classmethod
    def ready(cls, dsn: str) -> None:
        engine = cls(dsn)
        try:
            engine.arctic.list_libraries()
        finally:
            engine.close()

    def version(self) -> str:
        return f"ArcticDB {arcticdb.__version__} (embedded, LMDB)"

    def settings(self) -> dict[str, Any]:
        return {"engine": "LMDB; a library per table, an ArcticDB symbol per (symbol, venue), indexed by ts",
                "ts": "timestamp index, ns UTC", "queries": "QueryBuilder (read_batch_and_join, concat)",
                "result_cache": "none"}

    def create_schema(self) -> None:
        for table in TABLES:
            self._recreate(table)
        self._ready = False

    def _recreate(self, table: str) -> None:
        """An empty library for the table, its staged data and verified load gone with the old one."""
        loaded = self._library(LOADED)
        if loaded.has_symbol(table):
            loaded.delete(table)
        if self.arctic.has_library(table):
            self.arctic.delete_library(table)
        self.arctic.create_library(table)

    def load(self, table: str, batches: Iterable[pa.RecordBatch]) -> LoadResult:
        """Replace the table's data: stage each batch's (symbol, venue) parts, finalize each pair, then
        verify the row count ArcticDB reports; only then does the table count as loaded."""
        schema = TABLES[identifier(table)]
        rows = bytes_in = 0
        last: dict[str, pd.Timestamp] = {}  # pair -> latest ts staged so far
        ordered: dict[str, bool] = {}  # pair -> its parts arrived in time order
        t0 = time.perf_counter()
        try:
            self._recreate(table)
            library = self._library(table)
            for batch in batches:
                frame = pl.from_arrow(plain_table(batch, schema)).sort(SORT_KEYS[table])
                for (symbol, venue), part in frame.partition_by("symbol", "venue", as_dict=True).items():
                    pair = self._pair(symbol, venue)
                    data = part.to_pandas().set_index("ts")
                    ordered[pair] = ordered.get(pair, True) and (pair not in last or data.index[0] >= last[pair])
                    last[pair] = data.index[-1]
                    library.stage(pair, data)
                rows += batch.num_rows
                bytes_in += batch.nbytes
            for pair, in_order in ordered.items():
                finalize = library.finalize_staged_data if in_order else library.sort_and_finalize_staged_data
                finalize(pair, prune_previous_versions=True)
            stored = sum(d.row_count for d in library.get_description_batch(list(ordered)))
        except Exception as exc:  # ArcticDB, LMDB and the batch source raise their own
            raise EngineError(self.name, f"load {table}", f"{rows:,} rows sent before the error "
                              f"(nothing finalized is kept: the library is recreated at each load): {exc}") from exc
        if stored != rows:
            raise EngineError(self.name, f"load {table}", f"sent {rows:,} rows but the library holds {stored:,}")
        seconds = time.perf_counter() - t0
        self._library(LOADED).write(table, pd.DataFrame({"pair": sorted(ordered)}), metadata={"rows": rows})
        return LoadResult(table, rows, bytes_in, seconds)

    def _pair(self, symbol: str, venue: str) -> str:
        if SEPARATOR in symbol or SEPARATOR in venue:
            raise ValueError(f"symbol {symbol!r} or venue {venue!r} holds {SEPARATOR!r}, which names ArcticDB "
                             "symbols here (SYMBOL@VENUE)")
        return f"{symbol}{SEPARATOR}{venue}"

    def loaded_rows(self) -> dict[str, int]:
        """Tables whose last load was verified, with their row counts."""
        library = self._library(LOADED)
        return {t: int(library.read_metadata(t).metadata["rows"]) for t in library.list_symbols()}

    def query(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        p = plan(name, params)
        self.require_loaded(name)
        try:
            pairs = self._library(LOADED).read(p.table, output_format="polars").data["pair"].to_list()
            # Concatenated in (symbol, venue) order, the answers' order: not the text order of SYMBOL@VENUE,
            # which puts "BTC1@b" before "BTC@a".
            pairs.sort(key=lambda pair: pair.split(SEPARATOR))
            library = self._library(p.table)
            requests = [ReadRequest(pair, query_builder=p.query) for pair in pairs]
            joined = library.read_batch_and_join(requests, query_builder=QueryBuilder().concat("inner"),
                                                 output_format="polars").data
        except Exception as exc:  # ArcticDB raises its own
            raise EngineError(self.name, f"query {name}", f"{type(exc).__name__}: {exc}") from exc
        return joined.rename({"ts": p.index}).select(p.columns)

    def storage(self, table: str) -> Storage:
        """Compressed bytes of every object ArcticDB keeps for the table's library (data, indexes, versions):
        LMDB's file also holds pages freed after staging, which it reuses but never returns."""
        sizes = self._library(identifier(table)).admin_tools().get_sizes()
        return Storage(sum(size.bytes_compressed for size in sizes.values()),
                       "compressed bytes of every object ArcticDB keeps for the table's library (data, indexes, "
                       "versions), not LMDB's free pages")

    def drop(self) -> None:
        for library in (*TABLES, LOADED):
            if self.arctic.has_library(library):
                self.arctic.delete_library(library)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            del self.arctic
            _release(self.uri)
