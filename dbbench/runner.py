"""`dbbench run`: every engine, one at a time, through load, hot and cold query runs and concurrency.

Each engine goes: connect (a failure here skips the engine, with the reason), warm up (outside every
timing), create the schema, load the dataset once per batch size of the sweep (the last load stays; each
load timed to the one end point every engine shares: the rows visible to a count, verified equal to those
sent), compact each table (the engine's own compaction, timed apart) and measure its storage, then
per query a warm-up and N timed repetitions, each run with its own parameters from the seeded
workload (`dbbench.workload`: the same sequence for every engine; the per-row queries over a window,
so no answer, and no reference, grows with the dataset), every answer compared with the Polars
reference for its parameters (computed once per parameter set by Polars' streaming engine, before
the timed call, and shared by every engine of the run).
A wrong answer stops that query's repetitions and is recorded as a failure, never as a timing.
One engine failing never stops the others; a step cut short (a server killed mid-load or
mid-query) is recorded with engine, step and query and nothing of it is marked valid.

Cold runs restart the engine before each query: a server started by `dbbench servers` is
stopped with its clean-shutdown signal and started again on the same data; an engine inside this
process is closed and reopened, and says what that leaves warm (chDB: its in-process server and
caches stay). The OS page cache is
dropped (write 3 to /proc/sys/vm/drop_caches) where that is permitted, and the results say which.
Result caches are off in every adapter (ClickHouse use_query_cache = 0; PostgreSQL, InfluxDB,
DuckDB and ArcticDB have none).

Concurrency runs by 1 and by N clients in parallel threads, each with its own connection (an
engine inside this process, such as chDB, DuckDB or ArcticDB: its own session or connection on
the same path, so one embedded engine in this process serves them all), for a bounded time or one
pass each. Client k runs the suite starting at its k-th query with its own parameters (the
workload's `concurrent` phase): every engine gets the same lists. It runs after every engine's
single-client runs, on the queries every answering engine answered correctly alone, so each engine
gets the same mix and their queries per second compare; the record names the suite's queries left
out and which engine could not answer each (`mix`, `left_out`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from data_loaders.redact import redact
from dbbench import results, servers
from dbbench.dataset import csv_size, describe, iter_batches
from dbbench.engines import connect, default_dsn
from dbbench.engines.base import QUERY_NAMES, TABLES, Engine, Storage
from dbbench.machine import machine_info
from dbbench.measure import stats, timings
from dbbench.queries import compare, reference
from dbbench.workload import DEFAULT_SEED, Workload

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
MB = 1e6


@dataclass
class RunConfig:
    data: Path
    engines: Sequence[str] = ("clickhouse", "timescaledb", "influxdb", "kdb")
    dsns: dict[str, str] = field(default_factory=dict)  # engine -> DSN; others get default_dsn(engine)
    queries: Sequence[str] = QUERY_NAMES
    repeat: int = 10
    warmup: int = 1
    clients: Sequence[int] = (1,)
    duration_s: float | None = None  # concurrency: seconds per client count; None: one pass of the suite per client
    cold: bool = False
    drop_caches: bool = True  # on cold runs, drop the OS page cache where permitted (it slows everyone on the box)
    batch_rows: Sequence[int] = (1_000_000,)  # the load's batch-size sweep; the last load stays for the queries
    out: Path | None = None  # written after each engine, so a crash of the harness keeps what was done
    seed: int = DEFAULT_SEED  # the workload's: which parameters each run gets


Progress = Callable[[str], None]  # called with a description after each unit of work


def units(config: RunConfig) -> int:
    """Units of work `run` reports through `progress` (for a progress bar's total)."""
    per_engine = len(config.batch_rows) + len(config.queries) * (2 if config.cold else 1) + len(config.clients)
    return 1 + len(config.engines) * per_engine


def csv_bytes(data: Path, table: str) -> int:
    """Size of the table written as CSV with a header: the raw size that storage is compared with
    (datasets record it in dataset.json when built; this counts it for those that do not)."""
    batches = iter_batches(data, table)
    return sum(csv_size(batch, header=i == 0) for i, batch in enumerate(batches))


def drop_page_cache() -> str:
    """Drop the OS page cache where permitted; say what happened."""
    try:
        os.sync()
        DROP_CACHES.write_text("3\n")
    except OSError as exc:
        return f"not dropped: writing 3 to {DROP_CACHES} was refused ({exc.strerror}; usual in a container)"
    return f"dropped (3 written to {DROP_CACHES})"


def page_cache_policy(config: RunConfig) -> str:
    if not config.cold:
        return "not dropped (hot runs only)"
    if not config.drop_caches:
        return "not dropped (disabled: --no-drop-caches)"
    return drop_page_cache() + " before each cold run"


def managed_server(engine: str, dsn: str) -> servers.Server | None:
    """The server `dbbench servers up` started for this DSN, if any (only those can be restarted)."""
    server = servers.read_state().get(engine)
    return server if server is not None and server.dsn == dsn and servers.alive(server) else None


def cold_method(name: str, engine: Engine, dsn: str) -> str:
    if managed_server(name, dsn) is not None:
        return "server restarted (dbbench servers: clean shutdown, same data) before each query"
    if engine.in_process is not None:
        return f"closed and reopened before each query (an engine inside this process): {engine.in_process}"
    return "reconnected only: the server was not started by `dbbench servers`, so it cannot be restarted here"


def _reopen(engine: Engine, name: str, dsn: str, drop_caches: bool) -> Engine:
    engine.close()
    server = managed_server(name, dsn)
    if server is not None:
        servers.restart(server)
    if drop_caches:
        drop_page_cache()
    return connect(name, dsn)


class References:
    """The Polars answer per (query, parameters), computed once and shared by every engine of the run.

    `fixed` replaces a query's answer for every parameter set (tests use it to prove a wrong answer is caught)."""

    def __init__(self, data: Path, fixed: dict[str, pl.DataFrame] | None = None) -> None:
        self.data, self.fixed = data, dict(fixed or {})
        self.cache: dict[tuple[str, tuple[tuple[str, Any], ...]], pl.DataFrame] = {}

    def __call__(self, query: str, params: dict[str, Any]) -> pl.DataFrame:
        if query in self.fixed:
            return self.fixed[query]
        key = (query, tuple(sorted(params.items())))
        if key not in self.cache:
            self.cache[key] = reference(query, self.data, params)
        return self.cache[key]


def measure_query(engine: Engine, name: str, runs: list[dict[str, Any]], refs: References,
                  warmup: int) -> dict[str, Any]:
    """The warm-up runs, then the timed ones (`runs`: their parameters in order); every answer compared with
    the reference for its parameters (computed before the run is timed); the first wrong answer stops it."""
    entry: dict[str, Any] = {"status": "ok", "valid": False, "verdict": None, "rows": None, "expected_rows": None,
                             "error": None, "params": runs[warmup:], "hot": None, "cold": None}
    client: list[float] = []
    server: list[float | None] = []
    expected = [refs(name, params) for params in runs]
    try:
        for i, (params, ref) in enumerate(zip(runs, expected)):
            sample = engine.timed_query(name, params)
            verdict = compare(sample.frame, ref, name)
            entry["rows"], entry["expected_rows"], entry["verdict"] = verdict.rows, verdict.expected_rows, str(verdict)
            if not verdict.ok:
                entry.update(status="wrong", verdict=f"run {i + 1}: {verdict}")
                break
            if i >= warmup:
                client.append(sample.client_s)
                server.append(sample.server_s)
    except NotImplementedError as exc:
        entry.update(status="unsupported", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure of the engine is recorded, never raised
        entry.update(status="error", error=f"{type(exc).__name__}: {exc}")
    entry["hot"] = timings(client, server)
    entry["valid"] = entry["status"] == "ok"
    return entry


def concurrency(engine: str, dsn: str, queries: list[str], workload: Workload, refs: References, clients: int,
                duration_s: float | None, in_process: bool = False) -> dict[str, Any]:
    """`clients` threads, each its own connection, run their lists (`Workload.client`: each starting at a
    different query, each with its own parameters) for `duration_s` or one pass each; latency percentiles,
    queries per second, errors, wrong answers. `in_process`: the engine runs inside this process, so the
    clients share one instance of it. The references are computed before any client starts."""
    lists = [workload.client(queries, k) for k in range(clients)]
    expected = [[refs(name, params) for name, params in work] for work in lists]
    latencies: list[float] = []
    problems: list[str] = []
    counts = {"errors": 0, "wrong": 0}
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(k: int) -> None:
        work = lists[k]
        try:
            conn = connect(engine, dsn)
        except Exception as exc:  # noqa: BLE001
            with lock:
                counts["errors"] += 1
                problems.append(f"client {k}: connect: {exc}")
            start.abort()
            return
        try:
            start.wait()
            deadline = time.perf_counter() + duration_s if duration_s else None
            i = 0
            while (deadline is None and i < len(work)) or (deadline and time.perf_counter() < deadline):
                (name, params), ref = work[i % len(work)], expected[k][i % len(work)]
                i += 1
                t0 = time.perf_counter()
                try:
                    frame = conn.query(name, params)
                except Exception as exc:  # noqa: BLE001
                    with lock:
                        counts["errors"] += 1
                        problems.append(f"client {k}: {name}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - t0
                verdict = compare(frame, ref, name)
                with lock:
                    latencies.append(elapsed)
                    if not verdict.ok:
                        counts["wrong"] += 1
                        problems.append(f"client {k}: {name}: {verdict}")
        except threading.BrokenBarrierError:
            pass
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,), name=f"dbbench-client-{k}") for k in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "mode": "threads, one connection each" + (" (one engine inside this process serves them all)"
                                                  if in_process else ""),
        "duration_s": wall,
        "queries": len(latencies),
        "mix": list(queries),
        "seed": workload.seed,
        "qps": len(latencies) / wall if wall > 0 else None,
        "latency": stats(latencies),
        **counts,
        "problems": problems[:20],
        "valid": counts["errors"] == 0 and counts["wrong"] == 0 and bool(latencies),
    }


