"""ArcticDB (embedded, LMDB): every supported query against the Polars reference, the rest reported
unsupported, load verification, out-of-order input, faults."""

import pyarrow as pa
import pytest

from dbbench.dataset import iter_batches, read_manifest
from dbbench.engines import connect
from dbbench.engines.arcticdb.adapter import QUERIES, ArcticDB
from dbbench.engines.base import QUERY_NAMES, TABLES, EngineError, Unsupported
from dbbench.queries import compare, default_params, params_for, reference
from tests.conftest import load_dataset

UNSUPPORTED = {"vwap", "nbbo", "mid_returns", "exec_volatility", "asof_trades_quotes"}
SUPPORTED = [name for name in QUERY_NAMES if name not in UNSUPPORTED]


@pytest.fixture(scope="module", params=["binance", "synth"])
def loaded(request, tmp_path_factory):
    """(engine, dataset dir, DSN) with the dataset loaded; the binance set is the real recordings."""
    dsn = f"lmdb://{tmp_path_factory.mktemp('arcticdb')}"
    engine, out = load_dataset("arcticdb", dsn, request.param, request, tmp_path_factory)
    yield engine, out, dsn
    engine.close()


def test_unsupported_queries_say_why():
    assert tuple(QUERIES) == QUERY_NAMES
    assert {name for name, q in QUERIES.items() if isinstance(q, Unsupported)} == UNSUPPORTED
    assert all(QUERIES[name].reason for name in UNSUPPORTED)


@pytest.mark.parametrize("name", SUPPORTED)
def test_every_supported_query_matches_the_reference(loaded, name):
    engine, data, _ = loaded
    params = params_for(name, default_params(data))
    verdict = compare(engine.query(name, params), reference(name, data, params), name)
    assert verdict.ok, verdict.detail
    assert verdict.rows > 0


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_queries_are_reported_not_computed(loaded, name):
    engine, data, _ = loaded
    with pytest.raises(NotImplementedError, match=f"arcticdb: {name} unsupported: "):
        engine.query(name, default_params(data))


def test_load_reports_rows_bytes_and_storage(loaded):
    engine, data, _ = loaded
    assert engine.loaded_rows() == read_manifest(data)["rows"]
    for table in TABLES:
        assert 0 < engine.storage(table).bytes
    assert engine.version().startswith("ArcticDB ") and engine.name == "arcticdb" and engine.in_process


def test_adapters_over_one_path_share_one_lmdb_environment(loaded):
    engine, data, dsn = loaded
    other = connect("arcticdb", dsn)  # the concurrency clients' case: LMDB must be opened once per process
    assert other.arctic is engine.arctic
    params = default_params(data)
    assert other.query("last_quote", params).equals(engine.query("last_quote", params))
    other.close()
    assert engine.query("last_quote", params).height > 0


def test_strings_are_filtered_natively_and_identifiers_checked(loaded):
    engine, data, _ = loaded
    assert engine.query("range_scan", {**default_params(data), "symbol": "x' OR 1=1 --"}).height == 0
    with pytest.raises(ValueError, match="invalid identifier"):
        engine.load("trades; DROP TABLE quotes", [])
    with pytest.raises(KeyError):
        engine.load("book", [])


def test_batches_out_of_time_order_are_sorted_by_arcticdb(loaded, tmp_path):
    _, data, _ = loaded
    engine = ArcticDB(f"lmdb://{tmp_path}")
    engine.create_schema()
    for table in TABLES:  # the batches newest first: each pair's parts arrive out of time order
        engine.load(table, reversed(list(iter_batches(data, table, 3_000))))
    params = default_params(data)
    for name in ("spread", "last_quote", "range_scan"):  # no ties between equal timestamps to break
        assert compare(engine.query(name, params), reference(name, data, params), name).ok, name
    engine.close()


def test_a_failure_mid_load_is_clear_and_the_table_is_never_queried(loaded, tmp_path):
    _, data, _ = loaded
    victim = ArcticDB(f"lmdb://{tmp_path}")
    victim.create_schema()
    victim.load("trades", iter_batches(data, "trades"))
    batches = iter_batches(data, "quotes", 1_000)

    def breaking():
        yield next(batches)
        raise OSError("disk went away")

    with pytest.raises(EngineError) as err:
        victim.load("quotes", breaking())
    message = str(err.value)
    assert "arcticdb: load quotes failed: 1,000 rows sent before the error" in message and "disk went away" in message
    assert "quotes" not in victim.loaded_rows()
    with pytest.raises(EngineError, match="not \\(completely\\) loaded"):
        victim.query("spread", default_params(data))
    bad = pa.RecordBatch.from_pylist([{"ts": 0, "symbol": "A@B", "venue": "v", "bid_px": 1.0, "bid_qty": 1.0,
                                       "ask_px": 2.0, "ask_qty": 1.0}]).cast(TABLES["quotes"])
    with pytest.raises(EngineError, match="names ArcticDB symbols"):
        victim.load("quotes", [bad])
    victim.load("quotes", iter_batches(data, "quotes"))  # a full reload makes it queryable again
    params = default_params(data)
    assert compare(victim.query("spread", params), reference("spread", data, params), "spread").ok
    victim.close()


def test_bad_dsn_is_refused():
    with pytest.raises(ValueError, match="DSN"):
        ArcticDB("duckdb:///x")
