"""DuckDB (embedded): every query against the Polars reference, load verification, faults."""

import pyarrow.parquet as pq
import pytest

from dbbench.dataset import iter_batches, read_manifest
from dbbench.engines import connect
from dbbench.engines.base import QUERY_NAMES, TABLES, EngineError, Unsupported
from dbbench.engines.duckdb.adapter import QUERIES, DuckDB
from dbbench.queries import compare, default_params, params_for, reference
from tests.conftest import load_dataset


@pytest.fixture(scope="module", params=["binance", "synth"])
def loaded(request, tmp_path_factory):
    """(engine, dataset dir, DSN) with the dataset loaded; the binance set is the real recordings."""
    dsn = f"duckdb://{tmp_path_factory.mktemp('duckdb') / 'bench.duckdb'}"
    engine, out = load_dataset("duckdb", dsn, request.param, request, tmp_path_factory)
    yield engine, out, dsn
    engine.close()


def test_every_query_is_written_in_duckdb_sql():
    assert tuple(QUERIES) == QUERY_NAMES
    assert not [name for name, text in QUERIES.items() if isinstance(text, Unsupported)]
    assert "ASOF JOIN" in QUERIES["asof_trades_quotes"] and "ASOF JOIN" in QUERIES["nbbo"]


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_query_matches_the_reference(loaded, name):
    engine, data, _ = loaded
    params = params_for(name, default_params(data))
    verdict = compare(engine.query(name, params), reference(name, data, params), name)
    assert verdict.ok, verdict.detail
    assert verdict.rows > 0


def test_load_reports_rows_bytes_and_storage(loaded):
    engine, data, _ = loaded
    assert engine.loaded_rows() == read_manifest(data)["rows"]
    for table in TABLES:
        assert 0 < engine.storage(table).bytes
    assert engine.version().startswith("DuckDB ") and engine.name == "duckdb" and engine.in_process


def test_parameters_are_bound_and_identifiers_checked(loaded):
    engine, data, _ = loaded
    assert engine.query("range_scan", {**default_params(data), "symbol": "x' OR 1=1 --"}).height == 0
    with pytest.raises(ValueError, match="invalid identifier"):
        engine.load("trades; DROP TABLE quotes", [])
    with pytest.raises(KeyError):
        engine.load("book", [])


def test_a_second_connection_sees_the_same_database(loaded):
    engine, data, dsn = loaded
    other = connect("duckdb", dsn)  # the concurrency clients' case: one database in this process
    params = default_params(data)
    assert other.query("last_quote", params).equals(engine.query("last_quote", params))
    other.close()
    assert engine.query("last_quote", params).height > 0


def test_a_failure_mid_load_keeps_nothing_and_the_table_is_never_queried(loaded):
    _, data, dsn = loaded
    victim = DuckDB(dsn)
    batches = iter_batches(data, "quotes", 1_000)

    def breaking():
        yield next(batches)
        raise OSError("disk went away")

    with pytest.raises(EngineError) as err:
        victim.load("quotes", breaking())
    message = str(err.value)
    assert "duckdb: load quotes failed: 1,000 rows sent before the error" in message and "disk went away" in message
    assert "quotes" not in victim.loaded_rows()
    rows = read_manifest(data)["rows"]["quotes"]  # rolled back: the earlier load's rows, none of the new ones
    assert victim.conn.execute("SELECT count(*) FROM quotes").fetchall() == [(rows,)]
    with pytest.raises(EngineError, match="not \\(completely\\) loaded"):
        victim.query("spread", default_params(data))
    plain = pq.ParquetFile(data / "quotes.parquet").iter_batches(batch_size=5_000)  # plain strings load as well
    assert victim.load("quotes", plain).rows == rows
    params = default_params(data)
    assert compare(victim.query("spread", params), reference("spread", data, params), "spread").ok
    victim.close()


def test_bad_dsn_is_refused():
    with pytest.raises(ValueError, match="DSN"):
        DuckDB("chdb:///x")
