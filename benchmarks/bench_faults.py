"""Kill the PostgreSQL server mid-load and mid-query: the run must name engine, step and query,
keep every other result (chDB runs after it in the same run) and mark nothing partial valid.

    python benchmarks/bench_faults.py [--rows 300000]

The server is a scratch one from `dbbench servers` (own run directory); it is killed with SIGKILL
to its whole process group (postmaster and backends), as a crash or an OOM kill would.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from dbbench import servers
from dbbench.dataset import build_synth
from dbbench.runner import RunConfig, run


def kill_when(server: servers.Server, ready: threading.Event, delay_s: float) -> threading.Thread:
    def killer() -> None:
        ready.wait()
        time.sleep(delay_s)
        os.killpg(server.pid, signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def copy_started(dsn: str, event: threading.Event) -> None:
    """Set `event` as soon as a COPY into the server has processed rows (pg_stat_progress_copy)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not event.is_set():
            if conn.execute("SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy").fetchone()[0] > 0:
                event.set()
            time.sleep(0.01)


def report(title: str, res: dict) -> None:
    print(f"== {title}")
    for name, e in res["engines"].items():
        qs = e["queries"]
        valid = sorted(q for q, v in qs.items() if v["valid"])
        print(f"  {name}: status={e['status']} failures={[(f['step'], f['query']) for f in e['failures']][:3]}")
        print(f"    load valid={[load['valid'] for load in e['load']]} queries valid={len(valid)}/{len(qs)} "
              f"not valid={sorted(set(qs) - set(valid))}")
        if e["failures"]:
            print(f"    first error: {e['failures'][0]['error'][:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dbbench-faults-"))
    os.environ["DBBENCH_SERVERS_DIR"] = str(root / "servers")
    build_synth(root / "data", args.rows)
    queries = ["avg_trade_volume", "spread", "ohlcv_1m", "mid_returns", "exec_volatility", "last_quote", "range_scan"]
    common = {"data": root / "data", "queries": queries, "repeat": 20, "engines": ["timescaledb", "clickhouse"]}

    server = servers.up(["timescaledb"])["timescaledb"]
    started = threading.Event()
    threading.Thread(target=copy_started, args=(server.dsn, started), daemon=True).start()
    kill_when(server, started, 0.2)
    res = run(RunConfig(**common, dsns={"timescaledb": server.dsn, "clickhouse": f"chdb://{root / 'chdb1'}"}))
    report("server killed mid-load", res)
    servers.down(["timescaledb"])

    server = servers.up(["timescaledb"])["timescaledb"]
    in_queries = threading.Event()
    kill_when(server, in_queries, 0.05)
    res = run(RunConfig(**common, dsns={"timescaledb": server.dsn, "clickhouse": f"chdb://{root / 'chdb2'}"}),
              progress=lambda text: in_queries.set() if text.endswith(": avg_trade_volume") else None)
    report("server killed mid-query (during spread, after avg_trade_volume)", res)
    servers.down(["timescaledb"])


if __name__ == "__main__":
    main()
