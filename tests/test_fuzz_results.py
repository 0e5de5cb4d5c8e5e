"""Property-based fuzzing of dbbench results files (dbbench/results.py) and the report that reads them.

A valid results file (an ok engine with queries, load, storage and concurrency; a skipped one) is
mutated: a field deleted, or replaced by a value of another type (null, a string, a number, a bool,
a list, an object, a huge number), a status changed, the text cut short or made not UTF-8.
Properties: results.read returns or raises a ResultsError naming the file; what it returns, the
report renders (frames, Markdown, HTML) without an exception.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbbench import report, results

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
STATS = {"n": 2, "min": 0.01, "median": 0.02, "mean": 0.02, "p95": 0.03, "max": 0.03}
TIMING = {"client_s": [0.01, 0.03], "server_s": [0.01, 0.02], "client": STATS, "server": STATS,
          "overhead_s": 0.001, "overhead_pct": 5.0}
VALID: dict[str, Any] = {
    "schema": results.SCHEMA, "started": "2024-08-09T00:00:00Z", "finished": "2024-08-09T00:01:00Z",
    "command": ["dbbench", "run"],
    "machine": {"hostname": "h", "cpu": "x", "cores": 2, "memory_bytes": 2**33, "os": "Linux", "python": "3.11"},
    "dataset": {"path": "d", "source": {"kind": "synth"}, "rows": {"trades": 10, "quotes": 20}, "min_ts": 1,
                "max_ts": 2, "symbols": ["BTCUSDT"], "venues": ["a"]},
    "config": {"repeat": 2, "warmup": 1, "clients": [1, 2], "cold": False, "batch_rows": [1000]},
    "caches": {"result_cache": "off", "os_page_cache": "warm"},
    "engines": {
        "clickhouse": {
            "engine": "clickhouse", "name": "clickhouse", "status": "ok", "reason": None, "failures": [],
            "version": "26", "server_time": "system.query_log", "cold_method": "",
            "load": [{"batch_rows": 1000, "valid": True, "error": None, "tables": {"trades": {
                "rows": 10, "bytes_in": 100, "seconds": 0.1, "rows_per_s": 100.0, "mb_per_s": 1.0,
                "csv_mb_per_s": 1.0}}}],
            "storage": {"trades": {"bytes_on_disk": 100, "rows": 10, "bytes_per_row": 10.0, "compression_vs_csv": 2.0}},
            "queries": {
                "vwap": {"status": "ok", "valid": True, "verdict": "ok", "rows": 1, "expected_rows": 1, "error": None,
                         "hot": TIMING, "cold": TIMING},
                "nbbo": {"status": "wrong", "valid": False, "verdict": "WRONG", "rows": 1, "expected_rows": 2,
                         "error": None, "hot": TIMING, "cold": None},
            },
            "concurrency": [{"clients": 2, "mode": "mix", "duration_s": 1.0, "queries": 10, "errors": 0, "wrong": 0,
                             "qps": 10.0, "latency": STATS, "problems": [], "valid": True}],
        },
        "kdb": {"engine": "kdb", "name": "kdb", "status": "skipped", "reason": "no q", "failures": [], "load": [],
                "storage": {}, "queries": {}, "concurrency": []},
    },
}
OTHER_VALUES = [None, "x", "", 0, -1, 1.5, 1e308, True, False, [], [1], {}, {"a": 1}, 2**63, "ok", "skipped"]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and list indices) into a JSON value."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


PATHS = _paths(VALID)[1:]


@st.composite
def results_bytes(draw) -> bytes:
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(st.sampled_from(OTHER_VALUES))
        except (KeyError, IndexError, TypeError):  # an earlier mutation changed the path
            continue
    text = orjson.dumps(data)
    how = draw(st.sampled_from(["json"] * 8 + ["truncate", "non_utf8", "not_object", "nan"]))
    if how == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif how == "non_utf8":
        text = text.replace(b'"x"', b'"\xff"', 1) + (b"" if b'"x"' in text else b"\xff")
    elif how == "not_object":
        text = draw(st.sampled_from([b"[]", b"null", b"1", b'"s"', b""]))
    elif how == "nan":
        text = text.replace(b"0.02", b"NaN", 1)
    return text


def check_results(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.json"
        path.write_bytes(data)
        try:
            runs = [results.read(path)]
        except results.ResultsError as exc:
            assert str(path) in str(exc), f"error names no file: {exc}"
            return
        tables = report.frames(runs)
        report.markdown(runs, tables)
        report.html_page(runs, tables)


@FUZZ
@given(results_bytes())
def test_fuzz_results_json(data: bytes) -> None:
    check_results(data)


def test_valid_example_reads_and_renders() -> None:
    check_results(orjson.dumps(VALID))


# --- regressions: the inputs the fuzzing found, each as a plain test -------------------------------
def _with(path: tuple, value: Any) -> bytes:
    data = copy.deepcopy(VALID)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return orjson.dumps(data)


@pytest.mark.parametrize(("data", "message"), [
    (b"[]", "results must be a JSON object"),  # was already a ResultsError ('results lack ...'); now says why
    (b"null", "results must be a JSON object"),  # TypeError: 'in' on None
    (_with(("engines",), []), "results.engines must be an object"),  # was AttributeError: list.items
    (_with(("engines", "clickhouse"), "x"), "results.engines.clickhouse must be an object"),
    (_with(("engines", "clickhouse", "queries", "vwap", "hot", "client"), {"median": 1}),
     "results.engines.clickhouse.queries.vwap.hot.client.min must be int or float"),  # KeyError in the report
    (_with(("engines", "clickhouse", "queries", "vwap", "hot", "client", "median"), "x"),
     "hot.client.median must be int or float"),  # a string the report's table could not hold
    (_with(("engines", "clickhouse", "load", 0, "tables"), None), "load[0].tables must be an object"),
    (_with(("engines", "clickhouse", "storage", "trades", "rows"), "ten"), "storage.trades.rows must be int or float"),
    (_with(("engines", "clickhouse", "concurrency", 0, "qps"), None), "concurrency[0].qps must be int or float"),
    (_with(("config", "repeat"), None), "results.config.repeat must be int or float"),  # None in the runs table
    (_with(("caches",), {}), "results.caches.os_page_cache must be str"),  # KeyError in the report
    (_with(("dataset", "rows", "trades"), "x"), "results.dataset.rows.trades must be int or float"),  # sum() failed
    # found by the fuzzing after the checks above: each crashed the report
    (_with(("engines", "clickhouse", "queries", "vwap", "hot", "client"), None),
     "vwap: marked valid without hot client timings"),  # TypeError formatting a None median
    (_with(("engines", "clickhouse", "queries"), None), "clickhouse.queries must be an object"),  # None.items()
    (_with(("started",), None), "results.started must be str"),  # None[:16] in the run's label
])
def test_bad_results_are_a_results_error_naming_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(data)
    with pytest.raises(results.ResultsError) as info:
        results.read(path)
    assert str(path) in str(info.value) and message in str(info.value)
