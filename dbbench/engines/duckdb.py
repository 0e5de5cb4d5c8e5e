"""DuckDB, embedded: one database file (`duckdb:///path/to/file.duckdb`), no server.

Tables take the Arrow schema's types as they are: TIMESTAMP_NS (DuckDB keeps the recordings'
nanoseconds, where its TIMESTAMPTZ has microseconds), VARCHAR symbol and venue (DuckDB
dictionary-compresses them itself), BIGINT, DOUBLE, TINYINT. A table's batches go in through one
`INSERT ... SELECT` that scans them as an Arrow stream: one transaction, so a failed load keeps
none of its rows (and the table is not marked loaded); a CHECKPOINT afterwards writes them to the
file, so storage is measured on disk, not in the WAL.

Every query is DuckDB SQL: the as-of join of trades to quotes is its native ASOF JOIN, the NBBO
an ASOF JOIN of each quote to every venue's last quote, returns window functions. Parameters are
bound, never interpolated (times as ns integers through `make_timestamp_ns`). DuckDB has no
result cache, so every timed run is computed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from dbbench.engines.base import (
    QUERY_NAMES,
    TABLES,
    Engine,
    EngineError,
    LoadResult,
    Unsupported,
    identifier,
    plain_table,
)
from dbbench.queries import check_params

SQL_TYPES = {pa.timestamp("ns", tz="UTC"): "TIMESTAMP_NS", pa.string(): "VARCHAR", pa.int64(): "BIGINT",
             pa.float64(): "DOUBLE", pa.int8(): "TINYINT"}
LOADED = "dbbench_loaded"  # one row per table whose load was verified; a partial table has none

_T = "ts >= make_timestamp_ns($start) AND ts < make_timestamp_ns($end)"


def _floor(column: str, width_ns: int) -> str:
    """`column` floored to a multiple of width_ns, in ns. Not date_trunc or time_bucket: they round
    TIMESTAMP_NS to microseconds first, which put a trade at 00:00:59.999999999 in minute 00:01."""
    ns = f"epoch_ns({column})"
    return f"make_timestamp_ns({ns} - ({ns} % {width_ns} + {width_ns}) % {width_ns})"  # a floor before 1970 too


_MINUTE = _floor("ts", 60_000_000_000)
_MID_RETURNS = f"""
SELECT symbol, venue, second, mid, ln(mid / lag(mid) OVER w) AS ret
FROM (
    SELECT symbol, venue, {_floor("ts", 1_000_000_000)} AS second, arg_max((bid_px + ask_px) / 2, ts) AS mid
    FROM quotes WHERE {_T}
    GROUP BY ALL
)
WINDOW w AS (PARTITION BY symbol, venue ORDER BY second)
QUALIFY row_number() OVER w > 1"""

QUERIES: dict[str, str | Unsupported] = {
    "avg_trade_volume": f"""
SELECT symbol, venue, {_MINUTE} AS minute, count(*) AS trades, avg(qty) AS avg_qty
FROM trades WHERE {_T}
GROUP BY ALL
ORDER BY ALL""",
    "vwap": f"""
SELECT symbol, venue, minute, volume, pq / volume AS vwap,
       sum(pq) OVER w / sum(volume) OVER w AS vwap_range
FROM (
    SELECT symbol, venue, {_MINUTE} AS minute, sum(qty) AS volume, sum(price * qty) AS pq
    FROM trades WHERE {_T}
    GROUP BY ALL
)
WINDOW w AS (PARTITION BY symbol, venue)
ORDER BY symbol, venue, minute""",
    "ohlcv_1m": f"""
SELECT symbol, venue, {_MINUTE} AS minute,
       arg_min(price, (ts, trade_id)) AS open, max(price) AS high, min(price) AS low,
       arg_max(price, (ts, trade_id)) AS close, sum(qty) AS volume, count(*) AS trades
FROM trades WHERE {_T}
GROUP BY ALL
ORDER BY symbol, venue, minute""",
    "spread": f"""
