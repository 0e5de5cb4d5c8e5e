"""PostgreSQL/TimescaleDB on a real server: every query against the Polars reference, loads, faults."""

import os
import signal
import threading
from pathlib import Path

import polars as pl
import psycopg
import pyarrow as pa
import pytest

from dbbench import queries, servers
from dbbench.dataset import build_binance, build_synth, iter_batches, read_manifest
from dbbench.engines import connect
from dbbench.engines.base import QUERY_NAMES, TABLES, EngineError, Storage
from dbbench.engines.timescaledb.adapter import _HEADER, _TRAILER, QUERIES, TimescaleDB, copy_binary
from dbbench.queries import MINUTE_NS, compare, default_params, reference

pytestmark = pytest.mark.server


@pytest.fixture(scope="module", params=["binance", "synth"])
def loaded(request, tmp_path_factory, timescaledb_dsn):
    out = tmp_path_factory.mktemp(f"pg-{request.param}")
    if request.param == "binance":
        build_binance(out, request.getfixturevalue("binance"))
    else:
        build_synth(out, 20_000, seed=5)
    engine = connect("timescaledb", timescaledb_dsn)
    engine.create_schema()
    for table in TABLES:
        assert engine.load(table, iter_batches(out, table, 20_000)).rows == read_manifest(out)["rows"][table]
        BEFORE_COMPACTION[out, table] = engine.storage(table)
        engine.compact(table)
    yield engine, out
    engine.close()


BEFORE_COMPACTION: dict[tuple[Path, str], Storage] = {}  # (dataset, table) -> storage between load and compact


def params_for(data):
    """Binance: two minutes where both venues overlap (keeps the row-by-row lateral joins quick)."""
    p = default_params(data)
    if p["end"] - p["start"] <= 5 * MINUTE_NS:
        return p
    start = p["start"] + 3 * MINUTE_NS
    return {**p, "start": start, "end": start + 2 * MINUTE_NS, "scan_start": start, "scan_end": start + 5 * MINUTE_NS}


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_query_matches_the_reference(loaded, name):
    engine, data = loaded
    p = params_for(data)
    verdict = compare(engine.query(name, p), reference(name, data, p), name)
    assert verdict.ok, verdict.detail
    assert verdict.rows > 0


def test_plain_postgresql_is_never_reported_as_timescaledb(loaded):
    engine, data = loaded
    if engine.timescale:
        assert engine.name == "timescaledb" and engine.version().startswith("TimescaleDB")
    else:
        assert engine.name == "postgresql" and "not available" in engine.settings()["reason"]
        assert engine.version().startswith("PostgreSQL")
    assert engine.loaded_rows() == read_manifest(data)["rows"]
    assert all(engine.storage(t).bytes > 0 for t in TABLES)
    assert set(QUERIES) == set(QUERY_NAMES)


def test_storage_after_compaction_shrinks_and_says_what_it_includes(loaded):
    """TimescaleDB: compress_chunk shrinks the table, and the uncompressed size is reported beside it; plain
    PostgreSQL: the compaction builds the indexes, which the figure then includes."""
    engine, data = loaded
    for table in TABLES:
        before, after = BEFORE_COMPACTION[data, table], engine.storage(table)
        if engine.timescale:
            assert after.bytes < before.bytes and "compressed" in after.includes
            assert after.details["uncompressed_bytes"] >= before.bytes * 0.9  # the chunks as they were
            assert after.details["uncompressed_bytes"] > after.bytes
        else:
            assert after.bytes > before.bytes and "indexes" in after.includes and not after.details


