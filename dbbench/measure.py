"""Timing: summary statistics, and one timed execution with the engine's own (server-side) time.

Client time is the wall time of the adapter call, Arrow/rows to a Polars frame included: what a
user of the engine waits for. Server time is what the engine says it spent, where it says it:

- chDB: the query result's `elapsed()`, from the very execution that was timed (it includes writing
  the Arrow answer, uncompressed: see clickhouse.SELECT_SETTINGS; the adapter reads it in place).
- ClickHouse server: `system.query_log` `query_duration_ms` of that execution (ms resolution).
- PostgreSQL/TimescaleDB: `pg_stat_statements` total_exec_time of the timed `COPY (query) TO STDOUT`
  itself (read before and after it: planning, executing and sending every row to the client), when
  the server preloads it (`dbbench servers up` and docker/compose.yml do); otherwise planning +
  execution time of `EXPLAIN (ANALYZE, TIMING OFF)`, a separate execution right after the timed one,
  which leaves out sending the rows. The results say which (`server_time`).
- InfluxDB 1.x and kdb+ through these adapters: none reported (`server_s` is None); neither for
  DuckDB and ArcticDB, which run inside this process (no transfer between client and engine).

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
    "pg_stat_statements": "pg_stat_statements total_exec_time of the timed COPY (query) TO STDOUT (rows sent included)",
    "pg_explain": "EXPLAIN (ANALYZE, TIMING OFF) planning + execution time of a separate execution (rows not sent)",
    "influxdb": None,
    "kdb": None,
    "duckdb": None,  # in this process: the client time is the engine's, plus the Arrow hand-over
    "arcticdb": None,
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
        return "pg_stat_statements" if engine.statements_reason is None else "pg_explain"
    return engine.name


def server_time_method(engine: Engine) -> str | None:
    return SERVER_TIME_METHODS.get(server_time_kind(engine))


def timed_query(engine: Engine, name: str, params: dict[str, Any]) -> Sample:
    """Run one query of the suite once: its answer, client seconds and server seconds (or None)."""
    kind = server_time_kind(engine)
    if kind == "pg_stat_statements":
        statement = engine.statement(name, params)
        before = _pg_statement_totals(engine, statement)
    t0 = time.perf_counter()
    frame = engine.query(name, params)
    client = time.perf_counter() - t0
    if kind == "chdb":
        return Sample(frame, client, engine.last_server_seconds)
    if kind == "pg_stat_statements":
        calls, total = _pg_statement_totals(engine, statement)
        # Another session running the same text in between would be counted too: then no figure at all.
        return Sample(frame, client, total - before[1] if calls == before[0] + 1 else None)
    if kind == "pg_explain":
        return Sample(frame, client, _pg_explain(engine, name, params))
    if kind == "clickhouse":
        return Sample(frame, client, _clickhouse_log(engine, name, params))
    return Sample(frame, client, None)


def _pg_statement_totals(engine: Any, statement: str) -> tuple[int, float]:
    """Calls and total execution seconds pg_stat_statements holds for this exact top-level statement
    text, run by this user in this database ((0, 0.0) before its first run)."""
    with engine.conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements "
            "WHERE toplevel AND query = %s AND userid = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
            "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())", (statement,))
        (calls, total_ms), = cur.fetchall()
    return int(calls), total_ms / 1e3


def _pg_explain(engine: Any, name: str, params: dict[str, Any]) -> float:
    """Planning + execution time that PostgreSQL reports for the same query text and parameters."""
    from dbbench.engines.timescaledb.adapter import QUERIES
    from dbbench.queries import check_params

    text = QUERIES[name].replace("{bucket}", engine.bucket)
    with engine.conn.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + text, check_params(params))
        (plan,), = cur.fetchall()
    plan = plan[0] if isinstance(plan, list) else plan
    return (plan["Planning Time"] + plan["Execution Time"]) / 1e3


def _clickhouse_log(engine: Any, name: str, params: dict[str, Any]) -> float | None:
    """query_duration_ms of the latest finished execution of this text in system.query_log."""
    from dbbench.engines.clickhouse.adapter import render

    engine._client.command("SYSTEM FLUSH LOGS")
    result = engine._client.query(
        "SELECT query_duration_ms FROM system.query_log WHERE type = 'QueryFinish' AND query = {q:String} "
        "ORDER BY event_time_microseconds DESC LIMIT 1",
        parameters={"q": render(name, params)},
    )
    return result.result_rows[0][0] / 1e3 if result.result_rows else None
