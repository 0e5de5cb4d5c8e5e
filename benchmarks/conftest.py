"""pytest-benchmark suites of dbbench: options, the dataset, and each engine connected and loaded once.

    pytest benchmarks/test_db_queries.py benchmarks/test_db_load.py --benchmark-only \\
        --db-engines clickhouse,timescaledb --db-rows 1000000 [--db-dsn timescaledb=postgresql://...]

An engine with no DSN given gets: clickhouse an embedded chDB in a scratch directory,
timescaledb/influxdb the shared `timescaledb_dsn`/`influxdb_dsn` fixtures ($DBBENCH_*_DSN or a
scratch server), kdb its default DSN. An engine that cannot be reached is skipped with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from data_loaders.redact import redact
from dbbench.dataset import build_synth, iter_batches, read_manifest
from dbbench.engines import ENGINES, connect, default_dsn
from dbbench.engines.base import QUERY_NAMES, TABLES, Engine
from dbbench.queries import default_params, params_for, reference
from tests.conftest import influxdb_dsn, timescaledb_dsn  # noqa: F401 - the shared server fixtures

SERVER_FIXTURES = {"timescaledb": "timescaledb_dsn", "influxdb": "influxdb_dsn"}
EMBEDDED = {"clickhouse": "chdb:///{folder}", "duckdb": "duckdb:///{folder}/dbbench.duckdb",
            "arcticdb": "lmdb:///{folder}"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dbbench")
    group.addoption("--db-engines", default=",".join(ENGINES), help="comma-separated engines to benchmark")
    group.addoption("--db-dsn", action="append", default=[], metavar="ENGINE=DSN", help="an engine's DSN (repeatable)")
    group.addoption("--db-rows", type=int, default=100_000, help="rows of the synthetic dataset (trades + quotes)")
    group.addoption("--db-data", default=None, help="a `dbbench dataset` directory to use instead of a synthetic one")
    group.addoption("--db-rounds", type=int, default=10, help="timed rounds per query (after one warm-up)")
    group.addoption("--db-batch-rows", type=int, default=1_000_000, help="rows per load batch")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_name" in metafunc.fixturenames:
        engines = [e.strip() for e in metafunc.config.getoption("--db-engines").split(",") if e.strip()]
        unknown = [e for e in engines if e not in ENGINES]
        if unknown:
            raise pytest.UsageError(f"--db-engines: unknown {unknown}; engines: {', '.join(ENGINES)}")
        metafunc.parametrize("engine_name", engines, scope="session")
    if "query" in metafunc.fixturenames:
        metafunc.parametrize("query", QUERY_NAMES)


@pytest.fixture(scope="session")
def db_dsns(pytestconfig: pytest.Config) -> dict[str, str]:
    dsns = {}
    for pair in pytestconfig.getoption("--db-dsn"):
        engine, sep, dsn = pair.partition("=")
        if not sep or engine not in ENGINES:
            raise pytest.UsageError(f"--db-dsn takes ENGINE=DSN with ENGINE one of {', '.join(ENGINES)}; got {pair!r}")
        dsns[engine] = dsn
    return dsns


@pytest.fixture(scope="session")
def db_data(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = pytestconfig.getoption("--db-data")
    if given:
        read_manifest(Path(given))  # a clear error when it is not a dataset
        return Path(given)
    data = tmp_path_factory.mktemp("dbbench-data")
    build_synth(data, pytestconfig.getoption("--db-rows"))
    return data


@pytest.fixture(scope="session")
def db_dataset_info(db_data: Path) -> dict[str, Any]:
    """What every benchmark records of its dataset: rows per table and each file's sha256."""
    manifest = read_manifest(db_data)
    digests = {}
    for table in TABLES:
        digest = hashlib.sha256()
        with open(db_data / f"{table}.parquet", "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        digests[table] = digest.hexdigest()
    return {"dataset": str(db_data), "dataset_rows": manifest["rows"], "dataset_sha256": digests}


@pytest.fixture(scope="session")
def db_params(db_data: Path) -> dict[str, Any]:
    return default_params(db_data)


@pytest.fixture(scope="session")
def db_reference(db_data: Path, db_params: dict[str, Any]) -> Callable[[str], pl.DataFrame]:
    """The Polars answer of a query, computed once."""
    cache: dict[str, pl.DataFrame] = {}

    def answer(query: str) -> pl.DataFrame:
        if query not in cache:
            cache[query] = reference(query, db_data, params_for(query, db_params))
        return cache[query]

    return answer


def _dsn(engine: str, dsns: dict[str, str], request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> str:
    if engine in dsns:
        return dsns[engine]
    if engine in EMBEDDED:  # a scratch folder, never the working folder's .dbbench
        return EMBEDDED[engine].format(folder=str(tmp_path_factory.mktemp(engine)).lstrip("/"))
    if engine in SERVER_FIXTURES:
        return request.getfixturevalue(SERVER_FIXTURES[engine])  # skips with the reason when no server can start
    return default_dsn(engine)


def name_measured(benchmark: Any, engine_name: str, engine: Engine) -> None:
    """Name the benchmark for the engine actually measured: the id pytest gave it names the one asked
    for, and timescaledb runs as plain postgresql on a server without the extension."""
    if engine.name != engine_name:
        benchmark.name = benchmark.name.replace(f"[{engine_name}", f"[{engine.name}")
        benchmark.fullname = benchmark.fullname.replace(f"[{engine_name}", f"[{engine.name}")


def load_all(engine: Engine, data: Path, batch_rows: int) -> dict[str, int]:
    """Create the schema and load every table; rows loaded per table."""
    engine.create_schema()
    return {table: engine.load(table, iter_batches(data, table, batch_rows)).rows for table in TABLES}


@pytest.fixture(scope="session")
def db_engine(engine_name: str, db_dsns: dict[str, str], db_data: Path, request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory):
    """The engine connected (or skipped with the reason) and loaded with the dataset."""
    dsn = _dsn(engine_name, db_dsns, request, tmp_path_factory)
    try:
        engine = connect(engine_name, dsn)
    except Exception as exc:  # noqa: BLE001 - no server, driver or license: skip, saying which
        pytest.skip(f"{engine_name}: cannot connect to {redact(dsn)}: {type(exc).__name__}: {exc}")
    try:
        load_all(engine, db_data, request.config.getoption("--db-batch-rows"))
        yield engine
    finally:
        engine.close()
