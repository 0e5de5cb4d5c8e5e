"""InfluxDB load speed: the engine's loader vs posting a prepared line-protocol file with the same batch size.

The issue's target: the loader reaches at least 80% of the rows/s of InfluxDB's own bulk path,
measured in the same run on the same rows. The bulk path posts a line-protocol file written
beforehand (by the engine's own `line_protocol`, so the server parses the same text), one batch
per request on one keep-alive connection, as `curl --data-binary` of each batch would; its bodies
are prepared (and gzipped) before the clock starts, so it times the posts only.
The loader's time is everything `InfluxDB.load` does: reading the Parquet batches, checking them,
numbering same-time trades, building line protocol, compressing, posting (one post at a time from a
thread, while the next bodies are built) and verifying the stored point count before and after.
Beside wall time, each side's process CPU time (all threads): what the client costs the machine,
which on a shared 2-core box slows the server's side too.

Every repetition runs each side once, interleaved, into freshly emptied retention policies; the
figures are medians. Compare like with like: the loader with gzip against the gzipped file, the
loader without against the plain file (`--gzip 0` sets the loader's DSN option).

    python benchmarks/bench_influx_load.py --dsn influxdb://127.0.0.1:8086/dbbench --rows 1000000
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import polars as pl
import requests
import typer
from isal import igzip

from dbbench import dataset
from dbbench.engines.base import TABLES
from dbbench.engines.influxdb.adapter import InfluxDB, _Sequencer, line_protocol


def prepared_bodies(data: Path, table: str, batch: int, level: int) -> list[bytes]:
    """The table's line protocol, one body per `batch` points (gzipped at `level` when not 0)."""
    frame = pl.read_parquet(data / f"{table}.parquet").with_columns(pl.col("ts").dt.epoch("ns"))
    if table == "trades":
        frame = _Sequencer()(frame)
    lines = line_protocol(table, frame)
    bodies = [lines.slice(i, batch).str.join("\n").item().encode() for i in range(0, len(lines), batch)]
    return [igzip.compress(b, level) for b in bodies] if level else bodies


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def post_all(engine: InfluxDB, table: str, bodies: list[bytes], gzipped: bool) -> None:
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    params = {"db": engine.db, "rp": table, "precision": "ns"}
    with requests.Session() as http:
        for body in bodies:
            http.post(f"{engine.base}/write", params=params, data=body, headers=headers).raise_for_status()


def main(dsn: str = typer.Option(..., help="influxdb://host:port/db"), rows: int = 1_000_000,
         batch: int = typer.Option(50_000, help="points per write, both sides"),
         gzip: int = typer.Option(1, help="ISA-L gzip level of both sides (0: plain text)"),
         repeat: int = 3, data: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            data = Path(tmp)
            dataset.build_synth(data, rows)
        engine = InfluxDB(f"{dsn.split('?')[0]}?batch={batch}&gzip={gzip}")
        result: dict = {"version": engine.version(), "batch": batch, "gzip_level": gzip, "repeat": repeat}
        for table in TABLES:
            bodies = prepared_bodies(data, table, batch, gzip)
            times: dict[str, list[float]] = {"prepared_post_s": [], "loader_s": [],
                                             "prepared_post_cpu_s": [], "loader_cpu_s": []}
            for _ in range(repeat):
                engine.create_schema()
                c0, t0 = cpu_seconds(), time.perf_counter()
                post_all(engine, table, bodies, gzipped=bool(gzip))
                times["prepared_post_s"].append(time.perf_counter() - t0)
                times["prepared_post_cpu_s"].append(cpu_seconds() - c0)
                engine.create_schema()
                c0, t0 = cpu_seconds(), time.perf_counter()
                loaded = engine.load(table, dataset.iter_batches(data, table))
                times["loader_s"].append(time.perf_counter() - t0)
                times["loader_cpu_s"].append(cpu_seconds() - c0)
            medians = {k: statistics.median(v) for k, v in times.items()}
            result[table] = {"rows": loaded.rows, **{k: round(v, 3) for k, v in medians.items()},
                             "loader_rows_per_s": round(loaded.rows / medians["loader_s"]),
                             "ratio": round(medians["prepared_post_s"] / medians["loader_s"], 3),
                             "runs": {k: [round(x, 3) for x in v] for k, v in times.items()}}
        engine.drop()
        engine.close()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    typer.run(main)
