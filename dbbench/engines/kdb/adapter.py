"""kdb+ through pykx over IPC to a running q process (no embedded q: pykx runs unlicensed here).

Batches go over IPC in chunks (`insert`) into in-memory tables typed up front (create.q) and the row
count is verified; the compaction then saves each table splayed (symbols enumerated against one sym
file) under the q process's directory `dir`, which is what the storage figure measures. Queries are q-SQL with
`xbar` bars, `wavg`, and `aj` as-of joins (queries.q); every query is a q lambda over its
parameters so that the dialects can be read side by side.

DSN: `kdb://[user:password@]host:port[?dir=PATH&chunk=ROWS]`, or KDB_HOST / KDB_PORT (and
KDB_USER / KDB_PASSWORD) when the DSN is just `kdb://`. `dir` defaults to `dbbench_db`, relative
to the q process's working directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

os.environ.setdefault("PYKX_UNLICENSED", "true")  # before pykx is imported anywhere: IPC needs no license

import polars as pl
import pyarrow as pa

from dbbench.engines.base import TABLES, Engine, EngineError, LoadResult, Storage, identifier, plain_table
from dbbench.engines.dialect import read_blocks, read_queries
from dbbench.queries import check_params, exact_cast

Q_EPOCH_NS = 946_684_800_000_000_000  # q timestamps count ns from 2000.01.01

DDL = read_blocks(__package__, "create.q")  # trades, quotes: empty typed tables
QUERIES = read_queries(__package__, "queries.q")  # lambdas of [S;E;SYM;SS;SE]
LOADED = ".dbbench.loaded"  # table -> verified row count, in the q process

_TYPES = {"side": pl.Int8, "trades": pl.Int64, "quotes": pl.Int64, "returns": pl.Int64, "trade_id": pl.Int64}


def q_timestamp(ns: int) -> str:
    """A q timestamp literal for UTC ns since 1970: `2024.08.09D00:00:00.000000000`."""
    day, rest = divmod(int(ns), 86_400_000_000_000)
    date = pl.Series([day], dtype=pl.Int32).cast(pl.Date).item()
    hours, rest = divmod(rest, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds, nanos = divmod(rest, 1_000_000_000)
    return f"{date:%Y.%m.%d}D{hours:02d}:{minutes:02d}:{seconds:02d}.{nanos:09d}"


def q_symbol(text: str) -> str:
    """A q symbol literal for any string: `$"..." with quotes and backslashes escaped."""
    return '`$"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(name: str, params: dict[str, Any]) -> str:
    """The query applied to its parameters as literals: one q expression to send."""
    p = check_params(params)
    args = [q_timestamp(p["start"]), q_timestamp(p["end"]), q_symbol(p["symbol"]), q_timestamp(p["scan_start"]),
            q_timestamp(p["scan_end"])]
    return f"{QUERIES[name]}[{';'.join(args)}]"


def save_splayed(table: str, directory: str) -> str:
    """q text that saves a table splayed under `directory` (symbols enumerated into directory/sym)."""
    return f'(hsym `$"{directory}/{identifier(table)}/") set .Q.en[hsym `$"{directory}"] {table}'


def disk_bytes(table: str, directory: str) -> str:
    """q text: bytes of the table's splayed column files plus the shared sym file."""
    return (f'{{[d;t] f:` sv\' p,\'key p:hsym `$d,"/",t; sum hcount each f,hsym `$d,"/sym"}}'
            f'["{directory}";"{identifier(table)}"]')


