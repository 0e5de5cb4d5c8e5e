"""`dbbench run --rows N` for chDB and PostgreSQL: peak memory (data is streamed), load rate, storage,
query times and the harness overhead (client minus server time) of queries over 20 ms.

    python benchmarks/bench_scale.py --rows 1000000 [--engines clickhouse,timescaledb] [--repeat 3]

Each step is its own process, measured with wait4 (peak RSS of that process; a server's own
memory is not in it). PostgreSQL skips nbbo and asof_trades_quotes by default: they are per-row
lateral lookups there, minutes at this size (`--pg-all` runs them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from dbbench import servers
from dbbench.engines.base import QUERY_NAMES

SLOW_ON_PG = ("nbbo", "asof_trades_quotes")


def measured(argv: list[str]) -> tuple[int, float, int]:
    """Run a command; exit code, wall seconds, peak RSS in bytes."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="clickhouse,timescaledb")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-all", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="dbbench-scale-"))
    os.environ.setdefault("DBBENCH_SERVERS_DIR", str(root / "servers"))
    cli = [sys.executable, "-m", "dbbench.cli", "run"]
    data = root / f"synth-{args.rows}"
    rc, seconds, rss = measured([sys.executable, "-c", f"from dbbench.dataset import build_synth; build_synth({str(data)!r}, {args.rows})"])
    print(f"dataset {args.rows:,} rows: {seconds:.1f} s, peak RSS {rss / 2**20:.0f} MiB (rc {rc})")
    for engine in args.engines.split(","):
        queries = QUERY_NAMES if engine != "timescaledb" or args.pg_all else [q for q in QUERY_NAMES if q not in SLOW_ON_PG]
        started = servers.up(["timescaledb"])["timescaledb"] if engine == "timescaledb" else None
        dsn = started.dsn if started else f"chdb://{root / 'chdb'}"
        out = root / f"{engine}.json"
        try:
            rc, seconds, rss = measured([*cli, "--data", str(data), "--engines", engine, "--dsn", f"{engine}={dsn}",
                                         "--queries", ",".join(queries), "--repeat", str(args.repeat), "--out", str(out), "--json"])
        finally:
            if started:
                servers.down(["timescaledb"])
        res = orjson.loads(out.read_bytes())
        (e,) = res["engines"].values()
        print(f"{e['name']}: rc {rc}, {seconds:.0f} s, harness peak RSS {rss / 2**20:.0f} MiB, status {e['status']} {e['reason'] or ''}")
        for table, t in e["load"][-1]["tables"].items():
            s = e["storage"].get(table, {})
            print(f"  load {table}: {t['rows']:,} rows {t['seconds']:.1f} s {t['rows_per_s']:,.0f} rows/s {t['csv_mb_per_s']:.1f} CSV-MB/s; "
                  f"{s.get('bytes_per_row', 0):.1f} B/row on disk, compression vs CSV {s.get('compression_vs_csv') or 0:.2f}x")
        for name, q in e["queries"].items():
            hot = q["hot"] or {}
            client, server = hot.get("client") or {}, hot.get("server") or {}
            over = f" overhead {hot['overhead_pct']:.1f}%" if hot.get("overhead_pct") is not None and client.get("median", 0) > 0.02 else ""
            print(f"  {name:20s} {q['status']:6s} median {1e3 * client.get('median', 0):9.1f} ms "
                  f"server {1e3 * server.get('median', 0):9.1f} ms{over}")


if __name__ == "__main__":
    main()
