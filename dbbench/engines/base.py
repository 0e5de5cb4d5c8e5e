"""The one small interface every engine module implements (ClickBench style: same questions, own dialect).

An engine's adapter module exposes a class that subclasses `Engine` and a module-level `QUERIES` dict
mapping every name in `QUERY_NAMES` to its dialect's text (or to an `Unsupported` with the reason),
read from the query file beside it, so that the dialects can be read side by side.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
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
    seconds: float


class Engine(ABC):
    """Connect from a DSN, create the schema, bulk-load Arrow batches, answer named queries."""

    name: str  # "clickhouse", "influxdb", "kdb", "timescaledb" (or "postgresql" when falling back), "duckdb",
    # "arcticdb"
    # An engine inside this process (chDB, DuckDB, ArcticDB) says what closing and reopening it resets, for the
    # cold runs' method and the concurrency mode; None: a server, reached over a connection.
    in_process: str | None = None

    @abstractmethod
    def version(self) -> str: ...

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

    @abstractmethod
    def bytes_on_disk(self, table: str) -> int: ...

    @abstractmethod
    def drop(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def settings(self) -> dict[str, Any]:
        """What a reader of the results needs to know about how the engine was configured."""
        return {}
