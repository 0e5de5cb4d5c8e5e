"""InfluxDB load speed: the engine's loader vs posting a prepared line-protocol file with the same batch size.

The issue's target: the loader (Arrow -> vectorised line protocol -> gzip -> POST) reaches at least
80% of the rows/s of InfluxDB's own bulk path, measured in the same run on the same rows. The
baseline posts a line-protocol file written beforehand, batch by batch (as `curl --data-binary`
would), both plain and pre-gzipped; its preparation is not timed.

    python benchmarks/bench_influx_load.py --dsn influxdb://127.0.0.1:8086/dbbench --rows 1000000
"""

from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path

import polars as pl
import requests
import typer

from dbbench import dataset
from dbbench.engines.influxdb import InfluxDB, _Sequencer, line_protocol


def main(dsn: str = typer.Option(..., help="influxdb://host:port/db"), rows: int = 600_000, batch: int = 50_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        dataset.build_synth(data, rows)
        engine = InfluxDB(dsn, batch_rows=batch)
        frame = pl.read_parquet(data / "trades.parquet").with_columns(pl.col("ts").dt.epoch("ns"))
        lines = line_protocol("trades", _Sequencer()(frame))
        plain = [lines.slice(i, batch).str.join("\n").item().encode() for i in range(0, len(lines), batch)]
        zipped = [gzip.compress(b, 1) for b in plain]
        n = frame.height
        mb = (data / "trades.parquet").stat().st_size  # not the figure: Arrow bytes are, below
        results = {}
        for label, bodies, headers in (("prepared file, plain", plain, {}), ("prepared file, gzip", zipped, {"Content-Encoding": "gzip"})):
            engine.create_schema()
            with requests.Session() as http:
                t0 = time.perf_counter()
                for body in bodies:
                    resp = http.post(f"{engine.base}/write", params={"db": engine.db, "rp": "trades", "precision": "ns"}, data=body, headers=headers)
                    resp.raise_for_status()
                results[label] = time.perf_counter() - t0
        engine.create_schema()
        loaded = engine.load("trades", dataset.iter_batches(data, "trades", 1_000_000))
        results["dbbench loader (Arrow -> gzip line protocol)"] = loaded.seconds
        arrow_mb = loaded.bytes_in / 1e6
        best = min(v for k, v in results.items() if k.startswith("prepared"))
        print(f"{n:,} trades, batch {batch:,}, {arrow_mb:.1f} MB Arrow, {sum(map(len, plain)) / 1e6:.1f} MB line protocol, parquet {mb / 1e6:.1f} MB")
        for label, seconds in results.items():
            print(f"  {label:48s} {seconds:6.2f} s  {n / seconds:>10,.0f} rows/s  {arrow_mb / seconds:6.1f} MB/s (Arrow)  "
                  f"{best / seconds:5.0%} of the best prepared-file post")
        engine.drop()


if __name__ == "__main__":
    typer.run(main)