def storage_entry(storage: Storage, rows: int, csv_bytes: int, compact_s: float) -> dict[str, Any]:
    """A table's storage in the results: bytes after compaction, what they include, the engine's other sizes,
    the compaction's seconds, bytes per row and the compression against the CSV size."""
    return {"bytes_on_disk": storage.bytes, "includes": storage.includes, **storage.details,
            "compact_seconds": compact_s, "rows": rows, "bytes_per_row": storage.bytes / rows if rows else None,
            "compression_vs_csv": csv_bytes / storage.bytes if storage.bytes else None}


class EngineRun:
    """One engine through every step; `entry` is its part of the results, filled as it goes."""

    def __init__(self, name: str, dsn: str, config: RunConfig, data: dict[str, Any], workload: Workload,
                 refs: References, progress: Progress) -> None:
        self.name, self.dsn, self.config, self.data, self.refs, self.progress = name, dsn, config, data, refs, progress
        self.workload = workload
        self.engine: Engine | None = None
        self.loaded, self.in_process = False, False
        self.entry: dict[str, Any] = {"engine": name, "name": name, "status": "ok", "reason": None, "failures": [],
                                      "dsn": redact(dsn), "version": None, "settings": {}, "server_time": None,
                                      "compaction": None,
                                      "load": [], "storage": {}, "queries": {}, "concurrency": [], "cold_method": None}

    def fail(self, step: str, query: str | None, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        failure = {"step": step, "query": query, "error": text}
        self.entry["failures"].append(failure)
        if self.entry["status"] == "ok":
            where = f"{step} {query}" if query else step
            self.entry.update(status="failed", reason=f"{where}: {failure['error']}")

    def run(self) -> dict[str, Any]:
        """Load, then the single-client runs (hot, and cold when asked); concurrency comes after every engine's."""
        try:
            self.engine = connect(self.name, self.dsn)
            self.in_process = self.engine.in_process is not None
            server = managed_server(self.name, self.dsn)
            self.entry["profile"] = (f"{server.profile} (dbbench servers up --profile {server.profile})" if server
                                     else "embedded" if self.in_process else "the server's own (not dbbench's)")
            self.entry.update(name=self.engine.name, version=self.engine.version(), settings=self.engine.settings(),
                              server_time=self.engine.server_time_method(), compaction=self.engine.compaction)
        except Exception as exc:  # noqa: BLE001 - no server, no driver, no license: skipped with the reason
            self.entry.update(status="skipped",
                              reason=f"cannot connect to {redact(self.dsn)}: {type(exc).__name__}: {exc}")
            return self.entry
        try:
            self.loaded = self.load()
            if self.loaded:
                self.queries()
        finally:
            self.close()
        return self.entry

    def close(self) -> None:
        try:
            if self.engine is not None:
                self.engine.close()
        except Exception:  # noqa: BLE001, S110 - a dead server cannot be closed cleanly; nothing to keep
            pass

    def load(self) -> bool:
        """Warm the engine up, then create the schema and load every table, once per batch size (each load timed
        to its verified end point: the rows visible to a count); then compact each table of the last load (timed
        apart) and measure its storage."""
        try:
            self.engine.warm_up()
        except Exception as exc:  # noqa: BLE001
            self.fail("warm-up", None, exc)
            return False
        for batch_rows in self.config.batch_rows:
            record: dict[str, Any] = {"batch_rows": batch_rows, "valid": False, "tables": {}, "error": None}
            self.entry["load"].append(record)
            step = "create schema"
            try:
                self.engine.create_schema()
                for table in TABLES:
                    step = f"load {table}"
                    loaded = self.engine.load(table, iter_batches(self.config.data, table, batch_rows))
                    record["tables"][table] = {
                        "rows": loaded.rows, "bytes_in": loaded.bytes_in, "seconds": loaded.seconds,
                        "rows_per_s": loaded.rows / loaded.seconds, "mb_per_s": loaded.bytes_in / MB / loaded.seconds,
                        "csv_mb_per_s": self.data["csv_bytes"][table] / MB / loaded.seconds,
                    }
            except Exception as exc:  # noqa: BLE001
                record["error"] = f"{step} (batch_rows={batch_rows}): {type(exc).__name__}: {exc}"
                self.fail(f"{step} (batch_rows={batch_rows})", None, exc)
                for query in self.config.queries:
                    self.entry["queries"][query] = {"status": "not_run", "valid": False, "error": f"{step} failed"}
                return False
            finally:
                self.progress(f"{self.name}: load, batch {batch_rows:,} rows")
            record["valid"] = True
        step = "compact"
        try:
            for table in TABLES:
                step = f"compact {table}"
                t0 = time.perf_counter()
                self.engine.compact(table)
                compact_s = time.perf_counter() - t0
                step = f"storage {table}"
                self.entry["storage"][table] = storage_entry(self.engine.storage(table), self.data["rows"][table],
                                                             self.data["csv_bytes"][table], compact_s)
        except Exception as exc:  # noqa: BLE001
            self.fail(step, None, exc)
        return True

    def queries(self) -> None:
        for query in self.config.queries:
            runs = self.workload.hot(query, self.config.warmup + self.config.repeat)
            entry = measure_query(self.engine, query, runs, self.refs, self.config.warmup)
            self.entry["queries"][query] = entry
            if entry["status"] == "error":
                self.fail("query (hot)", query, entry["error"])
            self.progress(f"{self.name}: {query}")
        if not self.config.cold:
            return
        self.entry["cold_method"] = cold_method(self.name, self.engine, self.dsn)
        for query in self.config.queries:
            entry = self.entry["queries"][query]
            if entry["status"] in ("ok", "wrong"):
                self.cold(query, entry)
            self.progress(f"{self.name}: {query} (cold)")

    def cold(self, query: str, entry: dict[str, Any]) -> None:
        """Restart, then one timed run of the query with the workload's cold parameters (compared like every other)."""
        params = self.workload.params(query, "cold", 0)
        ref = self.refs(query, params)
        try:
            self.engine = _reopen(self.engine, self.name, self.dsn, self.config.drop_caches)
            sample = self.engine.timed_query(query, params)
        except Exception as exc:  # noqa: BLE001
            entry.update(status="error", valid=False, error=f"cold run: {type(exc).__name__}: {exc}")
            self.fail("query (cold)", query, exc)
            return
        verdict = compare(sample.frame, ref, query)
        entry["cold"] = timings([sample.client_s], [sample.server_s])
        entry["cold_params"] = params
        if not verdict.ok:
            entry.update(status="wrong", valid=False, verdict=f"cold run: {verdict}")

    def concurrency(self, mix: list[str], left_out: dict[str, str]) -> None:
        """The clients' runs of the run's common mix (`common_mix`), each client on its own connection."""
        for clients in self.config.clients:
            if self.loaded and mix:
                record = concurrency(self.name, self.dsn, mix, self.workload, self.refs, clients,
                                     self.config.duration_s, self.in_process)
                record["left_out"] = left_out
                if not record["valid"]:
                    self.fail(f"concurrency ({clients} clients)", None,
                              "; ".join(record["problems"][:3]) or "no query ran")
                self.entry["concurrency"].append(record)
            self.progress(f"{self.name}: {clients} client(s)")


def common_mix(queries: list[str], entries: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """(the queries every engine that answered any answered correctly alone, {query left out: which engine
    could not answer it, and why}): concurrency runs the same mix on every engine."""
    answering = [e for e in entries if any(q.get("valid") for q in e["queries"].values())]
    left_out = {}
    for query in queries:
        why = [f"{e['name']}: {e['queries'][query]['status']}" for e in answering if not e["queries"][query]["valid"]]
        if why:
            left_out[query] = "; ".join(why)
    return [q for q in queries if q not in left_out], left_out


def dataset_info(data: Path) -> dict[str, Any]:
    """The dataset's manifest, raw CSV sizes and identity (name, rows, checksums: runs of different datasets
    never merge in a report)."""
    manifest = describe(data)
    sizes = manifest.get("csv_bytes") or {t: csv_bytes(data, t) for t in TABLES}
    info = {"path": str(Path(data).resolve()), **manifest, "csv_bytes": sizes}
    return {**info, "identity": results.dataset_identity(info)}


def run(config: RunConfig, progress: Progress | None = None,
        references: dict[str, pl.DataFrame] | None = None) -> dict[str, Any]:
    """Benchmark every engine of `config`; return (and write to config.out) the results.

    `references` replaces the Polars answers (tests use it to prove a wrong answer is caught)."""
    progress = progress or (lambda _: None)
    unknown = [q for q in config.queries if q not in QUERY_NAMES]
    if unknown:
        raise ValueError(f"unknown queries {unknown}; known: {', '.join(QUERY_NAMES)}")
    data = dataset_info(config.data)
    workload = Workload.of(config.data, config.seed)
    refs = References(config.data, references)
    progress("dataset and workload")
    out: dict[str, Any] = {
        "schema": results.SCHEMA,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": None,
        "command": [redact(arg) for arg in sys.argv],  # a --dsn may carry a password
        "machine": machine_info(),
        "dataset": data,
        "config": {"repeat": config.repeat, "warmup": config.warmup, "clients": list(config.clients),
                   "duration_s": config.duration_s, "cold": config.cold, "batch_rows": list(config.batch_rows),
                   "queries": list(config.queries), "workload": workload.describe()},
        "caches": {"result_cache": ("off (ClickHouse use_query_cache = 0; PostgreSQL, InfluxDB, DuckDB and ArcticDB "
                                    "have none)"),
                   "os_page_cache": page_cache_policy(config)},
        "engines": {},
    }
    runs = []
    for name in config.engines:
        engine_run = EngineRun(name, config.dsns.get(name) or default_dsn(name), config, data, workload, refs,
                               progress)
        entry = engine_run.run()
        runs.append(engine_run)
        out["engines"][entry["name"]] = entry  # the adapter's own name: timescaledb or postgresql
        if config.out:
            results.write(config.out, out)
    mix, left_out = common_mix(list(config.queries), [r.entry for r in runs])
    for engine_run in runs:
        engine_run.concurrency(mix, left_out)
        if config.out:
            results.write(config.out, out)
    out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    if config.out:
        results.write(config.out, out)
    return results.validate(out)


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The one-line summary's fields: engines by status, queries correct/wrong/error, the out file."""
    fields: dict[str, Any] = {}
    for name, e in res["engines"].items():
        qs = [q["status"] for q in e["queries"].values()]
        fields[name] = e["status"] if e["status"] == "skipped" else (
            f"{e['status']}:{qs.count('ok')}ok/{qs.count('wrong')}wrong/{qs.count('error')}err/"
            f"{qs.count('unsupported')}unsup")
    return fields
