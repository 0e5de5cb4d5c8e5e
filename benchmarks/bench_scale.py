"""`dbbench run --rows N` for chDB and PostgreSQL: peak memory (data is streamed), load rate, storage,
query times and the harness overhead (client minus server time) of queries over 20 ms.

    python benchmarks/bench_scale.py --rows 100000000 [--engines clickhouse,timescaledb] [--repeat 3]
        [--data DIR] [--pg-rows N] [--chdb-memory-gb 2.5]

The dataset is built once (a step of its own; `--data` reuses one) and each engine's `dbbench run`
is its own process, measured with wait4: the harness's peak RSS. chDB is embedded, so its memory
is in that figure; it runs with max_server_memory_usage and max_memory_usage (per query) set in
its DSN so that the whole process stays under the 4 GB target. PostgreSQL is a server of its own:
its memory is sampled separately, every 0.5 s, as the summed PSS (shared pages split fairly among
the backends) of the postmaster and its children. `--pg-rows` gives PostgreSQL a smaller dataset
where a 100-million-row load and index build would not fit the time at hand on a small machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from dbbench import servers

GB = 1e9


def tree_pss(pid: int) -> int:
    """Summed PSS in bytes of a process and its children (0 for those gone meanwhile)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += 1024 * int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:")))
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir() for c in (t / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


class PeakSampler(threading.Thread):
    """Peak of tree_pss(pid), sampled every `every` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.peak = max(self.peak, tree_pss(self.pid))


def measured(argv: list[str]) -> tuple[int, float, int]:
    """Run a command; exit code, wall seconds, peak RSS in bytes."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss * 1024


def dataset(root: Path, rows: int) -> Path:
    data = root / f"synth-{rows}"
    if not (data / "dataset.json").exists():
        rc, seconds, rss = measured([sys.executable, "-c",
                                     f"from dbbench.dataset import build_synth; build_synth({str(data)!r}, {rows})"])
        print(f"dataset {rows:,} rows: {seconds:.1f} s, peak RSS {rss / GB:.2f} GB (rc {rc})", flush=True)
    return data


def report(engine: str, out: Path, rc: int, seconds: float, rss: int, server_peak: int | None) -> None:
    res = orjson.loads(out.read_bytes())
    (e,) = res["engines"].values()
    rows = sum(res["dataset"]["rows"].values())
    statuses = [q["status"] for q in e["queries"].values()]
    server = f", server peak PSS {server_peak / GB:.2f} GB" if server_peak is not None else " (server in this process)"
    print(f"{e['name']}: {rows:,} rows, rc {rc}, {seconds:.0f} s, harness peak RSS {rss / GB:.2f} GB{server}, "
          f"status {e['status']} {e['reason'] or ''}; answers correct {statuses.count('ok')}/{len(statuses)}")
    for table, t in e["load"][-1]["tables"].items():
        s = e["storage"].get(table, {})
        print(f"  load {table}: {t['rows']:,} rows {t['seconds']:.1f} s {t['rows_per_s']:,.0f} rows/s "
              f"{t['csv_mb_per_s']:.1f} CSV-MB/s; {s.get('bytes_per_row', 0):.1f} B/row on disk, "
              f"compression vs CSV {s.get('compression_vs_csv') or 0:.2f}x")
    for name, q in e["queries"].items():
        hot = q["hot"] or {}
        client, server_t = hot.get("client") or {}, hot.get("server") or {}
        over = (f" overhead {hot['overhead_pct']:.1f}%"
                if hot.get("overhead_pct") is not None and client.get("median", 0) > 0.02 else "")
        print(f"  {name:20s} {q['status']:6s} {q.get('rows') or 0:>8,} rows "
              f"median {1e3 * client.get('median', 0):9.1f} ms "
              f"server {1e3 * server_t.get('median', 0):9.1f} ms{over}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg-rows", type=int, default=None, help="PostgreSQL's dataset size (default --rows)")
    parser.add_argument("--engines", default="clickhouse,timescaledb")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chdb-memory-gb", type=float, default=2.5, help="chDB max_server_memory_usage")
    parser.add_argument("--dir", type=Path, default=None, help="Work directory (datasets are reused from it)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="dbbench-scale-"))
    os.environ.setdefault("DBBENCH_SERVERS_DIR", str(root / "servers"))
    cli = [sys.executable, "-m", "dbbench.cli", "run"]
    for engine in args.engines.split(","):
        rows = args.pg_rows if engine == "timescaledb" and args.pg_rows else args.rows
        data = dataset(root, rows)
        started = servers.up(["timescaledb"])["timescaledb"] if engine == "timescaledb" else None
        limit = int(args.chdb_memory_gb * GB)
        dsn = started.dsn if started else (f"chdb://{root / 'chdb'}?max_server_memory_usage={limit}"
                                           f"&max_memory_usage={int(0.8 * limit)}")
        sampler = PeakSampler(started.pid) if started else None
        out = root / f"{engine}-{rows}.json"
        try:
            if sampler:
                sampler.start()
            rc, seconds, rss = measured([*cli, "--data", str(data), "--engines", engine, "--dsn", f"{engine}={dsn}",
                                         "--repeat", str(args.repeat), "--out", str(out), "--json"])
        finally:
            if sampler:
                sampler.done.set()
                sampler.join()
            if started:
                servers.down(["timescaledb"])
        report(engine, out, rc, seconds, rss, sampler.peak if sampler else None)


if __name__ == "__main__":
    main()
