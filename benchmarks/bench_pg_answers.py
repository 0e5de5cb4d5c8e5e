"""Harness overhead of reading PostgreSQL answers (client time minus server time), interleaved in one
run on tables already loaded by `dbbench load`/`dbbench run`:

- `buffer`: `TimescaleDB.query` as `dbbench run` times it (COPY ... TO STDOUT csv, each row appended
  to one buffer, then `pl.read_csv` with the answer's schema);
- `joined`: the earlier reading, `b"".join` of every row message kept alive until the end;

each with the server time of its own execution from pg_stat_statements (the COPY statement itself:
execution and sending every row), next to the EXPLAIN (ANALYZE) time of a separate execution (the
fallback source, which leaves out sending the rows).

    python benchmarks/bench_pg_answers.py --data D [--dsn postgresql://...] [--repeat 5] [--queries a,b]

Prints JSON: per query, rows, the median seconds of each path and server source, and each path's
overhead in % of its client time (against pg_stat_statements, and against EXPLAIN).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import orjson
import polars as pl

from dbbench.engines.base import QUERY_NAMES
from dbbench.engines.timescaledb.adapter import ANSWER_TYPES, TimescaleDB
from dbbench.queries import default_params, params_for


def joined(engine: TimescaleDB, name: str, params: dict) -> pl.DataFrame:
    with engine.conn.cursor() as cur, cur.copy(engine.statement(name, params)) as copy:
        data = b"".join(copy)
    names = data[:data.index(b"\n")].decode().split(",")
    return pl.read_csv(data, schema={n: ANSWER_TYPES[n] for n in names})


def timed(engine: TimescaleDB, fn, name: str, params: dict) -> tuple[pl.DataFrame, float, float]:
    """The answer, client seconds and pg_stat_statements seconds of this one execution."""
    statement = engine.statement(name, params)
    calls, total = engine.statement_totals(statement)
    t0 = time.perf_counter()
    frame = fn(name, params)
    client = time.perf_counter() - t0
    after_calls, after_total = engine.statement_totals(statement)
    assert after_calls == calls + 1, "another session ran the same statement: no server time"
    return frame, client, after_total - total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dsn", default=os.environ.get("DBBENCH_TIMESCALEDB_DSN"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--queries", default=",".join(QUERY_NAMES))
    args = parser.parse_args()
    engine = TimescaleDB(args.dsn)
    if engine.statements_reason:
        raise SystemExit(f"bench_pg_answers: needs pg_stat_statements: {engine.statements_reason}")
    base = default_params(args.data)
    paths = {"buffer": engine.query, "joined": lambda n, p: joined(engine, n, p)}
    result = {}
    for name in args.queries.split(","):
        params = params_for(name, base)
        engine.query(name, params)  # warm-up
        times: dict[str, list[float]] = {k: [] for k in ("buffer", "buffer_server", "joined", "joined_server",
                                                         "explain")}
        for _ in range(args.repeat):
            for path, fn in paths.items():
                answer, client, server = timed(engine, fn, name, params)
                times[path].append(client)
                times[f"{path}_server"].append(server)
            times["explain"].append(engine.explain_seconds(name, params))
        med = {k: statistics.median(v) for k, v in times.items()}
        result[name] = {"rows": answer.height, **{f"{k}_s": round(v, 4) for k, v in med.items()},
                        **{f"{p}_overhead_pct": round(100 * (med[p] - med[f"{p}_server"]) / med[p], 1) for p in paths},
                        **{f"{p}_overhead_vs_explain_pct": round(100 * (med[p] - med["explain"]) / med[p], 1)
                           for p in paths}}
    engine.close()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