SELECT symbol, venue, {_MINUTE} AS minute, count(*) AS quotes,
       avg(ask_px - bid_px) AS avg_spread, max(ask_px - bid_px) AS max_spread
FROM quotes WHERE {_T}
GROUP BY ALL
ORDER BY symbol, venue, minute""",
    # Each quote paired with every venue quoting in the range, each pair as-of joined to that venue's last
    # quote at or before the quote's ts (its own venue: itself); a venue with none yet drops out of the best.
    "nbbo": f"""
WITH q AS (SELECT symbol, venue, ts, bid_px, ask_px FROM quotes WHERE {_T})
SELECT u.symbol AS symbol, u.ts AS ts, u.venue AS venue, max(p.bid_px) AS best_bid, min(p.ask_px) AS best_ask
FROM (SELECT q.symbol, q.ts, q.venue, v.venue AS other FROM q CROSS JOIN (SELECT DISTINCT venue FROM q) v) u
ASOF JOIN q p ON u.symbol = p.symbol AND u.other = p.venue AND u.ts >= p.ts
GROUP BY ALL
ORDER BY symbol, ts, venue""",
    "mid_returns": _MID_RETURNS + "\nORDER BY symbol, venue, second",
    "exec_volatility": f"""
SELECT symbol, venue, {_floor('second', 60_000_000_000)} AS minute, count(*) AS returns,
       sqrt(sum(ret * ret)) AS realized_vol
FROM ({_MID_RETURNS})
GROUP BY ALL
ORDER BY symbol, venue, minute""",
    "asof_trades_quotes": f"""
SELECT t.symbol, t.venue, t.ts, t.trade_id, t.price, t.qty, t.side, q.bid_px, q.ask_px,
       2e4 * t.side * (t.price - (q.bid_px + q.ask_px) / 2) / ((q.bid_px + q.ask_px) / 2) AS eff_spread_bps
FROM (SELECT * FROM trades WHERE {_T}) t
ASOF JOIN (SELECT symbol, venue, ts, bid_px, ask_px FROM quotes WHERE {_T}) q
    ON t.symbol = q.symbol AND t.venue = q.venue AND t.ts >= q.ts
ORDER BY t.symbol, t.venue, t.ts, t.trade_id""",
    "last_quote": f"""
SELECT symbol, venue, ts, bid_px, bid_qty, ask_px, ask_qty
FROM quotes WHERE {_T}
QUALIFY row_number() OVER (PARTITION BY symbol, venue ORDER BY ts DESC) = 1
ORDER BY symbol, venue""",
    "range_scan": """
SELECT ts, symbol, venue, trade_id, price, qty, side
FROM trades WHERE symbol = $symbol AND ts >= make_timestamp_ns($scan_start) AND ts < make_timestamp_ns($scan_end)
ORDER BY venue, ts, trade_id""",
}
assert tuple(QUERIES) == QUERY_NAMES


def statement(name: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The query text and the parameters it binds (DuckDB refuses parameters a statement does not name)."""
    text = QUERIES[name]
    if isinstance(text, Unsupported):
        raise NotImplementedError(f"duckdb: {name} unsupported: {text.reason}")
    return text, {k: v for k, v in check_params(params).items() if f"${k}" in text}


