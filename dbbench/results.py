"""The results file of one `dbbench run`: plain JSON (orjson), one file per run, read back by `dbbench report`.

Layout (SCHEMA = "dbbench.results/1"):

    schema, started, finished, command, machine{cpu, cores, memory_bytes, os, python, ...},
    dataset{path, source, rows{table}, bytes{table}, csv_bytes{table}, min_ts, max_ts, symbols, venues, sha256{table},
            identity{name, source, rows{table}, min_ts, max_ts, sha256{table}, digest}},
    config{repeat, warmup, clients, cold, batch_rows, duration_s, queries,
           workload{seed, start, end, symbols, range_minutes, window_minutes, scan_minutes, generator, phases}},
    caches{result_cache, os_page_cache, cold_method},
    engines{name: {
        engine (as asked), name (as the adapter reports itself), status ("ok" | "failed" | "skipped"), reason,
        failures[{step, query, error}], dsn (redacted), version, settings, server_time, cold_method,
        profile (the server settings' profile: `dbbench servers up --profile`, embedded, or the server's own),
        compaction (what the engine's compaction does),
        load[{batch_rows, valid, tables{table: {rows, bytes_in, seconds, rows_per_s, mb_per_s, csv_mb_per_s}}, error}]
            (seconds: from the first row sent to the rows visible to a count, verified equal to those sent),
        storage{table: {bytes_on_disk (after compaction), includes (what it counts), compact_seconds,
                        uncompressed_bytes (where the engine compresses a table after loading it), wal_bytes
                        (InfluxDB: left in its WAL, not counted), rows,
                        bytes_per_row, compression_vs_csv}},
        queries{query: {status ("ok" | "wrong" | "error" | "unsupported" | "not_run"), valid, verdict,
                        rows, expected_rows, error, params[{start, end, symbol, scan_start, scan_end}] (the
                        timed runs'), cold_params,
                        hot{client_s[], server_s[], client{stats}, server{stats}, overhead_s},
                        cold{...same as hot} | null}},
        concurrency[{clients, mode, duration_s, queries, mix[query], left_out{query: status}, seed, errors, wrong,
                     qps, latency{stats}, problems, valid}]}}

Timings are seconds. A number is trustworthy only where `valid` is true: a wrong answer, an error
or a step cut short by a failure is kept for the record but never marked valid. Fields added since
the first files of this schema (dataset.identity, config.workload, params, mix, left_out, compaction,
storage includes, compact_seconds and uncompressed_bytes) are
optional on reading; a file without dataset.identity is identified by `dataset_identity` from
what its dataset part holds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from data_loaders.atomic import IntegrityError, atomic_output, checked

SCHEMA = "dbbench.results/1"
ENGINE_STATUSES = ("ok", "failed", "skipped")
QUERY_STATUSES = ("ok", "wrong", "error", "unsupported", "not_run")
TOP_KEYS = ("schema", "started", "finished", "machine", "dataset", "config", "caches", "engines")


class ResultsError(ValueError):
    """A results file that does not follow the layout above."""


# The types of the fields `dbbench report` reads. A spec is a tuple of types, {key: spec} for an object
# (a key ending in "?" may be missing), [spec] for a list, Each(spec) for an object of any keys whose
# values follow spec, Maybe(spec) for null or spec.
NUMBER, TEXT, FLAG = (int, float), (str,), (bool,)


class Each(tuple):
    """An object whose every value follows the one spec inside."""


class Maybe(tuple):
    """null, or the one spec inside."""


STATS = {"min": NUMBER, "median": NUMBER, "p95": NUMBER}
TIMING = Maybe([{"client?": Maybe([STATS]), "server?": Maybe([{"median": NUMBER}]), "overhead_pct?": Maybe([NUMBER])}])
OPTIONAL_TEXT = Maybe([TEXT])
ENGINE = {
    "status": TEXT, "reason?": OPTIONAL_TEXT, "version?": OPTIONAL_TEXT, "server_time?": OPTIONAL_TEXT,
    "cold_method?": OPTIONAL_TEXT, "profile?": OPTIONAL_TEXT,
    "queries?": Each([{"status": TEXT, "valid?": Maybe([FLAG]), "hot?": TIMING, "cold?": TIMING,
                       "error?": OPTIONAL_TEXT, "verdict?": OPTIONAL_TEXT}]),
    "load?": [{"batch_rows": NUMBER, "valid": FLAG, "tables": Each([{
        "rows": NUMBER, "seconds": NUMBER, "rows_per_s": NUMBER, "mb_per_s": NUMBER, "csv_mb_per_s": NUMBER}])}],
    "compaction?": OPTIONAL_TEXT,
    "storage?": Each([{"bytes_on_disk": NUMBER, "includes?": TEXT, "compact_seconds?": NUMBER, "rows?": Maybe([NUMBER]),
                       "bytes_per_row?": Maybe([NUMBER]), "compression_vs_csv?": Maybe([NUMBER]),
                       "uncompressed_bytes?": NUMBER, "wal_bytes?": NUMBER}]),
    "concurrency?": [{"clients": NUMBER, "duration_s": NUMBER, "queries": NUMBER, "qps": NUMBER, "errors": NUMBER,
                      "wrong": NUMBER, "valid": FLAG, "mix?": [TEXT], "left_out?": Each([TEXT]),
                      "latency?": Maybe([{"median?": Maybe([NUMBER]), "p95?": Maybe([NUMBER])}])}],
}
IDENTITY = {"name": TEXT, "source": OPTIONAL_TEXT, "rows": Each([NUMBER]), "min_ts": Maybe([NUMBER]),
            "max_ts": Maybe([NUMBER]), "sha256": Each([TEXT]), "digest": OPTIONAL_TEXT}
LAYOUT = {"schema": TEXT, "started": TEXT, "machine": {},
          "dataset": {"path?": TEXT, "source?": {"kind?": OPTIONAL_TEXT}, "rows?": Each([NUMBER]),
                      "min_ts?": Maybe([NUMBER]), "max_ts?": Maybe([NUMBER]), "sha256?": Each([TEXT]),
                      "identity?": IDENTITY},
          "config": {"repeat": NUMBER, "cold": FLAG, "workload?": {"seed": NUMBER}},
          "caches": {"os_page_cache": TEXT}, "engines": Each([ENGINE])}


def dataset_identity(dataset: dict[str, Any]) -> dict[str, Any]:
    """Name (the dataset folder's), source, rows and each table's sha256 (from dataset.json), and one digest
    of those checksums: two runs are on the same data exactly when their digests agree. A dataset built
    before checksums were recorded has no digest; it is then known by its rows and time range only."""
    sha = dict(sorted((dataset.get("sha256") or {}).items()))
    source = dataset.get("source")
    digest = hashlib.sha256("".join(f"{t}:{h}\n" for t, h in sha.items()).encode()).hexdigest() if sha else None
    return {"name": Path(dataset.get("path") or "?").name, "source": source.get("kind") if isinstance(source, dict)
            else None, "rows": dict(dataset.get("rows") or {}), "min_ts": dataset.get("min_ts"),
            "max_ts": dataset.get("max_ts"), "sha256": sha, "digest": digest}


def identity_of(results: dict[str, Any]) -> dict[str, Any]:
    """The run's dataset identity: as recorded, or derived from its dataset part (older files)."""
    return results["dataset"].get("identity") or dataset_identity(results["dataset"])


def same_dataset(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """By digest when both have one, else by rows and time range."""
    if a["digest"] and b["digest"]:
        return a["digest"] == b["digest"]
    return (a["rows"], a["min_ts"], a["max_ts"]) == (b["rows"], b["min_ts"], b["max_ts"])


def describe_dataset(identity: dict[str, Any]) -> str:
    """'synth-300000 (synth): 300,512 rows, sha256 1a2b3c4d5e6f' for tables, captions and error messages."""
    rows = sum(identity["rows"].values())
    digest = f"sha256 {identity['digest'][:12]}" if identity["digest"] else "no checksums recorded"
    return f"{identity['name']} ({identity['source'] or '?'}): {rows:,} rows, {digest}"


def _check(value: Any, spec: Any, where: str) -> None:
    """Raise ResultsError at the first field (named by its path) whose type does not follow `spec`."""
    if isinstance(spec, Maybe):
        if value is not None:
            _check(value, spec[0], where)
    elif isinstance(spec, Each):
        _check(value, {}, where)
        for key, item in value.items():
            _check(item, spec[0], f"{where}.{key}")
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ResultsError(f"{where} must be an object, got {value!r:.80}")
        for key, item in spec.items():
            name = key.removesuffix("?")
            if name in value or name == key:
                _check(value.get(name), item, f"{where}.{name}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise ResultsError(f"{where} must be a list, got {value!r:.80}")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
    elif not isinstance(value, spec) or isinstance(value, bool) and bool not in spec:
        names = " or ".join(t.__name__ for t in spec)
        raise ResultsError(f"{where} must be {names}, got {value!r:.80}")


def validate(results: dict[str, Any]) -> dict[str, Any]:
    """Check the layout (keys, field types, statuses, validity rules); return the results unchanged."""
    if not isinstance(results, dict):
        raise ResultsError(f"results must be a JSON object, got {type(results).__name__}")
    missing = [k for k in TOP_KEYS if k not in results]
    if missing:
        raise ResultsError(f"results lack {missing}")
    _check(results, LAYOUT, "results")
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
            if q.get("valid") and not (q.get("hot") or {}).get("client"):
                raise ResultsError(f"{name}/{query}: marked valid without hot client timings")
    return results


def write(path: Path, results: dict[str, Any]) -> Path:
    """Validate and write atomically (a crash leaves the previous file, never half of one), with its sha256."""
    path = Path(path)
    with atomic_output(path, checksum=True) as partial:
        partial.write_bytes(orjson.dumps(validate(results), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def read(path: Path) -> dict[str, Any]:
    try:
        results = orjson.loads(checked(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not JSON: {exc}") from exc
    except IntegrityError as exc:
        raise ResultsError(str(exc)) from exc
    try:
        return validate(results)
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from exc