def test_with_the_extension_tables_are_compressed_hypertables(loaded):
    engine, _ = loaded
    if not engine.timescale:
        if os.environ.get("CI") == "true":  # .ci/run builds and preloads the extension: a fallback is a failure
            pytest.fail(f"CI runs TimescaleDB, yet the engine fell back to plain PostgreSQL: {engine.reason}")
        pytest.skip(f"{engine.reason}; point DBBENCH_TIMESCALEDB_DSN at a server with it (docker/compose.yml)")
    rows = engine._rows("SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables")
    assert {(t, True) for t in TABLES} <= {tuple(r) for r in rows}
    compressed = engine._rows("SELECT hypertable_name, count(*) FROM timescaledb_information.chunks "
                              "WHERE is_compressed GROUP BY 1")
    assert {t for t, n in compressed if n > 0} >= set(TABLES)
    assert engine.bucket == "time_bucket" and engine.settings()["layout"].startswith("hypertable")


def test_binary_copy_rows_round_trip(loaded):
    engine, data = loaded
    batch = next(iter_batches(data, "trades", 50))
    encoded = b"".join(copy_binary(batch, TABLES["trades"]))
    row_bytes = 2 + 7 * 4 + 8 + 8 + 8 + 8 + 2 + len("BTCUSDT")  # ts, trade_id, price, qty, side + texts
    assert len(encoded) > 50 * row_bytes
    with pytest.raises(ValueError, match="invalid identifier"):
        engine.load("trades; DROP TABLE quotes", [])


def test_binary_copy_of_texts_of_any_length_round_trips(loaded):
    """Rows whose symbols differ in byte length (empty, multi-byte) get their own layouts; a slice keeps its offset."""
    engine, data = loaded
    batch = next(iter_batches(data, "quotes", 2_000)).slice(3)
    symbols = pa.array([("", "BTCUSDT", "é", "ETH")[i % 4] for i in range(batch.num_rows)])
    batch = batch.set_column(batch.schema.get_field_index("symbol"), "symbol", symbols)
    buffers = copy_binary(batch, TABLES["quotes"])
    assert len(buffers) == 4
    engine.conn.execute("CREATE TEMP TABLE quotes_copy (LIKE quotes)")
    try:
        with (engine.conn.cursor() as cur,
              cur.copy(f"COPY quotes_copy ({', '.join(TABLES['quotes'].names)}) FROM STDIN (FORMAT BINARY)") as copy):
            for chunk in (_HEADER, *buffers, _TRAILER):
                copy.write(chunk)
        back = pl.DataFrame(engine._rows("SELECT * FROM quotes_copy"), schema=TABLES["quotes"].names, orient="row")
    finally:
        engine.conn.execute("DROP TABLE quotes_copy")
    sent = pl.from_arrow(batch).with_columns(pl.col("ts").dt.epoch("ns"))
    assert back.sort(back.columns).equals(sent.sort(sent.columns))


def test_symbol_is_a_bound_parameter(loaded):
    engine, data = loaded
    assert engine.query("range_scan", {**params_for(data), "symbol": "x' OR 1=1 --"}).height == 0


def test_server_time_is_the_timed_copy_in_pg_stat_statements(loaded, timescaledb_dsn):
    """`dbbench servers up` preloads pg_stat_statements: the server time is that of the very COPY timed."""
    engine, data = loaded
    if engine.statements_reason and os.environ.get("DBBENCH_TIMESCALEDB_DSN"):
        pytest.skip(f"the server in DBBENCH_TIMESCALEDB_DSN: {engine.statements_reason}")
    assert engine.statements_reason is None and engine.settings()["server_time"] == "pg_stat_statements"
    assert engine.server_time_method().startswith("pg_stat_statements")
    p = params_for(data)
    before = engine.statement_totals(engine.statement("asof_trades_quotes", p))
    samples = [engine.timed_query("asof_trades_quotes", p) for _ in range(2)]
    calls, total = engine.statement_totals(engine.statement("asof_trades_quotes", p))
    assert calls == before[0] + 2 and total - before[1] == pytest.approx(sum(s.server_s for s in samples))
    assert all(0 < s.server_s < s.client_s for s in samples)
    assert compare(samples[-1].frame, reference("asof_trades_quotes", data, p), "asof_trades_quotes").ok


