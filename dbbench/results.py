"""The results file of one `dbbench run`: plain JSON (orjson), one file per run, read back by `dbbench report`.

Layout (SCHEMA = "dbbench.results/1"):

    schema, started, finished, command, machine{cpu, cores, memory_bytes, os, python, ...},
    dataset{path, source, rows{table}, bytes{table}, csv_bytes{table}, min_ts, max_ts, symbols, venues},
    config{repeat, warmup, clients, cold, batch_rows, params, duration_s},
    caches{result_cache, os_page_cache, cold_method},
    engines{name: {
        engine (as asked), name (as the adapter reports itself), status ("ok" | "failed" | "skipped"), reason,
        failures[{step, query, error}], dsn (redacted), version, settings, server_time, cold_method,
        load[{batch_rows, valid, tables{table: {rows, bytes_in, seconds, rows_per_s, mb_per_s, csv_mb_per_s}}, error}],
        storage{table: {bytes_on_disk, rows, bytes_per_row, compression_vs_csv}},
        queries{query: {status ("ok" | "wrong" | "error" | "unsupported" | "not_run"), valid, verdict,
                        rows, expected_rows, error,
                        hot{client_s[], server_s[], client{stats}, server{stats}, overhead_s},
                        cold{...same as hot} | null}},
        concurrency[{clients, mode, duration_s, queries, errors, wrong, qps, latency{stats}, problems, valid}]}}

Timings are seconds. A number is trustworthy only where `valid` is true: a wrong answer, an error
or a step cut short by a failure is kept for the record but never marked valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from data_loaders.atomic import atomic_output

SCHEMA = "dbbench.results/1"
ENGINE_STATUSES = ("ok", "failed", "skipped")
QUERY_STATUSES = ("ok", "wrong", "error", "unsupported", "not_run")
TOP_KEYS = ("schema", "started", "finished", "machine", "dataset", "config", "caches", "engines")


class ResultsError(ValueError):
    """A results file that does not follow the layout above."""


def validate(results: dict[str, Any]) -> dict[str, Any]:
    """Check the layout (keys, statuses, validity rules); return the results unchanged."""
    missing = [k for k in TOP_KEYS if k not in results]
    if missing:
        raise ResultsError(f"results lack {missing}")
    if results["schema"] != SCHEMA:
        raise ResultsError(f"results schema {results['schema']!r}, expected {SCHEMA!r}")
    for name, engine in results["engines"].items():
        if engine.get("status") not in ENGINE_STATUSES:
            raise ResultsError(f"engine {name}: status {engine.get('status')!r} not in {ENGINE_STATUSES}")
        if engine["status"] != "ok" and not engine.get("reason"):
            raise ResultsError(f"engine {name}: status {engine['status']} without a reason")
        for query, q in engine.get("queries", {}).items():
            if q.get("status") not in QUERY_STATUSES:
                raise ResultsError(f"{name}/{query}: status {q.get('status')!r} not in {QUERY_STATUSES}")
            if q.get("valid") and q["status"] != "ok":
                raise ResultsError(f"{name}/{query}: marked valid with status {q['status']}")
    return results


def write(path: Path, results: dict[str, Any]) -> Path:
    """Validate and write atomically (a crash leaves the previous file, never half of one)."""
    path = Path(path)
    with atomic_output(path) as partial:
        partial.write_bytes(orjson.dumps(validate(results), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def read(path: Path) -> dict[str, Any]:
    try:
        results = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not JSON: {exc}") from exc
    try:
        return validate(results)
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from exc
