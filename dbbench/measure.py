"""Timing: summary statistics, and one timed execution with the engine's own (server-side) time.

Client time is the wall time of the adapter call, Arrow/rows to a Polars frame included: what a
user of the engine waits for. Server time is what the engine says it spent, where it says it:

- chDB: the query result's `elapsed()`, from the very execution that was timed (it includes writing
  the Arrow answer, uncompressed: see clickhouse.SELECT_SETTINGS; the adapter reads it in place).
- ClickHouse server: `system.query_log` `query_duration_ms` of that execution (ms resolution).
- PostgreSQL/TimescaleDB: planning + execution time of `EXPLAIN (ANALYZE, TIMING OFF)`, a
  separate execution right after the timed one (no pg_stat_statements on a scratch server).
- InfluxDB 1.x and kdb+ through these adapters: none reported (`server_s` is None).

Client minus server time is the harness overhead (driver, transfer, conversion).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from dbbench.engines.base import Engine

SERVER_TIME_METHODS = {
    "chdb": "chDB result elapsed() of the timed execution (the engine records it)",
    "clickhouse": "system.query_log query_duration_ms of the timed execution",
    "postgresql": "EXPLAIN (ANALYZE, TIMING OFF) planning + execution time of a separate execution",
    "influxdb": None,
    "kdb": None,
}


def stats(samples: Sequence[float]) -> dict[str, float] | None:
    """min, median, mean, p95 (linear interpolation), max and n of seconds; None when empty."""
    if not samples:
        return None
    a = np.asarray(samples, dtype=np.float64)
    return {
        "n": int(a.size),
        "min": float(a.min()),
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


@dataclass
class Sample:
    frame: pl.DataFrame
    client_s: float
    server_s: float | None


def server_time_kind(engine: Engine) -> str:
    """Which server-time method applies to this adapter (a key of SERVER_TIME_METHODS)."""
    if engine.name == "clickhouse":
        return "chdb" if getattr(engine, "_session", None) is not None else "clickhouse"
    if engine.name in ("timescaledb", "postgresql"):
        return "postgresql"
    return engine.name


def server_time_method(engine: Engine) -> str | None:
    return SERVER_TIME_METHODS.get(server_time_kind(engine))


def timed_query(engine: Engine, name: str, params: dict[str, Any]) -> Sample:
    """Run one query of the suite once: its answer, client seconds and server seconds (or None)."""
    kind = server_time_kind(engine)
    t0 = time.perf_counter()
    frame = engine.query(name, params)
    client = time.perf_counter() - t0
    if kind == "chdb":
        return Sample(frame, client, engine.last_server_seconds)
    if kind == "postgresql":
        return Sample(frame, client, _pg_explain(engine, name, params))
    if kind == "clickhouse":
        return Sample(frame, client, _clickhouse_log(engine, name, params))
    return Sample(frame, client, None)


def _pg_explain(engine: Any, name: str, params: dict[str, Any]) -> float:
    """Planning + execution time that PostgreSQL reports for the same query text and parameters."""
    from dbbench.engines.timescaledb import QUERIES
    from dbbench.queries import check_params

    text = QUERIES[name].replace("{bucket}", engine.bucket)
    with engine.conn.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + text, check_params(params))
        (plan,), = cur.fetchall()
    plan = plan[0] if isinstance(plan, list) else plan
    return (plan["Planning Time"] + plan["Execution Time"]) / 1e3


def _clickhouse_log(engine: Any, name: str, params: dict[str, Any]) -> float | None:
    """query_duration_ms of the latest finished execution of this text in system.query_log."""
    from dbbench.engines.clickhouse import render

    engine._client.command("SYSTEM FLUSH LOGS")
    result = engine._client.query(
        "SELECT query_duration_ms FROM system.query_log WHERE type = 'QueryFinish' AND query = {q:String} "
        "ORDER BY event_time_microseconds DESC LIMIT 1",
        parameters={"q": render(name, params)},
    )
    return result.result_rows[0][0] / 1e3 if result.result_rows else None
