"""TimescaleDB through psycopg 3, or plain PostgreSQL (reported as `postgresql`) when the extension is absent.

Times are stored as bigint UTC nanoseconds: PostgreSQL's timestamptz keeps only microseconds and
the recordings have nanoseconds, and TimescaleDB partitions and buckets integer time natively
(`create_hypertable` on a bigint column, `time_bucket(bigint, bigint)`). Plain PostgreSQL gets the
same bucketing from a one-line SQL function (`ts - ts % width`, inlined by the planner), plus
btree (symbol, venue, ts) and BRIN (ts) indexes built after the data is in.

Loading is one binary `COPY ... FROM STDIN` per table. Each Arrow batch is encoded without a
Python loop over rows: rows whose symbol and venue have the same byte lengths have one layout, so
each such group (usually the whole batch) is one numpy structured array in COPY's binary row layout,
handed to psycopg as a memoryview. Batches go in slices of 64k rows, the next one read and encoded in
a thread while the server stores the last: the server is the bottleneck, not the client.

Answers are read with `COPY (query) TO STDOUT (FORMAT csv)` into one buffer, then `pl.read_csv` with
the answer's schema, with the parameters rendered as quoted literals by psycopg: no Python tuple per
row (reading a 150k-row as-of answer through `fetchall` cost more than 10% of the query). PostgreSQL
writes float8 in its shortest exact form, so the floats read back bit for bit. The server time of
that very COPY statement is in pg_stat_statements when the server preloads it (`statement()` gives
the text to look it up by: `server_seconds`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from dbbench.engines.base import (
    TABLES,
    Engine,
    EngineError,
    LoadResult,
    Storage,
    Unsupported,
    identifier,
    plain_table,
)
from dbbench.engines.dialect import fill, read_blocks, read_queries
from dbbench.queries import check_params

SQL_TYPES = {pa.timestamp("ns", tz="UTC"): "bigint", pa.string(): "text", pa.int64(): "bigint",
             pa.float64(): "double precision", pa.int8(): "smallint"}
COPY_TYPES = {"bigint": ">i8", "double precision": ">f8", "smallint": ">i2"}
# The Polars type of every answer column, by name (times stay bigint ns, as stored).
ANSWER_TYPES: dict[str, pl.DataType] = {
    **dict.fromkeys(["symbol", "venue"], pl.String()),
    **dict.fromkeys(["ts", "minute", "second", "trade_id", "trades", "quotes", "returns"], pl.Int64()),
    "side": pl.Int16(),
    **dict.fromkeys(["avg_qty", "volume", "vwap", "vwap_range", "open", "high", "low", "close", "avg_spread",
                     "max_spread", "best_bid", "best_ask", "mid", "ret", "realized_vol", "price", "qty",
                     "bid_px", "ask_px", "bid_qty", "ask_qty", "eff_spread_bps"], pl.Float64()),
}
COPY_SLICE_ROWS = 65_536  # rows encoded at a time while the server stores the previous ones
T = TypeVar("T")
DDL = read_blocks(__package__, "create.sql")  # trades, quotes, hypertable, bucket_function, indexes, dbbench_loaded
QUERIES = read_queries(__package__, "queries.sql")
LOADED = "dbbench_loaded"  # one row per table whose load was verified; a partial table has none
# Recorded with every result: the memory and parallelism settings a tuned profile changes (servers.py).
SERVER_SETTINGS = ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem",
                   "max_parallel_workers_per_gather", "max_parallel_workers")

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
_TRAILER = b"\xff\xff"


def copy_binary(batch: pa.RecordBatch, schema: pa.Schema) -> list[memoryview]:
    """COPY BINARY rows of a batch (no header), without a Python loop over rows: rows whose text values
    have the same byte lengths share one layout, so each such group (usually the whole batch) is one
    numpy structured array in COPY's row layout, text columns read in place from Arrow's data buffer."""
    if batch.num_rows == 0:
        return []
    table = plain_table(batch, schema).combine_chunks()
    nulls = [name for name in schema.names if table[name].null_count]
    if nulls:
        raise ValueError(f"null values in {nulls}: every column is NOT NULL")
    texts = [f.name for f in schema if SQL_TYPES[f.type] == "text"]
    widths = np.stack([pc.binary_length(table[name]).to_numpy() for name in texts], axis=1)  # (rows, texts)
    layouts = widths[:1] if (widths == widths[0]).all() else np.unique(widths, axis=0)
    return [_copy_rows(table if len(layouts) == 1 else table.filter(pa.array((widths == layout).all(axis=1))),
                       schema, dict(zip(texts, layout.tolist())))
            for layout in layouts]


def _copy_rows(part: pa.Table, schema: pa.Schema, widths: dict[str, int]) -> memoryview:
    """Rows whose text columns have these byte widths, as one buffer in COPY BINARY's row layout."""
    fields: list[tuple[str, Any]] = [("n", ">i2")]
    values: dict[str, Any] = {"n": len(schema)}
    for field in schema:
        column = part[field.name].combine_chunks()
        if field.name in widths:  # length, then the bytes (none for an empty string)
            width = values[f"{field.name}_len"] = widths[field.name]
            fields.append((f"{field.name}_len", ">i4"))
            if width:
                start = int(np.frombuffer(column.buffers()[1], np.int32, count=1, offset=4 * column.offset)[0])
                fields.append((field.name, f"S{width}"))
                values[field.name] = np.frombuffer(column.buffers()[2], f"S{width}", count=len(column), offset=start)
        else:
            if pa.types.is_timestamp(field.type):
                column = column.view(pa.int64())
            kind = COPY_TYPES[SQL_TYPES[field.type]]
            fields += [(f"{field.name}_len", ">i4"), (field.name, kind)]
            values[f"{field.name}_len"] = np.dtype(kind).itemsize
            values[field.name] = column.to_numpy()
    rows = np.empty(part.num_rows, dtype=np.dtype(fields))
    for name, value in values.items():
        rows[name] = value
    return memoryview(rows.view(np.uint8))


