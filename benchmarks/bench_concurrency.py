"""N parallel clients for a bounded time against PostgreSQL and chDB: no errors, no wrong answers.

    python benchmarks/bench_concurrency.py [--rows 1000000] [--clients 10] [--seconds 300] [--out DIR]

Each client is a thread with its own connection (chDB: its own session in this process); every
answer is checked against the Polars reference. The whole suite runs: the per-row queries ask about
their window (dbbench.queries.ROW_QUERIES), so even PostgreSQL's per-row lateral lookups take
seconds, not minutes. Each engine's queries are first timed once alone (the runner's hot run),
then the N clients run for the given time.
PostgreSQL is $DBBENCH_TIMESCALEDB_DSN or a scratch server from `dbbench servers`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from dbbench import results, servers
from dbbench.dataset import build_synth
from dbbench.engines.base import QUERY_NAMES
from dbbench.runner import RunConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dbbench-concurrency-"))
    out = args.out or root
    os.environ.setdefault("DBBENCH_SERVERS_DIR", str(root / "servers"))
    build_synth(root / "data", args.rows)
    dsn = os.environ.get("DBBENCH_TIMESCALEDB_DSN")
    started = None if dsn else servers.up(["timescaledb"])["timescaledb"]
    try:
        res = run(RunConfig(data=root / "data", engines=["timescaledb", "clickhouse"], repeat=1,
                            clients=(args.clients,), duration_s=args.seconds, out=out / "concurrency.json",
                            dsns={"timescaledb": dsn or started.dsn, "clickhouse": f"chdb://{root / 'chdb'}"}))
    finally:
        if started:
            servers.down(["timescaledb"])
    print(f"{args.rows:,} rows, {len(QUERY_NAMES)} queries, {args.seconds:g} s per client count; "
          f"results {out / 'concurrency.json'}")
    for name, engine in results.validate(res)["engines"].items():
        for c in engine["concurrency"]:
            lat = c["latency"] or {}
            print(f"  {name:11s} clients={c['clients']:3d} {c['duration_s']:6.1f} s queries={c['queries']:6d} "
                  f"qps={c['qps'] or 0:8.1f} p50={1e3 * lat.get('median', 0):8.2f} ms "
                  f"p95={1e3 * lat.get('p95', 0):8.2f} ms "
                  f"errors={c['errors']} wrong={c['wrong']} valid={c['valid']}")


if __name__ == "__main__":
    main()
