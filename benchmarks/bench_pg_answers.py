"""Harness overhead of reading PostgreSQL answers: `TimescaleDB.query` (COPY ... TO STDOUT csv into
`pl.read_csv`) against the old row path (`fetchall` tuples into a Polars frame), with the server's own
EXPLAIN (ANALYZE) planning + execution time, interleaved in one run on tables already loaded by
`dbbench load`/`dbbench run`.

    python benchmarks/bench_pg_answers.py --data D [--dsn postgresql://...] [--repeat 5] [--queries a,b]

Prints JSON: per query, rows and the median seconds of each path, and each path's overhead in % of its time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import orjson
import polars as pl

from dbbench.engines.timescaledb import QUERIES, TimescaleDB
from dbbench.measure import _pg_explain
from dbbench.queries import check_params, default_params, params_for


def rows_path(engine: TimescaleDB, name: str, params: dict) -> pl.DataFrame:
    with engine.conn.cursor() as cur:
        cur.execute(QUERIES[name].replace("{bucket}", engine.bucket), check_params(params))
        return pl.DataFrame(cur.fetchall(), schema=[d.name for d in cur.description], orient="row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dsn", default=os.environ.get("DBBENCH_TIMESCALEDB_DSN"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--queries", default="range_scan,mid_returns,last_quote,nbbo,asof_trades_quotes")
    args = parser.parse_args()
    engine = TimescaleDB(args.dsn)
    base = default_params(args.data)
    result = {}
    for name in args.queries.split(","):
        params = params_for(name, base)
        times: dict[str, list[float]] = {"copy_csv": [], "fetchall": [], "server": []}
        for _ in range(args.repeat):
            for path, fn in (("copy_csv", engine.query), ("fetchall", lambda n, p: rows_path(engine, n, p))):
                t0 = time.perf_counter()
                answer = fn(name, params)
                times[path].append(time.perf_counter() - t0)
            times["server"].append(_pg_explain(engine, name, params))
        med = {k: statistics.median(v) for k, v in times.items()}
        result[name] = {"rows": answer.height, **{f"{k}_s": round(v, 4) for k, v in med.items()},
                        **{f"{k}_overhead_pct": round(100 * (med[k] - med["server"]) / med[k], 1)
                           for k in ("copy_csv", "fetchall")}}
    engine.close()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
