"""Loader throughput against each engine's own bulk path, same rows, same run (target: >= 80%).

    python benchmarks/bench_load.py [--rows 2000000] [--pg-dsn postgresql://...] [--repeat 2]

- chDB: `ClickHouse.load` vs `INSERT INTO t SELECT * FROM file('t.parquet', Parquet)` into the same emptied
  table. The loader's time is all of `load`: marking the table unverified, TRUNCATE, reading the Parquet
  with pyarrow (`iter_batches`: at most 1M rows a batch, symbol and venue as Arrow dictionaries), the
  INSERT that streams them, the count() check and the verified mark; the bulk path's is TRUNCATE and its
  INSERT. `--chdb-repeat` alternations, medians of wall time, and of process CPU time (all threads), which
  other work on a busy machine disturbs less.
- PostgreSQL: `TimescaleDB.load` (binary COPY FROM STDIN, encoded from Arrow) vs `COPY t FROM 'file'` of
  the same rows in COPY BINARY, read by the server itself; both then build the same indexes and ANALYZE.
Each side runs `--repeat` times into freshly emptied tables (PostgreSQL: the two sides alternate);
the best time counts. Prints JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from dbbench.dataset import build_synth, iter_batches, read_manifest
from dbbench.engines.base import TABLES
from dbbench.engines.clickhouse.adapter import ClickHouse
from dbbench.engines.timescaledb.adapter import _HEADER, _TRAILER, TimescaleDB, copy_binary


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def bench_chdb(data: Path, repeat: int) -> dict:
    engine = ClickHouse("chdb://memory")
    engine.create_schema()
    out = {}
    for table in TABLES:
        def native(table: str = table) -> None:
            engine._sql(f"TRUNCATE TABLE {table}")
            engine._sql(f"INSERT INTO {table} SELECT * FROM file('{data / f'{table}.parquet'}', Parquet)")

        sides = {"loader": lambda table=table: engine.load(table, iter_batches(data, table)), "native": native}
        wall: dict[str, list[float]] = {side: [] for side in sides}
        cpu: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(repeat):  # alternating, so that other work on the machine weighs on both sides alike
            for side, run in sides.items():
                c0, t0 = cpu_seconds(), time.perf_counter()
                run()
                wall[side].append(time.perf_counter() - t0)
                cpu[side].append(cpu_seconds() - c0)
        w = {side: statistics.median(v) for side, v in wall.items()}
        c = {side: statistics.median(v) for side, v in cpu.items()}
        out[table] = {"loader_s": w["loader"], "native_s": w["native"], "ratio": w["native"] / w["loader"],
                      "loader_cpu_s": c["loader"], "native_cpu_s": c["native"], "cpu_ratio": c["native"] / c["loader"]}
    engine.close()
    return out


def bench_postgres(data: Path, dsn: str, repeat: int) -> dict:
    engine = TimescaleDB(dsn)
    engine.create_schema()
    out = {"engine": engine.name}
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        for table in TABLES:
            path = Path(tmp) / f"{table}.pgcopy"
            with path.open("wb") as f:
                f.write(_HEADER)
                for batch in iter_batches(data, table):
                    f.writelines(copy_binary(batch, TABLES[table]))
                f.write(_TRAILER)
            path.chmod(0o644)

            def native(table: str = table, path: Path = path) -> None:
                engine.conn.execute(f"TRUNCATE {table}")
                engine.conn.execute(f"COPY {table} FROM '{path}' (FORMAT BINARY)")
                engine._finish(table)

            # Interleaved, so that the other work on the machine weighs on both sides alike.
            runs = [(best(lambda table=table: engine.load(table, iter_batches(data, table)), 1), best(native, 1))
                    for _ in range(repeat)]
            ours, theirs = min(r[0] for r in runs), min(r[1] for r in runs)
            out[table] = {"loader_s": ours, "native_s": theirs, "ratio": theirs / ours}
    engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--pg-dsn", default=os.environ.get("DBBENCH_TIMESCALEDB_DSN"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chdb-repeat", type=int, default=7)
    parser.add_argument("--data", type=Path, help="an existing dataset instead of a fresh synthetic one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        if args.data is None:
            build_synth(data, args.rows, seed=0)
        rows = read_manifest(data)["rows"]
        result = {"rows": rows, "chdb": bench_chdb(data, args.chdb_repeat)}
        if args.pg_dsn:
            result["postgres"] = bench_postgres(data, args.pg_dsn, args.repeat)
    for engine in ("chdb", "postgres"):
        for table, figures in result.get(engine, {}).items():
            if isinstance(figures, dict):
                figures["loader_rows_per_s"] = round(rows[table] / figures["loader_s"])
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