class DuckDB(Engine):
    name = "duckdb"
    in_process = ("the database is closed and reopened (every connection of this process to it closed first, "
                  "so its buffer pool goes with it)")

    def __init__(self, dsn: str) -> None:
        if not dsn.startswith("duckdb://") or dsn == "duckdb://":
            raise ValueError("duckdb DSN must be duckdb:///path/to/file.duckdb")
        self.path = Path(dsn.removeprefix("duckdb://"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Connections to one file in one process share its database (DuckDB's instance cache): the
            # concurrency clients query the same data, each with its own connection.
            self.conn = duckdb.connect(str(self.path))
        except (duckdb.Error, OSError) as exc:
            raise EngineError(self.name, "connect", str(exc)) from exc

    def version(self) -> str:
        return f"DuckDB {duckdb.__version__} (embedded)"

    def settings(self) -> dict[str, Any]:
        (threads, memory), = self.conn.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')").fetchall()
        return {"engine": "DuckDB file, one table per dataset table, in load order", "ts": "TIMESTAMP_NS",
                "threads": threads, "memory_limit": memory, "result_cache": "none"}

    def create_schema(self) -> None:
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {LOADED} (tbl VARCHAR PRIMARY KEY, rows BIGINT NOT NULL)")
        for table, schema in TABLES.items():
            columns = ", ".join(f"{f.name} {SQL_TYPES[f.type]} NOT NULL" for f in schema)
            self.conn.execute(f"DELETE FROM {LOADED} WHERE tbl = ?", [table])  # forgotten before replaced
            self.conn.execute(f"CREATE OR REPLACE TABLE {table} ({columns})")
        self._ready = False

    def load(self, table: str, batches: Iterable[pa.RecordBatch]) -> LoadResult:
        """Replace the table's rows with the batches in one transaction; it counts as loaded only once
        its row count is verified."""
        schema = TABLES[identifier(table)]
        sent = {"rows": 0, "bytes": 0}

        def counted() -> Iterator[pa.RecordBatch]:
            for batch in batches:
                for part in plain_table(batch, schema).to_batches():
                    sent["rows"] += part.num_rows
                    sent["bytes"] += part.nbytes
                    yield part

        t0 = time.perf_counter()
        try:
            self.conn.execute(f"DELETE FROM {LOADED} WHERE tbl = ?", [table])
            stream = pa.RecordBatchReader.from_batches(schema, counted())
            self.conn.execute("BEGIN TRANSACTION")
            try:
                self.conn.execute(f"DELETE FROM {table}")
                self.conn.register("dbbench_stream", stream)
                self.conn.execute(f"INSERT INTO {table} SELECT {', '.join(schema.names)} FROM dbbench_stream")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            finally:
                self.conn.unregister("dbbench_stream")
            self.conn.execute("CHECKPOINT")
            (stored,), = self.conn.execute(f"SELECT count(*) FROM {table}").fetchall()
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            raise EngineError(self.name, f"load {table}", f"{sent['rows']:,} rows sent before the error "
                              f"(one transaction, rolled back: none of them kept): {exc}") from exc
        rows = sent["rows"]
        if stored != rows:
            raise EngineError(self.name, f"load {table}", f"sent {rows:,} rows but the table holds {stored:,}")
        seconds = time.perf_counter() - t0
        self.conn.execute(f"INSERT INTO {LOADED} VALUES (?, ?)", [table, rows])
        return LoadResult(table, rows, sent["bytes"], seconds)

    def loaded_rows(self) -> dict[str, int]:
        """Tables whose last load was verified, with their row counts."""
        try:
            return dict(self.conn.execute(f"SELECT tbl, rows FROM {LOADED}").fetchall())
        except duckdb.CatalogException:  # no schema created in this file yet
            return {}

    def query(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        sql, bound = statement(name, params)
        self.require_loaded(name)
        try:
            return pl.from_arrow(self.conn.sql(sql, params=bound).to_arrow_table())
        except duckdb.Error as exc:
            raise EngineError(self.name, f"query {name}", f"{type(exc).__name__}: {exc}") from exc

    def bytes_on_disk(self, table: str) -> int:
        """The table's blocks in the file (DuckDB's block size each) after the load's checkpoint. Small
        segments of several tables may share a block, which then counts for each: an upper bound."""
        (blocks, block_size), = self.conn.execute(
            "SELECT count(DISTINCT b), any_value((SELECT block_size FROM pragma_database_size() "
            "WHERE database_name = current_database())) "
            "FROM (SELECT unnest(list_prepend(block_id, additional_block_ids)) AS b "
            "      FROM pragma_storage_info(?) WHERE persistent AND block_id >= 0)", [identifier(table)]).fetchall()
        return int(blocks or 0) * int(block_size or 0)

    def drop(self) -> None:
        for table in (*TABLES, LOADED):
            self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.conn.execute("CHECKPOINT")

    def close(self) -> None:
        self.conn.close()
