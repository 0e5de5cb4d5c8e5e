"""InfluxDB engine: line protocol, then the real influxd (Debian's 1.6) with the real Binance recordings."""

from __future__ import annotations

import gzip
import os
import re
import signal
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dbbench import dataset, queries, servers
from dbbench.engines.base import QUERY_NAMES, TABLES, EngineError, Unsupported
from dbbench.engines.influxdb.adapter import (
    FLUX,
    POSTS_AHEAD,
    QUERIES,
    InfluxDB,
    _Sequencer,
    bodies,
    line_protocol,
    render,
)

PARAMS = {"start": 0, "end": 60_000_000_000, "symbol": "BTCUSDT", "scan_start": 0, "scan_end": 60_000_000_000}


def _recording(files: list[Path]) -> pl.DataFrame:
    text = b"".join(gzip.decompress(f.read_bytes()) for f in files).decode()
    split = pl.Series("l", text.splitlines()).str.splitn(" ", 2).struct.rename_fields(["local_ts", "msg"])
    return pl.DataFrame(split).unnest("l").with_columns(pl.col("local_ts").cast(pl.Int64))


def _field(name: str) -> pl.Expr:
    return pl.col("msg").str.json_path_match(f"$.data.{name}")


@pytest.fixture(scope="module")
def binance_data(binance: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real recordings as a dbbench dataset (spot and USD-M as two venues, ts = local receive time)."""
    out = tmp_path_factory.mktemp("binance_dataset")
    trades, quotes = [], []
    for market, files in binance.items():
        rec = _recording(files).with_columns(
            pl.from_epoch("local_ts", time_unit="ns").dt.replace_time_zone("UTC").alias("ts"),
            pl.lit("BTCUSDT").alias("symbol"), pl.lit(f"binance_{market}").alias("venue"))
        trades.append(rec.filter(pl.col("msg").str.contains('@trade"', literal=True)).select(
            "ts", "symbol", "venue", _field("t").cast(pl.Int64).alias("trade_id"),
            _field("p").cast(pl.Float64).alias("price"), _field("q").cast(pl.Float64).alias("qty"),
            pl.when(_field("m") == "true").then(-1).otherwise(1).cast(pl.Int8).alias("side")))
        quotes.append(rec.filter(pl.col("msg").str.contains('@bookTicker"', literal=True)).select(
            "ts", "symbol", "venue", *(_field(k).cast(pl.Float64).alias(c) for k, c in
                                       (("b", "bid_px"), ("B", "bid_qty"), ("a", "ask_px"), ("A", "ask_qty")))))
    frames = {"trades": pl.concat(trades), "quotes": pl.concat(quotes)}
    for table, frame in frames.items():
        pq.write_table(frame.to_arrow().cast(TABLES[table]), out / f"{table}.parquet")
    ts = pl.concat([f["ts"] for f in frames.values()]).dt.epoch("ns")
    (out / "dataset.json").write_bytes(orjson.dumps({"min_ts": ts.min(), "max_ts": ts.max(), "symbols": ["BTCUSDT"]}))
    return out


def _batches(data: Path, table: str, rows: int = 20_000):
    return pq.ParquetFile(data / f"{table}.parquet").iter_batches(batch_size=rows)


# --- no server -----------------------------------------------------------------------------------


def test_every_query_has_influxql_and_flux_text_or_a_reason():
    assert tuple(QUERIES) == tuple(FLUX) == QUERY_NAMES
    unsupported = {n for n, q in QUERIES.items() if isinstance(q, Unsupported)}
    assert unsupported == {"nbbo", "asof_trades_quotes"}
    assert all(len(QUERIES[n].reason) > 40 for n in unsupported)
    with pytest.raises(NotImplementedError, match="no joins"):
        render("asof_trades_quotes", PARAMS)


def test_render_interpolates_ns_integers_and_binds_the_symbol():
    text = render("range_scan", {**PARAMS, "symbol": "x' OR 1=1"})
    assert "time >= 0 AND time < 60000000000" in text and "symbol = $symbol" in text and "OR 1=1" not in text
    with pytest.raises(ValueError):
        render("vwap", {**PARAMS, "start": "0; DROP DATABASE x"})
    flux = render("range_scan", {**PARAMS, "symbol": 'a"b'}, "flux", "dbbench")
    assert 'r.symbol == "a\\"b"' in flux and 'from(bucket: "dbbench_trades")' in flux


def test_line_protocol_escapes_tags_types_fields_and_keeps_float_digits():
    frame = pl.DataFrame({
        "ts": [1_723_161_254_087_896_568, 5], "symbol": ["BTC USDT", "A,B=C"], "venue": ["v", "w"],
        "trade_id": [7, -1], "price": [61837.63, 1e-5], "qty": [0.1 + 0.2, 3.0], "side": [1, -1], "seq": ["0", "1"],
    })
    lines = line_protocol("trades", frame).to_list()
    assert lines[0] == ("trades,seq=0,symbol=BTC\\ USDT,venue=v "
                        "trade_id=7i,price=61837.63,qty=0.30000000000000004,side=1i 1723161254087896568")
    assert lines[1].startswith("trades,seq=1,symbol=A\\,B\\=C,venue=w trade_id=-1i,price=0.00001,qty=3.0,side=-1i 5")
    cut = list(bodies("trades", frame, 1))  # the same lines, newline-terminated, one body per point
    assert [(n, bytes(b).decode()) for n, b in cut] == [(1, lines[0] + "\n"), (1, lines[1] + "\n")]
    assert [n for n, _ in bodies("trades", pl.concat([frame] * 3), 4)] == [4, 2]


def test_sequencer_separates_trades_at_the_same_time_within_and_across_batches():
    seq = _Sequencer()
    first = seq(pl.DataFrame({"ts": [1, 2, 2], "symbol": ["s"] * 3, "venue": ["v"] * 3, "trade_id": [1, 3, 2]}))
    second = seq(pl.DataFrame({"ts": [2, 2, 3], "symbol": ["s"] * 3, "venue": ["v"] * 3, "trade_id": [4, 5, 6]}))
    assert first["seq"].to_list() == ["0", "1", "0"]  # trade 2 ranks before trade 3 at ts 2
    assert second["seq"].to_list() == ["2", "3", "0"]
    third = seq(pl.DataFrame({"ts": [3, 4], "symbol": ["s"] * 2, "venue": ["v"] * 2, "trade_id": [7, 8]}))
    assert third["seq"].to_list() == ["1", "0"]  # rising times, yet the first shares ts 3 with the last batch's
    markets = seq(pl.DataFrame({"ts": [9, 9, 10], "symbol": ["s", "t", "s"], "venue": ["v"] * 3,
                                "trade_id": [9, 1, 10]}))
    assert markets["seq"].to_list() == ["0", "0", "0"]  # one time, two markets: nothing shared


def test_dsn_parsing_keeps_credentials_out_of_repr(monkeypatch):
    monkeypatch.delenv("INFLUXDB_USERNAME", raising=False)
    engine = InfluxDB("influxdb://alice:s3cret@127.0.0.1:9/bench?batch=1000&retries=1")
    assert (engine.base, engine.db, engine.batch_rows, engine.retries) == ("http://127.0.0.1:9", "bench", 1000, 1)
    assert "s3cret" not in repr(engine) and "s3cret" not in str(engine.settings())
    assert InfluxDB("https://127.0.0.1:8086/db").base == "https://127.0.0.1:8086"
    with pytest.raises(ValueError, match="invalid identifier"):
        InfluxDB("influxdb://127.0.0.1:9/bad-name")
    with pytest.raises(ValueError, match="ISA-L level"):
        InfluxDB("influxdb://127.0.0.1:9/bench?gzip=6")
    monkeypatch.delenv("INFLUX_TOKEN", raising=False)
    with pytest.raises(ValueError, match="token"):
        InfluxDB("influxdb2://127.0.0.1:9/bench")


# --- the real server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(influxdb_dsn: str, binance_data: Path):
    engine = InfluxDB(influxdb_dsn, batch_rows=7_000)
    engine.create_schema()
    # The dataset's own batches (symbol and venue as Arrow dictionaries); other tests send plain strings.
    results = {t: engine.load(t, dataset.iter_batches(binance_data, t, 20_000)) for t in TABLES}
    yield engine, results
    engine.drop()
    engine.close()


@pytest.mark.server
def test_load_verifies_counts_and_measures_storage(loaded, binance_data: Path):
    engine, results = loaded
    assert engine.version().startswith("InfluxDB ")
    for table, result in results.items():
        rows = pq.ParquetFile(binance_data / f"{table}.parquet").metadata.num_rows
        assert result.rows == rows > 10_000 and result.bytes_in > 0
    assert engine.loaded_rows() == {t: r.rows for t, r in results.items()}


@pytest.mark.server
def test_storage_is_the_tsm_files_after_the_servers_own_compaction(influxdb_dsn: str, binance_data: Path):
    """Points first sit in the WAL (uncompressed: counting it overstated storage); the compaction waits until
    the server has written them all to TSM files, which take less room than the WAL did."""
    engine = InfluxDB(influxdb_dsn.rsplit("/", 1)[0] + "/dbbench_compaction")
    try:
        engine.create_schema()
        engine.load("quotes", dataset.iter_batches(binance_data, "quotes", 20_000))
        before = engine.storage("quotes")  # straight after the load: the server snapshots a shard cold for 1 s
        engine.compact("quotes")
        after = engine.storage("quotes")
        assert after.details["wal_bytes"] == 0 and "TSM files" in after.includes and "not the WAL" in after.includes
        assert 0 < after.bytes and before.bytes <= after.bytes  # the points moved from the WAL into TSM files
        if before.details["wal_bytes"]:  # still in the WAL when first measured: the same points, compressed
            assert after.bytes < before.details["wal_bytes"]
    finally:
        engine.drop()
        engine.close()


@pytest.mark.server
@pytest.mark.parametrize("name", [n for n in QUERY_NAMES if not isinstance(QUERIES[n], Unsupported)])
def test_query_matches_the_polars_reference(loaded, binance_data: Path, name: str):
    engine, _ = loaded
    params = queries.default_params(binance_data)
    answer = engine.query(name, params)
    verdict = queries.compare(answer, queries.reference(name, binance_data, params), name)
    assert verdict.ok, str(verdict)
    assert verdict.rows > 0


NO_INFLUXDB2 = ("no InfluxDB 2.x server: Debian ships 1.6.7, which has no Flux, and no 2.x server is "
                "installable here; set DBBENCH_INFLUXDB2_DSN=influxdb2://host:8086/bench?org=ORG and INFLUX_TOKEN")


@pytest.mark.server
@pytest.mark.skipif(not os.environ.get("DBBENCH_INFLUXDB2_DSN"), reason=NO_INFLUXDB2)
def test_flux_dialect_loads_and_answers_like_the_reference(binance_data: Path):
    engine = InfluxDB(os.environ["DBBENCH_INFLUXDB2_DSN"], batch_rows=7_000)
    try:
        engine.create_schema()
        for table in TABLES:
            rows = pq.ParquetFile(binance_data / f"{table}.parquet").metadata.num_rows
            assert engine.load(table, dataset.iter_batches(binance_data, table, 20_000)).rows == rows
        params = queries.default_params(binance_data)
        for name in (n for n in QUERY_NAMES if not isinstance(FLUX[n], Unsupported)):
            verdict = queries.compare(engine.query(name, params), queries.reference(name, binance_data, params), name)
            assert verdict.ok and verdict.rows > 0, f"{name}: {verdict}"
    finally:
        engine.drop()
        engine.close()


@pytest.mark.server
def test_unsupported_queries_raise_with_the_reason(loaded, binance_data: Path):
    engine, _ = loaded
    with pytest.raises(NotImplementedError, match="fill\\(previous\\)"):
        engine.query("nbbo", queries.default_params(binance_data))


@pytest.mark.server
def test_partial_table_is_never_queried_and_bad_rows_are_refused(influxdb_dsn: str, binance_data: Path):
    engine = InfluxDB(influxdb_dsn.rsplit("/", 1)[0] + "/dbbench_partial")
    try:
        engine.create_schema()
        engine.load("quotes", _batches(binance_data, "quotes"))
        with pytest.raises(EngineError, match="not \\(completely\\) loaded: \\['trades'\\]"):
            engine.query("spread", queries.default_params(binance_data))
        bad = pq.read_table(binance_data / "trades.parquet").slice(0, 10).to_pydict()
        bad["price"][3] = float("nan")
        with pytest.raises(EngineError, match="influxdb: load trades failed: 0 rows loaded; .* 1 non-finite"):
            engine.load("trades", pa.Table.from_pydict(bad, TABLES["trades"]).to_batches())
    finally:
        engine.drop()
        engine.close()


@pytest.mark.server
def test_server_stopped_mid_load_names_engine_table_and_rows(binance_data: Path, tmp_path: Path):
    if servers.available()["influxdb"]:
        pytest.skip(servers.available()["influxdb"])
    server = servers.up(["influxdb"], tmp_path)["influxdb"]
    engine = InfluxDB(server.dsn, batch_rows=5_000, retries=2, backoff_s=0.05)
    engine.create_schema()

    stop = POSTS_AHEAD + 2

    def batches():
        for i, batch in enumerate(_batches(binance_data, "trades", 5_000)):
            if i == stop:  # `stop` bodies handed over, of which all but POSTS_AHEAD were posted: the server goes away
                servers.down(["influxdb"], tmp_path)
            yield batch

    with pytest.raises(EngineError, match=r"influxdb: load trades failed: ([\d,]+) rows loaded before the error; "
                                          r"write failed after 3 attempt\(s\): ConnectionError") as err:
        engine.load("trades", batches())
    loaded = int(re.search(r"failed: ([\d,]+) rows", str(err.value)).group(1).replace(",", ""))
    assert loaded in range(5_000 * (stop - POSTS_AHEAD), 5_000 * stop + 1, 5_000)  # the posts that had answered
    engine.close()


def test_server_killed_before_a_query_names_the_query_and_the_next_run_starts_clean(binance_data: Path,
                                                                                    tmp_path: Path):
    if servers.available()["influxdb"]:
        pytest.skip(servers.available()["influxdb"])
    params = queries.default_params(binance_data)
    try:
        for attempt in ("killed", "next run"):
            server = servers.up(["influxdb"], tmp_path)["influxdb"]  # a dead server is replaced by a fresh one
            engine = InfluxDB(server.dsn, retries=1, backoff_s=0.05)
            engine.create_schema()
            for table in TABLES:
                engine.load(table, _batches(binance_data, table, 20_000))
            if attempt == "killed":
                os.kill(server.pid, signal.SIGKILL)  # a crash or an OOM kill: no shutdown
                with pytest.raises(EngineError, match=r"^influxdb: (query vwap|loaded tables) failed: .*Connection"):
                    engine.query("vwap", params)
            else:
                answer = engine.query("vwap", params)
                assert queries.compare(answer, queries.reference("vwap", binance_data, params), "vwap").ok
            engine.close()
    finally:
        servers.down(["influxdb"], tmp_path)