def _encoded(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[tuple[pa.RecordBatch, list[memoryview]]]:
    """Slices of COPY_SLICE_ROWS rows, each with its COPY rows: small enough that the server starts
    storing the first while the next is read and encoded."""
    for batch in batches:
        for start in range(0, batch.num_rows, COPY_SLICE_ROWS):
            part = batch.slice(start, COPY_SLICE_ROWS)
            yield part, copy_binary(part, schema)


def _ahead(items: Iterator[T]) -> Iterator[T]:
    """The same items, the next one computed in a thread meanwhile (Arrow, Parquet and numpy release the
    GIL): reading and encoding overlap sending."""
    done = object()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(next, items, done)
        while (item := future.result()) is not done:
            future = pool.submit(next, items, done)
            yield item


class TimescaleDB(Engine):
    name = "timescaledb"

    def __init__(self, dsn: str) -> None:
        try:
            self.conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:  # psycopg's message names host and port, never the password
            raise EngineError(self.name, "connect", str(exc)) from exc
        available = self._rows("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        self.timescale = bool(available)
        if self.timescale:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            self.reason = "timescaledb extension available"
        else:
            self.name = "postgresql"
            self.reason = ("timescaledb extension not available on this server: plain PostgreSQL "
                           "(never reported as TimescaleDB)")
        self.bucket = "time_bucket" if self.timescale else "dbbench_bucket"
        self.compaction = ("compress_chunk on every chunk, then VACUUM ANALYZE" if self.timescale else
                           "CREATE INDEX (btree (symbol, venue, ts), BRIN (ts)), then VACUUM ANALYZE")
        self.statements_reason = self._statements()

    def _statements(self) -> str | None:
        """None when pg_stat_statements can time each answer's COPY (the extension is created here if it
        is preloaded but missing), else why not: the server time then comes from EXPLAIN ANALYZE."""
        (preload,), = self._rows("SHOW shared_preload_libraries")
        if "pg_stat_statements" not in [lib.strip() for lib in preload.split(",")]:
            return "pg_stat_statements is not in shared_preload_libraries"
        try:
            if not self._rows("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"):
                self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        except psycopg.Error as exc:
            return f"CREATE EXTENSION pg_stat_statements failed: {exc}"
        (track,), = self._rows("SHOW pg_stat_statements.track_utility")
        return None if track == "on" else "pg_stat_statements.track_utility is off: COPY statements are not tracked"

    @classmethod
    def ready(cls, dsn: str) -> None:
        """`SELECT 1` on a fresh connection (the adapter's own would create extensions)."""
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1").fetchall()

    def _rows(self, sql: str, params: Any = None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def version(self) -> str:
        (server,), = self._rows("SHOW server_version")
        if not self.timescale:
            return f"PostgreSQL {server}"
        (ext,), = self._rows("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        return f"TimescaleDB {ext} on PostgreSQL {server}"

    def settings(self) -> dict[str, Any]:
        layout = ("hypertable (1-day chunks), compressed: segmentby symbol, venue; orderby ts"
                  if self.timescale else "heap + btree (symbol, venue, ts) + BRIN (ts)")
        server_time = ("pg_stat_statements" if self.statements_reason is None
                       else f"EXPLAIN ANALYZE ({self.statements_reason})")
        # current_setting gives SHOW's value with its unit (128MB); pg_settings' setting counts the unit's
        # blocks (16384 of 8kB), so `setting || unit` would read 16384kB
        rows = self._rows("SELECT name, current_setting(name), source FROM pg_settings WHERE name = ANY(%s) "
                          "ORDER BY name", (list(SERVER_SETTINGS),))
        return {"engine": self.name, "reason": self.reason, "layout": layout, "ts": "bigint UTC ns",
                "server_time": server_time, "server": {name: f"{value} ({source})" for name, value, source in rows}}

    def create_schema(self) -> None:
        self.conn.execute(DDL[LOADED])
        if not self.timescale:
            self.conn.execute(DDL["bucket_function"])
        for table in TABLES:
            self.conn.execute(f"DELETE FROM {LOADED} WHERE tbl = %s", (table,))  # forgotten before dropped
            self.conn.execute(f"DROP TABLE IF EXISTS {table}")
            self.conn.execute(DDL[table])
            if self.timescale:
                self.conn.execute(fill(DDL["hypertable"], {"table": table}))
        self._ready = False

    def load(self, table: str, batches: Iterable[pa.RecordBatch]) -> LoadResult:
        """Replace the table's rows: one binary COPY (one transaction: a failure keeps nothing), then count them.
        The table counts as loaded only once its row count is verified (indexes or compression: `compact`)."""
        schema = TABLES[identifier(table)]
        rows = bytes_in = 0
        t0 = time.perf_counter()
        try:
            self.conn.execute(f"DELETE FROM {LOADED} WHERE tbl = %s", (table,))
            self.conn.execute(f"TRUNCATE {table}")
            with (self.conn.cursor() as cur,
                  cur.copy(f"COPY {table} ({', '.join(schema.names)}) FROM STDIN (FORMAT BINARY)") as copy):
                copy.write(_HEADER)
                for part, buffers in _ahead(_encoded(batches, schema)):
                    for buffer in buffers:
                        copy.write(buffer)
                    rows += part.num_rows
                    bytes_in += part.nbytes
                copy.write(_TRAILER)
            (after,), = self._rows(f"SELECT count(*) FROM {table}")
        except (psycopg.Error, OSError) as exc:
            raise EngineError(self.name, f"load {table}", f"{rows:,} rows sent before the error "
                              f"(the COPY is one transaction: none kept): {exc}") from exc
        if after != rows:
            raise EngineError(self.name, f"load {table}", f"sent {rows:,} rows but the table holds {after:,}")
        seconds = time.perf_counter() - t0
        self.conn.execute(f"INSERT INTO {LOADED} VALUES (%s, %s)", (table, after))
        return LoadResult(table, rows, bytes_in, seconds)

    def compact(self, table: str) -> None:
        """What follows a bulk load: compression (TimescaleDB) or indexes (plain PostgreSQL), then VACUUM ANALYZE
        (the visibility map and the planner's statistics)."""
        table = identifier(table)
        try:
            if self.timescale:
                self.conn.execute(f"SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('{table}') c")
            else:
                self.conn.execute(fill(DDL["indexes"], {"table": table}))
            self.conn.execute(f"VACUUM ANALYZE {table}")
        except psycopg.Error as exc:
            raise EngineError(self.name, f"compact {table}", f"{type(exc).__name__}: {exc}") from exc

    def loaded_rows(self) -> dict[str, int]:
        """Tables whose last load was verified, with their row counts."""
        return dict(self._rows(f"SELECT tbl, rows FROM {LOADED}"))

    def statement(self, name: str, params: dict[str, Any]) -> str:
        """The exact text `query` sends (pg_stat_statements finds its server time by this text)."""
        text = QUERIES[name]
        if isinstance(text, Unsupported):
            raise NotImplementedError(f"{self.name}: {name} unsupported: {text.reason}")
        sql = psycopg.ClientCursor(self.conn).mogrify(fill(text, {"bucket": self.bucket}), check_params(params))
        return f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)"

    def query(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        statement = self.statement(name, params)
        received = bytearray()
        try:
            self.require_loaded(name)
            with self.conn.cursor() as cur, cur.copy(statement) as copy:
                for row in copy:  # one message per row: append and let it go (holding them all cost 3x the time)
                    received += row
        except psycopg.Error as exc:  # a dead server, a missing table: named with the step, no traceback
            raise EngineError(self.name, f"query {name}", f"{type(exc).__name__}: {exc}") from exc
        data = bytes(received)  # pl.read_csv takes bytes, not bytearray
        names = data[:data.index(b"\n")].decode().split(",")
        return pl.read_csv(data, schema={name: ANSWER_TYPES[name] for name in names})

    def server_time_method(self) -> str:
        if self.statements_reason is None:
            return "pg_stat_statements total_exec_time of the timed COPY (query) TO STDOUT (rows sent included)"
        return ("EXPLAIN (ANALYZE, TIMING OFF) planning + execution time of a separate execution (rows not sent): "
                + self.statements_reason)

    def server_mark(self, name: str, params: dict[str, Any]) -> tuple[int, float] | None:
        return self.statement_totals(self.statement(name, params)) if self.statements_reason is None else None

    def server_seconds(self, name: str, params: dict[str, Any], mark: tuple[int, float] | None) -> float | None:
        """pg_stat_statements' time of the timed COPY (None when another session ran the same text meanwhile,
        which it would count too); without it, EXPLAIN ANALYZE of the same query, run again."""
        if mark is None:
            return self.explain_seconds(name, params)
        calls, total = self.statement_totals(self.statement(name, params))
        return total - mark[1] if calls == mark[0] + 1 else None

    def statement_totals(self, statement: str) -> tuple[int, float]:
        """Calls and total execution seconds pg_stat_statements holds for this exact top-level statement
        text, run by this user in this database ((0, 0.0) before its first run)."""
        (calls, total_ms), = self._rows(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements "
            "WHERE toplevel AND query = %s AND userid = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
            "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())", (statement,))
        return int(calls), total_ms / 1e3

    def explain_seconds(self, name: str, params: dict[str, Any]) -> float:
        """Planning + execution time that PostgreSQL reports for the same query text and parameters."""
        text = fill(QUERIES[name], {"bucket": self.bucket})
        (plan,), = self._rows("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + text, check_params(params))
        plan = plan[0] if isinstance(plan, list) else plan
        return (plan["Planning Time"] + plan["Execution Time"]) / 1e3

    def storage(self, table: str) -> Storage:
        """Bytes after the compaction; on TimescaleDB also what the compressed chunks held before compression."""
        if not self.timescale:
            (value,), = self._rows("SELECT pg_total_relation_size(%s)", (identifier(table),))
            return Storage(int(value), "pg_total_relation_size: the heap, its indexes (btree, BRIN) and TOAST")
        (value,), = self._rows("SELECT hypertable_size(%s)", (identifier(table),))
        (before, after), = self._rows("SELECT coalesce(sum(before_compression_total_bytes), 0), "
                                      "coalesce(sum(after_compression_total_bytes), 0) "
                                      "FROM hypertable_compression_stats(%s)", (table,))
        uncompressed = int(value) - int(after) + int(before)  # compressed chunks counted as they were before
        return Storage(int(value), "hypertable_size: every chunk (compressed after the compaction), its indexes and "
                       "TOAST; uncompressed_bytes: the same with each compressed chunk counted as before compression",
                       {"uncompressed_bytes": uncompressed})

    def drop(self) -> None:
        for table in (*TABLES, LOADED):
            self.conn.execute(f"DROP TABLE IF EXISTS {table}")

    def close(self) -> None:
        self.conn.close()
