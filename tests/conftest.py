import os
from pathlib import Path

import pytest

from data_loaders.paths import binance_recordings
from dbbench.dataset import build_binance, build_synth, iter_batches, read_manifest
from dbbench.engines import connect
from dbbench.engines.base import TABLES, Engine

os.environ.setdefault("PYKX_UNLICENSED", "true")


@pytest.fixture(scope="session")
def binance() -> dict[str, list[Path]]:
    """Real recordings from ../shared/data/binance: {"spot": [file, file], "usdm": [file]}."""
    groups = binance_recordings()
    if set(groups) != {"spot", "usdm"}:
        pytest.skip("real Binance recordings not found under ../shared/data/binance (set HFT_SHARED_DATA)")
    return groups


def _server_dsn(engine: str, env: str, tmp_path_factory: pytest.TempPathFactory):
    """The DSN in `env` if set; else a scratch server started through dbbench.servers (stopped at the end);
    else a skip with the reason, or under CI=true a failure."""
    if os.environ.get(env):
        yield os.environ[env]
        return
    from dbbench import servers

    reason = servers.available()[engine]
    if reason:
        message = f"{env} not set and no native server can start: {reason}"
        if os.environ.get("CI") == "true":  # CI installs the servers: a missing one fails the engine's tests
            pytest.fail(message)
        pytest.skip(message)
    directory = tmp_path_factory.mktemp(f"servers-{engine}")
    started = servers.up([engine], directory)[engine]
    try:
        yield started.dsn
    finally:
        servers.down([engine], directory)


@pytest.fixture(scope="session")
def timescaledb_dsn(tmp_path_factory: pytest.TempPathFactory):
    """PostgreSQL/TimescaleDB: $DBBENCH_TIMESCALEDB_DSN, else a scratch PostgreSQL 15 on loopback."""
    yield from _server_dsn("timescaledb", "DBBENCH_TIMESCALEDB_DSN", tmp_path_factory)


@pytest.fixture(scope="session")
def influxdb_dsn(tmp_path_factory: pytest.TempPathFactory):
    """InfluxDB: $DBBENCH_INFLUXDB_DSN, else a scratch influxd on loopback."""
    yield from _server_dsn("influxdb", "DBBENCH_INFLUXDB_DSN", tmp_path_factory)


def load_dataset(engine_name: str, dsn: str, kind: str, request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Path]:
    """An engine connected to `dsn` with a dataset loaded in small batches (their ends fall inside
    runs of equal timestamps) and compacted, as `dbbench load` and `dbbench run` leave it: `kind`
    binance (the real recordings) or synth; each table's row count checked against the manifest."""
    out = tmp_path_factory.mktemp(kind)
    if kind == "binance":
        build_binance(out, request.getfixturevalue("binance"))
    else:
        build_synth(out, 20_000, seed=5)
    engine = connect(engine_name, dsn)
    engine.create_schema()
    for table in TABLES:
        result = engine.load(table, iter_batches(out, table, 7_000))
        assert result.rows == read_manifest(out)["rows"][table]
        engine.compact(table)
    return engine, out
