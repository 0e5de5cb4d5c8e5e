"""Engines, one folder per database (ClickBench style); `connect` imports only the one asked for.

`dbbench/engines/<engine>/` holds `adapter.py`, which defines one `Engine` subclass whose constructor
takes the DSN, and beside it the dialect's files a reader can open and diff: the DDL (`create.sql`,
`create.q`, `create.influxql`) and the suite's queries (`queries.sql`, `.influxql`, `.flux`, `.q`;
read by `dbbench.engines.dialect`). ArcticDB has no query language: its queries stay in its adapter.
A DSN comes from the caller, else from `default_dsn`. DSNs may hold passwords: print them only
through `data_loaders.redact.redact`.
"""

from __future__ import annotations

import importlib
import os

from dbbench.engines.base import Engine

ENGINES = ("clickhouse", "influxdb", "kdb", "timescaledb", "duckdb", "arcticdb")
DEFAULT_DSNS = {
    "clickhouse": "chdb:///" + os.path.abspath(".dbbench/chdb").lstrip("/"),
    "influxdb": "http://127.0.0.1:8086/dbbench",
    "kdb": "kdb://127.0.0.1:5001",
    "timescaledb": "postgresql://postgres@127.0.0.1:55432/postgres",
    "duckdb": "duckdb:///" + os.path.abspath(".dbbench/duckdb/dbbench.duckdb").lstrip("/"),
    "arcticdb": "lmdb:///" + os.path.abspath(".dbbench/arcticdb").lstrip("/"),
}


def default_dsn(engine: str) -> str:
    """$DBBENCH_<ENGINE>_DSN, else the server `dbbench servers up` started, else DEFAULT_DSNS."""
    from dbbench.servers import read_state

    started = read_state().get(engine)
    return os.environ.get(f"DBBENCH_{engine.upper()}_DSN") or (started.dsn if started else DEFAULT_DSNS[engine])


def adapter(engine: str) -> type[Engine]:
    """The engine's adapter class (its module imported now: only the drivers of the engines used load)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    module = importlib.import_module(f"dbbench.engines.{engine}.adapter")
    classes = [v for v in vars(module).values()
               if isinstance(v, type) and issubclass(v, Engine) and v.__module__ == module.__name__]
    if len(classes) != 1:
        raise RuntimeError(f"{module.__name__} must define exactly one Engine subclass, found {classes}")
    return classes[0]


def connect(engine: str, dsn: str | None = None) -> Engine:
    """The engine's adapter, connected to `dsn` (or its default)."""
    return adapter(engine)(dsn or default_dsn(engine))
