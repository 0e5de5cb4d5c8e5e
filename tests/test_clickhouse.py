"""ClickHouse (embedded chDB): every query against the Polars reference, load verification, faults."""

import pyarrow.parquet as pq
import pytest

from dbbench.dataset import iter_batches, read_manifest
from dbbench.engines.base import QUERY_NAMES, TABLES, EngineError
from dbbench.engines.clickhouse.adapter import QUERIES, ClickHouse, render
from dbbench.queries import compare, default_params, reference
from tests.conftest import load_dataset

DSN = "chdb://memory"  # chDB allows one path per process: every test here shares it


@pytest.fixture(scope="module", params=["binance", "synth"])
def loaded(request, tmp_path_factory):
    """(engine, dataset dir) with the dataset loaded; the binance set is the real recordings."""
    engine, out = load_dataset("clickhouse", DSN, request.param, request, tmp_path_factory)
    yield engine, out
    engine.close()


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_query_matches_the_reference(loaded, name):
    engine, data = loaded
    params = default_params(data)
    verdict = compare(engine.query(name, params), reference(name, data, params), name)
    assert verdict.ok, verdict.detail
    assert verdict.rows > 0


def test_load_reports_rows_bytes_and_storage(loaded):
    engine, data = loaded
    rows = read_manifest(data)["rows"]
    assert engine.loaded_rows() == rows
    for table in TABLES:
        assert 0 < engine.storage(table).bytes
    assert engine.version().startswith("ClickHouse ") and engine.name == "clickhouse"


def test_symbols_are_quoted_and_identifiers_checked(loaded):
    engine, data = loaded
    text = render("range_scan", {**default_params(data), "symbol": "x' OR 1=1 --"})
    assert "'x\\' OR 1=1 --'" in text
    assert engine.query("range_scan", {**default_params(data), "symbol": "x' OR 1=1 --"}).height == 0
    with pytest.raises(ValueError, match="invalid identifier"):
        engine.load("trades; DROP TABLE quotes", [])
    with pytest.raises(KeyError):
        engine.load("book", [])
    assert set(QUERIES) == set(QUERY_NAMES)


def test_a_failure_mid_load_is_clear_and_the_partial_table_is_never_queried(loaded):
    _, data = loaded
    victim = ClickHouse(DSN)
    batches = iter_batches(data, "quotes", 1_000)

    def breaking():  # chDB has taken one batch when its source fails
        yield next(batches)
        raise OSError("disk went away")

    with pytest.raises(EngineError) as err:
        victim.load("quotes", breaking())
    message = str(err.value)
    assert "clickhouse: load quotes failed: 1,000 rows sent before the error" in message and "disk went away" in message
    assert "quotes" not in victim.loaded_rows()
    with pytest.raises(EngineError, match="not \\(completely\\) loaded"):
        victim.query("spread", default_params(data))
    victim.close()
    with pytest.raises(EngineError, match="load quotes failed: 0 rows sent before the error: chDB session is closed"):
        victim.load("quotes", iter_batches(data, "quotes"))
    fresh = ClickHouse(DSN)
    assert "quotes" not in fresh.loaded_rows()
    fresh.load("quotes", iter_batches(data, "quotes"))  # a full reload makes it queryable again
    assert compare(fresh.query("spread", default_params(data)), reference("spread", data, default_params(data)),
                   "spread").ok
    fresh.close()


def test_bad_dsn_is_refused():
    with pytest.raises(ValueError, match="DSN"):
        ClickHouse("mysql://x")


def test_plain_string_batches_load_as_the_dataset_dictionaries_do(loaded):
    engine, data = loaded
    plain = pq.ParquetFile(data / "quotes.parquet").iter_batches(batch_size=5_000)  # symbol, venue: plain strings
    assert engine.load("quotes", plain).rows == read_manifest(data)["rows"]["quotes"]
    params = default_params(data)
    assert compare(engine.query("last_quote", params), reference("last_quote", data, params), "last_quote").ok



QUERY_LOG_CONFIG = """<clickhouse>
    <query_log><database>system</database><table>query_log</table></query_log>
</clickhouse>
"""
SERVER_TIME_SCRIPT = """
import json, sys
from dbbench.dataset import iter_batches
from dbbench.engines.base import TABLES
from dbbench.engines.clickhouse.adapter import ClickHouse, render
from dbbench.queries import params_for, default_params

dsn, data = sys.argv[1], sys.argv[2]
engine = ClickHouse(dsn)
engine.create_schema()
for table in TABLES:
    engine.load(table, iter_batches(data, table))
params = params_for("ohlcv_1m", default_params(data))
sample = engine.timed_query("ohlcv_1m", params)
logged = engine.query_log_seconds(engine.last_tag)
never_run = engine.query_log_seconds("dbbench-" + "0" * 32)
# The lookup by the rendered text, as it was done before tagging: the logged text has more (SETTINGS, FORMAT).
by_text = engine._sql("SELECT count() FROM system.query_log WHERE type = 'QueryFinish' AND query = "
                      + "'" + render("ohlcv_1m", params).replace("\\\\", "\\\\\\\\").replace("'", "\\\\'") + "'")
print(json.dumps({"client": sample.client_s, "elapsed": sample.server_s, "logged": logged, "never_run": never_run,
                  "rows": sample.frame.height, "by_text": by_text.column(0)[0].as_py()}))
engine.close()
"""


def test_server_time_lookup_finds_the_tagged_execution_in_query_log(tmp_path):
    """A ClickHouse server's time comes from system.query_log, found by the log_comment tag the query carried:
    the logged text never equals the rendered one (chDB adds SETTINGS, clickhouse-connect also FORMAT). chDB with
    query_log configured runs the same lookup, in a process of its own (chDB opens one path per process)."""
    import json
    import subprocess
    import sys

    from dbbench.dataset import build_synth

    config, data = tmp_path / "config.xml", tmp_path / "data"
    config.write_text(QUERY_LOG_CONFIG)
    build_synth(data, 3000)
    dsn = f"chdb://{tmp_path / 'chdb'}?config-file={config}"
    done = subprocess.run([sys.executable, "-c", SERVER_TIME_SCRIPT, dsn, str(data)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["rows"] > 0 and out["by_text"] == 0  # the text lookup matches nothing: the tag is needed
    assert out["logged"] is not None and 0 <= out["logged"] <= out["client"]
    assert out["never_run"] is None


@pytest.mark.server
def test_a_clickhouse_server_loads_answers_and_reports_its_own_time(tmp_path):
    """Through clickhouse-connect over HTTP (DBBENCH_CLICKHOUSE_DSN; skipped with the reason where none runs):
    every row loaded, an answer checked, and the server's time found in its query_log by the query's tag."""
    from dbbench.dataset import build_synth
    from dbbench.engines import connect
    from dbbench.queries import params_for
    from tests.test_edge_answers import clickhouse_server_dsn

    engine = connect("clickhouse", clickhouse_server_dsn())
    try:
        data = tmp_path / "data"
        build_synth(data, 3000)
        engine.create_schema()
        rows = {table: engine.load(table, iter_batches(data, table)).rows for table in ("trades", "quotes")}
        assert rows == read_manifest(data)["rows"] and engine.in_process is None
        params = params_for("ohlcv_1m", default_params(data))
        sample = engine.timed_query("ohlcv_1m", params)
        assert compare(sample.frame, reference("ohlcv_1m", data, params), "ohlcv_1m").ok
        assert sample.server_s is not None and 0 <= sample.server_s <= sample.client_s
        engine.drop()
    finally:
        engine.close()
