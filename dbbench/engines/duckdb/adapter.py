"""DuckDB, embedded: one database file (`duckdb:///path/to/file.duckdb`), no server.

Tables (create.sql) take the Arrow schema's types as they are (TIMESTAMP_NS keeps nanoseconds). A
table's batches go in through one `INSERT ... SELECT` that scans them as an Arrow stream: one
transaction, so a failed load keeps none of its rows (and the table is not marked loaded); the
compaction, a CHECKPOINT, writes them to the file, so storage is measured on disk, not in the WAL.

Every query is DuckDB SQL (queries.sql): the as-of join of trades to quotes is its native ASOF
JOIN, the NBBO an ASOF JOIN of each quote to every venue's last quote, returns window functions.
Parameters are bound, never interpolated (times as ns integers through `make_timestamp_ns`).
DuckDB has no result cache, so every timed run is computed.
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
    TABLES,
    Engine,
    EngineError,
    LoadResult,
    Storage,
    Unsupported,
    identifier,
    plain_table,
)
from dbbench.engines.dialect import read_blocks, read_queries
from dbbench.queries import check_params

DDL = read_blocks(__package__, "create.sql")  # trades, quotes, dbbench_loaded
QUERIES = read_queries(__package__, "queries.sql")
LOADED = "dbbench_loaded"  # one row per table whose load was verified; a partial table has none


def statement(name: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The query text and the parameters it binds (DuckDB refuses parameters a statement does not name)."""
    text = QUERIES[name]
    if isinstance(text, Unsupported):
        raise NotImplementedError(f"duckdb: {name} unsupported: {text.reason}")
    return text, {k: v for k, v in check_params(params).items() if f"${k}" in text}


class DuckDB(Engine):
    name = "duckdb"
    compaction = "CHECKPOINT: the write-ahead log written into the database file"
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

    @classmethod
    def ready(cls, dsn: str) -> None:
        engine = cls(dsn)
        try:
            engine.conn.execute("SELECT 1").fetchall()
        finally:
            engine.close()

    def version(self) -> str:
        return f"DuckDB {duckdb.__version__} (embedded)"

    def settings(self) -> dict[str, Any]:
        (threads, memory), = self.conn.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')").fetchall()
        return {"engine": "DuckDB file, one table per dataset table, in load order", "ts": "TIMESTAMP_NS",
                "threads": threads, "memory_limit": memory, "result_cache": "none"}

    def create_schema(self) -> None:
        self.conn.execute(DDL[LOADED])
        for table in TABLES:
            self.conn.execute(f"DELETE FROM {LOADED} WHERE tbl = ?", [table])  # forgotten before replaced
            self.conn.execute(DDL[table])
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

    def compact(self, table: str) -> None:
        self.conn.execute("CHECKPOINT")

    def storage(self, table: str) -> Storage:
        """The table's blocks in the file (DuckDB's block size each) after the compaction's checkpoint. Small
        segments of several tables may share a block, which then counts for each: an upper bound."""
        (blocks, block_size), = self.conn.execute(
            "SELECT count(DISTINCT b), any_value((SELECT block_size FROM pragma_database_size() "
            "WHERE database_name = current_database())) "
            "FROM (SELECT unnest(list_prepend(block_id, additional_block_ids)) AS b "
            "      FROM pragma_storage_info(?) WHERE persistent AND block_id >= 0)", [identifier(table)]).fetchall()
        return Storage(int(blocks or 0) * int(block_size or 0),
                       "the table's blocks in the database file after a checkpoint (block size each; a block shared "
                       "with another table counts for both)")

    def drop(self) -> None:
        for table in (*TABLES, LOADED):
            self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.conn.execute("CHECKPOINT")

    def close(self) -> None:
        self.conn.close()
