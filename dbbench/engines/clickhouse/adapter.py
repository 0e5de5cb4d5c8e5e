"""ClickHouse: embedded chDB (`chdb:///path`, `chdb://memory`) or a server over HTTP (`http(s)://...`).

Tables (create.sql) are MergeTree ordered by (symbol, ts); the queries are in queries.sql. Batches go in as
Arrow (chDB pulls them all through one `INSERT ... SELECT FROM Python(stream)` of an Arrow stream;
a server gets `insert_arrow` per batch). The query result cache is off so every timed run is computed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
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
)
from dbbench.engines.dialect import fill, read_blocks, read_queries
from dbbench.queries import check_params

DDL = read_blocks(__package__, "create.sql")  # trades, quotes, dbbench_loads
QUERIES = read_queries(__package__, "queries.sql")
LOW_CARDINALITY = ("symbol", "venue")
LOADED = "dbbench_loads"  # load events (create.sql): the latest verified one per table counts
# chDB SELECTs: result cache off; Arrow output uncompressed (its lz4 default costs a decompression per
# answer) with LowCardinality as dictionaries (Polars Categorical, no per-row string copy).
SELECT_SETTINGS = ("use_query_cache = 0, output_format_arrow_compression_method = 'none', "
                   "output_format_arrow_low_cardinality_as_dictionary = 1")


# chDB is one embedded server per process, and concurrent queries from several threads corrupted
# results and crashed the Arrow conversion here (wrong timestamps, a Polars panic). Statements are
# therefore serialised: several chDB "clients" in one process queue on this lock, and a concurrency
# figure for chDB measures that queue, not parallel execution (the runner's results say so).
CHDB_LOCK = threading.Lock()


def _arrow_layout(schema: pa.Schema) -> pa.Schema:
    """The table's Arrow schema with its LowCardinality columns as dictionaries of strings: ClickHouse
    takes those as they are, and `dbbench.dataset.iter_batches` reads them so."""
    return pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in LOW_CARDINALITY else f
                      for f in schema])


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"fromUnixTimestamp64Nano(toInt64({int(value)}), 'UTC')"


def render(name: str, params: dict[str, Any]) -> str:
    """The query text with its parameters as literals (times as ns integers, the symbol quoted)."""
    text = QUERIES[name]
    if isinstance(text, Unsupported):
        raise NotImplementedError(f"clickhouse: {name} unsupported: {text.reason}")
    return fill(text, {k: _literal(v) for k, v in check_params(params).items()})


class ClickHouse(Engine):
    name = "clickhouse"
    compaction = ("OPTIMIZE TABLE ... FINAL where the table has more than one active part: the parts the insert "
                  "blocks made merged into one (ClickHouse merges in the background otherwise, so storage would depend "
                  "on when it is read); a single part is left as it is (FINAL would rewrite it for nothing)")

    def __init__(self, dsn: str) -> None:
        self._session: Any = None
        self.last_server_seconds: float | None = None  # chDB's own elapsed time of the last query of the suite
        self.last_tag: str | None = None  # the log_comment of the last query of the suite (see query_log_seconds)
        self._elapsed: float | None = None  # chDB's elapsed time of the last SELECT
        self._client: Any = None
        if dsn.startswith("chdb://"):
            import chdb.session

            path = dsn.removeprefix("chdb://")
            self._session = chdb.session.Session(":memory:" if path == "memory" else path)
            self.in_process = ("its sessions close, but chDB's embedded server lives on in this process, so its "
                               "in-memory caches (marks, uncompressed blocks) may survive")
            self._sql("CREATE DATABASE IF NOT EXISTS dbbench")
            self._sql("USE dbbench")
        elif dsn.startswith(("http://", "https://", "clickhouse://")):
            import clickhouse_connect

            try:
                self._client = clickhouse_connect.get_client(dsn=dsn, settings={"use_query_cache": 0})
            except Exception as exc:  # clickhouse-connect raises its own and urllib3's errors
                raise EngineError(self.name, "connect", str(exc)) from exc
        else:
            raise ValueError("clickhouse DSN must be chdb:///path, chdb://memory or http(s)://host:port/db")

    def _sql(self, sql: str, tag: str | None = None) -> pa.Table | None:
        """Run one statement; SELECTs come back as an Arrow table, logged in system.query_log (where the server
        keeps it) with `tag` as their log_comment."""
        select = sql.lstrip().startswith(("SELECT", "WITH"))
        if self._session is not None:
            if self._session._conn is None:
                raise ConnectionError("chDB session is closed")
            if not select:
                with CHDB_LOCK:
                    self._session.query(sql)
                return None
            settings = SELECT_SETTINGS + (f", log_comment = {_literal(tag)}" if tag else "")
            with CHDB_LOCK:
                result = self._session.query(f"{sql} SETTINGS {settings}", "Arrow")
            # Read the Arrow bytes in place, without a copy: chDB frees them with the result object (what
            # broke its "ArrowTable" format), so the buffer owns that object and keeps it alive.
            view = np.frombuffer(result.get_memview().view(), dtype=np.uint8)
            arrow = pa.foreign_buffer(view.ctypes.data, view.size, base=result)
            self._elapsed = float(result.elapsed())
            return pa.ipc.open_file(arrow).read_all()
        if select:
            return self._client.query_arrow(sql, settings={"log_comment": tag} if tag else None)
        self._client.command(sql)
        return None

    def _scalar(self, sql: str) -> Any:
        table = self._sql(sql)
        return table.column(0)[0].as_py()

    def version(self) -> str:
        kind = "chDB (embedded)" if self._session is not None else "server"
        return f"ClickHouse {self._scalar('SELECT version()')} {kind}"

    def warm_up(self) -> None:
        """chDB: read one row of each table's Arrow layout through the Python() table function that `load` uses,
        so that its first use is charged to no table's load."""
        if self._session is None:
            self._scalar("SELECT 1")
            return
        for schema in TABLES.values():
            layout = _arrow_layout(schema)
            row = pa.Table.from_pylist([{f.name: ("x" if pa.types.is_dictionary(f.type) else 0) for f in layout}],
                                       schema=schema).cast(layout)
            stream = pa.RecordBatchReader.from_batches(layout, row.to_batches())  # noqa: F841 (Python() finds it)
            self._scalar("SELECT count() FROM Python(stream)")

    def server_time_method(self) -> str:
        if self._session is not None:
            return "chDB result elapsed() of the timed execution (the engine records it)"
        return "system.query_log query_duration_ms of the timed execution (found by its unique log_comment)"

    def server_seconds(self, name: str, params: dict[str, Any], mark: Any) -> float | None:
        if self._session is not None:
            return self.last_server_seconds
        return self.query_log_seconds(self.last_tag)

    def query_log_seconds(self, tag: str | None) -> float | None:
        """query_duration_ms of the finished execution tagged `tag` (its log_comment) in system.query_log; None
        when there is none. Found by the tag, not by the text: the logged text is never the one rendered (chDB
        adds SETTINGS, clickhouse-connect also a FORMAT clause), so a lookup by text never matched."""
        if tag is None:
            return None
        self._sql("SYSTEM FLUSH LOGS")
        found = self._sql("SELECT query_duration_ms FROM system.query_log "
                          f"WHERE type = 'QueryFinish' AND log_comment = {_literal(tag)}")
        return found.column(0)[0].as_py() / 1e3 if found.num_rows else None

    def settings(self) -> dict[str, Any]:
        return {"engine": "MergeTree ORDER BY (symbol, ts)", "ts": "DateTime64(9, 'UTC')", "query_cache": "off"}

    def create_schema(self) -> None:
        self._sql(DDL[LOADED])
        for table in TABLES:  # unverified before dropped: a run killed in between never counts
            self._mark(table, verified=False, rows=0)
            self._sql(f"DROP TABLE IF EXISTS {table}")
            self._sql(DDL[table])
        self._ready = False

    def _mark(self, table: str, verified: bool, rows: int) -> None:
        self._sql(f"INSERT INTO {LOADED} (tbl, verified, rows) VALUES ('{table}', {verified}, {rows})")

    def load(self, table: str, batches: Iterable[pa.RecordBatch]) -> LoadResult:
        """Replace the table's rows with the batches; it counts as loaded only once its row count is verified.

        A failed load leaves a partial table whose latest `dbbench_loads` event is unverified: never
        queried, and emptied by the next load. chDB takes all the batches in one INSERT that pulls
        them as an Arrow stream, so reading the next batch overlaps writing the last (as in its own
        `INSERT ... SELECT FROM file()`) and parts are cut at its insert block size, not per batch."""
        schema = TABLES[identifier(table)]
        columns = ", ".join(schema.names)
        sent = {"rows": 0, "bytes": 0}
        layout = _arrow_layout(schema)

        def counted() -> Iterator[pa.RecordBatch]:
            for batch in batches:
                batch = batch.select(schema.names)
                if batch.schema == schema:  # plain strings: encoded here (the reader takes one layout)
                    batch = batch.cast(layout)
                sent["rows"] += batch.num_rows
                sent["bytes"] += batch.nbytes
                yield batch

        t0 = time.perf_counter()
        try:
            self._mark(table, verified=False, rows=0)
            self._sql(f"TRUNCATE TABLE {table}")
            if self._session is not None:
                stream = pa.RecordBatchReader.from_batches(layout, counted())  # noqa: F841 (Python() finds it by name)
                self._sql(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM Python(stream)")
            else:
                for batch in counted():
                    self._client.insert_arrow(table, pa.Table.from_batches([batch]))
            stored = self._count(table)
        except Exception as exc:
            raise EngineError(self.name, f"load {table}",
                              f"{sent['rows']:,} rows sent before the error: {exc}") from exc
        rows, bytes_in = sent["rows"], sent["bytes"]
        if stored != rows:
            raise EngineError(self.name, f"load {table}", f"sent {rows:,} rows but the table holds {stored:,}")
        seconds = time.perf_counter() - t0
        self._mark(table, verified=True, rows=rows)
        return LoadResult(table, rows, bytes_in, seconds)

    def _count(self, table: str) -> int:
        return int(self._scalar(f"SELECT count() FROM {identifier(table)}"))

    def loaded_rows(self) -> dict[str, int]:
        """Tables whose last load was verified, with their row counts."""
        table = self._sql(f"SELECT tbl, argMax(rows, at) FROM {LOADED} GROUP BY tbl HAVING argMax(verified, at)")
        return {t: int(n) for t, n in zip(table.column(0).to_pylist(), table.column(1).to_pylist())}

    def query(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        """The answer; the execution is tagged with a unique log_comment (`last_tag`) for its server time."""
        self.require_loaded(name)
        self.last_tag = f"dbbench-{uuid.uuid4().hex}"
        answer = pl.from_arrow(self._sql(render(name, params), self.last_tag))
        self.last_server_seconds = self._elapsed
        return answer

    def compact(self, table: str) -> None:
        if self._parts(table) > 1:
            self._sql(f"OPTIMIZE TABLE {identifier(table)} FINAL")

    def _parts(self, table: str) -> int:
        return int(self._scalar("SELECT count() FROM system.parts "
                                f"WHERE database = currentDatabase() AND table = '{identifier(table)}' AND active"))

    def storage(self, table: str) -> Storage:
        sql = (
            "SELECT sum(bytes_on_disk) FROM system.parts "
            f"WHERE database = currentDatabase() AND table = '{identifier(table)}' AND active"
        )
        return Storage(int(self._scalar(sql) or 0),
                       "the table's active MergeTree parts (column data, marks, primary index; system.parts), not "
                       "the parts a merge replaced, which ClickHouse deletes later")

    def drop(self) -> None:
        for table in (*TABLES, LOADED):
            self._sql(f"DROP TABLE IF EXISTS {table}")

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self._client is not None:
            self._client.close()