def test_without_pg_stat_statements_tracking_copy_the_server_time_is_explain(loaded, timescaledb_dsn):
    engine, data = loaded
    fallback = TimescaleDB(timescaledb_dsn + ("&" if "?" in timescaledb_dsn else "?")
                           + "options=-c%20pg_stat_statements.track_utility%3Doff")
    try:
        if engine.statements_reason is None:
            assert "track_utility is off" in fallback.statements_reason
        assert fallback.settings()["server_time"].startswith("EXPLAIN ANALYZE (")
        assert fallback.server_time_method().startswith("EXPLAIN")
        sample = fallback.timed_query("spread", params_for(data))
        assert sample.server_s > 0 and sample.frame.height > 0
    finally:
        fallback.close()


@pytest.fixture
def doomed(tmp_path, binance):
    """(server, engine with the schema created, the real recordings as a dataset) on a scratch
    PostgreSQL of its own, which the test may kill."""
    reason = servers.available()["timescaledb"]
    if reason:
        pytest.skip(f"no scratch PostgreSQL can start: {reason}")
    server = servers.lifecycle("timescaledb").start(tmp_path / "pg")
    try:
        engine = TimescaleDB(server.dsn)
        engine.create_schema()
        data = tmp_path / "data"
        build_binance(data, binance)
        yield server, engine, data
    finally:
        servers.stop(server)


def test_a_server_killed_mid_load_fails_clearly_and_nothing_is_marked_loaded(doomed):
    server, engine, data = doomed
    batches = iter_batches(data, "quotes", 10_000)

    def dying():
        yield next(batches)
        os.kill(server.pid, signal.SIGQUIT)  # immediate shutdown: every backend is ended
        yield from batches

    with pytest.raises(EngineError) as err:
        engine.load("quotes", dying())
    message = str(err.value)
    assert message.startswith(f"{engine.name}: load quotes failed:") and "rows sent" in message
    assert "password" not in message


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(EngineError, match="connect failed"):
        TimescaleDB("postgresql://nobody:secret@127.0.0.1:1/none")


def test_server_killed_before_a_query_is_an_engine_error_naming_the_step(doomed):
    server, engine, data = doomed
    for table in TABLES:
        engine.load(table, iter_batches(data, table, 50_000))
    os.kill(server.pid, signal.SIGQUIT)  # immediate shutdown: every backend is ended
    with pytest.raises(EngineError, match=f"^{engine.name}: query vwap failed:"):
        engine.query("vwap", default_params(data))


def test_a_dropped_connection_is_an_engine_error_and_a_new_connection_answers(doomed):
    server, engine, data = doomed
    for table in TABLES:
        engine.load(table, iter_batches(data, table, 50_000))
    with psycopg.connect(server.dsn, autocommit=True) as admin:  # as a DBA or a failover would
        admin.execute("SELECT pg_terminate_backend(%s)", (engine.conn.info.backend_pid,))
    with pytest.raises(EngineError, match=f"^{engine.name}: query vwap failed:"):
        engine.query("vwap", default_params(data))
    again = TimescaleDB(server.dsn)  # the load was verified before the drop: nothing to redo
    try:
        params = default_params(data)
        assert compare(again.query("vwap", params), reference("vwap", data, params), "vwap").ok
    finally:
        again.close()


def test_server_killed_mid_query_is_an_engine_error_naming_the_query(doomed):
    server, engine, data = doomed
    for table in TABLES:
        engine.load(table, iter_batches(data, table, 50_000))
    admin = psycopg.connect(server.dsn)
    admin.execute("LOCK TABLE quotes IN ACCESS EXCLUSIVE MODE")  # the query waits on it: surely running
    killer = threading.Timer(0.5, os.kill, (server.pid, signal.SIGKILL))  # the postmaster, mid-query
    killer.start()
    with pytest.raises(EngineError, match=f"^{engine.name}: query nbbo failed:"):
        engine.query("nbbo", queries.params_for("nbbo", default_params(data)))
    killer.join()
    admin.close()
