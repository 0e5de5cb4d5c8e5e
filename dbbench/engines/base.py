"""The one small interface every engine module implements (ClickBench style: same questions, own dialect).

An engine's adapter module exposes a class that subclasses `Engine` and a module-level `QUERIES` dict
mapping every name in `QUERY_NAMES` to its dialect's text (or to an `Unsupported` with the reason),
read from the query file beside it, so that the dialects can be read side by side.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

QUERY_NAMES = (
    "avg_trade_volume",
    "vwap",
    "ohlcv_1m",
    "spread",
    "nbbo",
    "mid_returns",
    "exec_volatility",
    "asof_trades_quotes",
    "last_quote",
    "range_scan",
)

# The benchmark tables (ts in UTC nanoseconds; symbol and venue identify the instrument).
TRADES = pa.schema(
    [
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("symbol", pa.string()),
        ("venue", pa.string()),
        ("trade_id", pa.int64()),
        ("price", pa.float64()),
        ("qty", pa.float64()),
        ("side", pa.int8()),
    ]
)
QUOTES = pa.schema(
    [
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("symbol", pa.string()),
        ("venue", pa.string()),
        ("bid_px", pa.float64()),
        ("bid_qty", pa.float64()),
        ("ask_px", pa.float64()),
        ("ask_qty", pa.float64()),
    ]
)
TABLES = {"trades": TRADES, "quotes": QUOTES}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def identifier(name: str) -> str:
    """Table, database and column names are interpolated into SQL/q text: only plain identifiers pass."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid identifier {name!r}: letters, digits and _ only, not starting with a digit")
    return name


def plain_table(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """The batch as a table of exactly `schema`: columns in its order, dictionary columns (as
    `dbbench.dataset.iter_batches` reads symbol and venue) decoded to plain values."""
    return pa.Table.from_batches([batch]).select(schema.names).cast(schema)


@dataclass(frozen=True)
class Unsupported:
    """A query the dialect cannot express natively; never computed client-side in its place."""

    reason: str


class EngineError(RuntimeError):
    """A failure naming the engine, the step and what was done before it failed."""

    def __init__(self, engine: str, step: str, detail: str) -> None:
        super().__init__(f"{engine}: {step} failed: {detail}")
        self.engine, self.step, self.detail = engine, step, detail


@dataclass
class LoadResult:
    table: str
    rows: int
    bytes_in: int  # Arrow bytes handed to the engine
    seconds: float  # from the first row sent to the rows visible to a count, verified equal to those sent


@dataclass
class Sample:
    """One timed execution of a query: its answer, the client's seconds and the engine's own (None: not reported)."""

    frame: pl.DataFrame
    client_s: float
    server_s: float | None


@dataclass
class Storage:
    """A table's size on disk and what that figure counts (files, indexes, metadata), in words for the results."""

    bytes: int
    includes: str
    details: dict[str, int] = field(default_factory=dict)  # other sizes the engine reports (e.g. uncompressed)


class Engine(ABC):
    """Connect from a DSN, create the schema, bulk-load Arrow batches, compact, measure storage, answer named
    queries with their server-side time: the runner, `dbbench load` and `dbbench.servers` use only these methods.

    The lifecycle of one load: `warm_up` (outside every timing), `create_schema`, `load` per table (timed up
    to the rows visible to a count), `compact` per table (timed apart), then `storage` per table."""

    name: str  # "clickhouse", "influxdb", "kdb", "timescaledb" (or "postgresql" when falling back), "duckdb",
    # "arcticdb"
    # An engine inside this process (chDB, DuckDB, ArcticDB) says what closing and reopening it resets, for the
    # cold runs' method and the concurrency mode; None: a server, reached over a connection.
    in_process: str | None = None

    # What `compact` does, for the results (an engine whose load leaves its final layout says so).
    compaction = "none: the load leaves the data in the layout it is queried in"

    @classmethod
    def ready(cls, dsn: str) -> None:
        """Raise unless a real query on a fresh connection to `dsn` is answered (a listening port is not
        enough: PostgreSQL accepts connections on its port while it still refuses them, starting up)."""
        engine = cls(dsn)
        try:
            engine.version()
        finally:
            engine.close()

    @abstractmethod
    def version(self) -> str: ...

    def warm_up(self) -> None:
        """Pay once, before any timing, what the engine's first statement of a kind costs (an embedded engine
        loading its machinery), so that it is charged to no table's load or query."""

    @abstractmethod
    def create_schema(self) -> None:
        """Create (or recreate, empty) the trades and quotes tables."""

    @abstractmethod
    def load(self, table: str, batches: Iterable[pa.RecordBatch]) -> LoadResult:
        """Bulk-load batches into a table; verifies the row count afterwards."""

    @abstractmethod
    def loaded_rows(self) -> dict[str, int]:
        """Tables whose last load was verified, with their row counts."""

    _ready = False  # every table's load verified; a (re)load resets it

    def require_loaded(self, query: str) -> None:
        """A partial table is never queried: refuse until every table's load was verified."""
        if self._ready:
            return
        missing = set(TABLES) - set(self.loaded_rows())
        if missing:
            raise EngineError(self.name, f"query {query}", f"tables not (completely) loaded: {sorted(missing)}")
        self._ready = True

    @abstractmethod
    def query(self, name: str, params: dict[str, Any]) -> pl.DataFrame:
        """Run a named query of the suite with parameters; raises on Unsupported."""

    def compact(self, table: str) -> None:
        """Bring a loaded table to the layout it is queried and measured in (merges, compression, vacuum):
        timed apart from the load. Does nothing where the load leaves that layout (`compaction` says which)."""

    @abstractmethod
    def storage(self, table: str) -> Storage:
        """The table's bytes on disk (measured after `compact`) and what they include."""

    def server_time_method(self) -> str | None:
        """How `timed_query` gets the engine's own time, in words for the results; None: it reports none."""
        return None

    def timed_query(self, name: str, params: dict[str, Any]) -> Sample:
        """Run one query of the suite once: its answer, the client's seconds (the adapter call, the answer as a
        Polars frame included: what a user waits for) and the engine's own seconds (`server_time_method`)."""
        mark = self.server_mark(name, params)
        t0 = time.perf_counter()
        frame = self.query(name, params)
        client = time.perf_counter() - t0
        return Sample(frame, client, self.server_seconds(name, params, mark))

    def server_mark(self, name: str, params: dict[str, Any]) -> Any:
        """What `server_seconds` needs from before the timed execution (counters to subtract); None here."""
        return None

    def server_seconds(self, name: str, params: dict[str, Any], mark: Any) -> float | None:
        """The engine's own seconds for the execution `timed_query` just timed; None where it reports none."""
        return None

    @abstractmethod
    def drop(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def settings(self) -> dict[str, Any]:
        """What a reader of the results needs to know about how the engine was configured."""
        return {}