class Kdb(Engine):
    name = "kdb"
    compaction = "the in-memory table saved splayed under the q process's directory (symbols enumerated)"

    def __init__(self, dsn: str, *, chunk_rows: int | None = None, timeout_s: float = 600.0) -> None:
        url = urlsplit(dsn)
        if url.scheme != "kdb":
            raise ValueError("kdb DSN must be kdb://[user:password@]host:port[?dir=PATH&chunk=ROWS] "
                             "(or kdb:// with KDB_HOST/KDB_PORT)")
        options = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.host = url.hostname or os.environ.get("KDB_HOST")
        port = url.port or os.environ.get("KDB_PORT")
        if not self.host or not port:
            raise ValueError("kdb DSN needs host:port (or KDB_HOST and KDB_PORT)")
        self.port = int(port)
        self.dir = options.get("dir", "dbbench_db")
        if any(c in self.dir for c in '"\\\n'):
            raise ValueError(f"kdb dir {self.dir!r} must not contain quotes, backslashes or newlines")
        self.chunk_rows = int(chunk_rows or options.get("chunk", 500_000))
        import pykx as kx

        self._kx = kx
        user = unquote(url.username) if url.username else os.environ.get("KDB_USER", "")
        password = unquote(url.password) if url.password else os.environ.get("KDB_PASSWORD", "")
        try:
            self._conn = kx.SyncQConnection(host=self.host, port=self.port, username=user, password=password,
                                            timeout=timeout_s)
        except Exception as exc:
            raise EngineError(self.name, "connect", f"{self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:  # never the credentials
        return f"Kdb({self.host}:{self.port}, dir={self.dir})"

    def _q(self, text: str, step: str, *args: Any) -> Any:
        try:
            return self._conn(text, *args)
        except Exception as exc:
            raise EngineError(self.name, step, f"{type(exc).__name__}: {exc}") from exc

    def version(self) -> str:
        return (f"kdb+ {self._q('string .z.K', 'version').py().decode()} "
                f"{self._q('string .z.k', 'version').py().decode()}")

    def settings(self) -> dict[str, Any]:
        return {"storage": f"splayed tables under {self.dir} (symbols enumerated)", "chunk_rows": self.chunk_rows}

    def create_schema(self) -> None:
        self._q(f"{LOADED}:(`symbol$())!`long$()", "create schema")  # verified loads forgotten first
        for table in TABLES:
            self._q(f"{table}:{DDL[table]}", "create schema")
        self._ready = False

    def load(self, table: str, batches: Iterable[pa.RecordBatch]) -> LoadResult:
        """Insert chunks over IPC and verify the count (saving it splayed is the compaction)."""
        schema = TABLES[identifier(table)]
        kx = self._kx
        rows = bytes_in = 0
        t0 = time.perf_counter()
        self._q(f"{LOADED}:(enlist `{table}) _ {LOADED}", f"load {table}")
        before = int(self._q(f"count {table}", f"count {table}").py())
        for batch in batches:
            arrow = plain_table(batch, schema)
            if "side" in schema.names:  # q has no signed byte: side travels as a short
                arrow = arrow.set_column(arrow.schema.get_field_index("side"), "side", arrow["side"].cast(pa.int16()))
            for start in range(0, arrow.num_rows, self.chunk_rows):
                chunk = arrow.slice(start, self.chunk_rows)
                try:
                    self._conn("{[t;x] t insert update symbol:`$symbol, venue:`$venue from x}", kx.SymbolAtom(table),
                               kx.toq(chunk))
                except Exception as exc:
                    raise EngineError(self.name, f"load {table}",
                                      f"{rows:,} rows loaded before the error: {type(exc).__name__}: {exc}") from exc
                rows += chunk.num_rows
            bytes_in += batch.nbytes
        stored = int(self._q(f"count {table}", f"count {table}").py()) - before
        if stored != rows:
            raise EngineError(self.name, f"load {table}", f"sent {rows:,} rows but the table holds {stored:,} more")
        self._q(f"{LOADED},:(enlist `{table})!enlist {before + rows}", f"load {table}")
        return LoadResult(table, rows, bytes_in, time.perf_counter() - t0)

    def loaded_rows(self) -> dict[str, int]:
        """Tables whose last load was verified, with their row counts."""
        loaded = self._q(f"$[`loaded in key `.dbbench; {LOADED}; ()!()]", "loaded tables").py()
        return {str(k): int(v) for k, v in loaded.items()}

    def query(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        self.require_loaded(name)
        answer = self._q(render(name, params), f"query {name}")
        return _typed(pl.from_arrow(answer.pa()))

    def compact(self, table: str) -> None:
        self._q(save_splayed(table, self.dir), f"save {table}")

    def storage(self, table: str) -> Storage:
        return Storage(int(self._q(disk_bytes(table, self.dir), f"bytes on disk {table}").py()),
                       f"the table's splayed column files under {self.dir} plus the shared sym file")

    def drop(self) -> None:
        for table in TABLES:
            self._q(f"delete {table} from `.", "drop")
        self._q(f'{{if[not ()~key d:hsym `$x; hdel each ` sv\' d,\'key d; hdel d]}} '
                f'each ("{self.dir}/trades";"{self.dir}/quotes")', "drop")
        self._q(f'{{if[not ()~key f:hsym `$x; hdel f]}} "{self.dir}/sym"', "drop")
        self._q(f"{LOADED}:(`symbol$())!`long$()", "drop")
        self._ready = False

    def close(self) -> None:
        self._conn.close()


def _typed(frame: pl.DataFrame) -> pl.DataFrame:
    """q timestamps arrive as naive ns datetimes and symbols as categoricals: UTC datetimes and strings;
    shorts and longs as the suite's integers by `exact_cast` (a value that does not fit is an error)."""
    columns = []
    for col, dtype in frame.schema.items():
        column = frame[col]
        if isinstance(dtype, pl.Datetime):
            column = column.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
        elif isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype == pl.Binary:
            column = column.cast(pl.String)
        columns.append(exact_cast(column, _TYPES[col]) if col in _TYPES else column)
    return pl.DataFrame(columns, schema=[(c.name, c.dtype) for c in columns])
