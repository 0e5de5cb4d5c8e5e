"""A time range with no rows answers empty in every engine and in the Polars reference (no crash)."""

from pathlib import Path

import pytest

from dbbench.dataset import build_synth, iter_batches
from dbbench.engines import connect
from dbbench.engines.base import QUERY_NAMES, TABLES
from dbbench.queries import compare, default_params, reference

HOUR_NS = 3_600 * 10**9


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("empty-ranges")
    build_synth(out, 5_000, seed=3)
    return out


def empty_params(data: Path) -> dict:
    """The dataset's own parameters moved a day past its last row."""
    p = default_params(data)
    far = p["end"] + 24 * HOUR_NS
    return {**p, "start": far, "end": far + HOUR_NS, "scan_start": far, "scan_end": far + HOUR_NS,
            "window_start": far, "window_end": far + HOUR_NS}


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_the_reference_answers_an_empty_range_with_no_rows(data, name):
    assert reference(name, data, empty_params(data)).height == 0


ENGINE_DSNS = {"clickhouse": lambda request: "chdb://memory",  # chDB: one path per process, shared
               "timescaledb": lambda request: request.getfixturevalue("timescaledb_dsn"),
               "influxdb": lambda request: request.getfixturevalue("influxdb_dsn"),
               "duckdb": lambda request: f"duckdb://{request.getfixturevalue('tmp_path_factory').mktemp('duckdb')}/db",
               "arcticdb": lambda request: f"lmdb://{request.getfixturevalue('tmp_path_factory').mktemp('arcticdb')}"}


@pytest.fixture(scope="module", params=list(ENGINE_DSNS))
def loaded(request, data):
    engine = connect(request.param, ENGINE_DSNS[request.param](request))
    engine.create_schema()
    for table in TABLES:
        engine.load(table, iter_batches(data, table, 5_000))
    yield engine
    engine.close()


@pytest.mark.server
@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_engine_answers_an_empty_range_with_no_rows(loaded, data, name):
    params = empty_params(data)
    try:
        answer = loaded.query(name, params)
    except NotImplementedError as unsupported:  # a query the dialect cannot express (InfluxQL: no joins; ArcticDB)
        pytest.skip(str(unsupported))
    verdict = compare(answer, reference(name, data, params), name)
    assert verdict.ok and verdict.rows == 0, verdict.detail
