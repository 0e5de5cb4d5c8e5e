"""The dataset step: real Binance recordings and the scaled synthetic market, in the engine schemas."""

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dbbench.dataset import (
    DICTIONARY_COLUMNS,
    SYNTH_VENUES,
    _Writer,
    build_binance,
    build_synth,
    iter_batches,
    read_manifest,
    verify_dataset,
)
from dbbench.engines.base import TABLES


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    build_synth(out, 30_000, seed=3, chunk_steps=500)  # several chunks: streaming is exercised
    return out


def test_synth_has_every_market_the_schemas_and_about_the_rows_asked(synth):
    m = read_manifest(synth)
    assert m["symbols"] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"] and m["venues"] == ["venue_a", "venue_b"]
    assert 20_000 < sum(m["rows"].values()) < 40_000
    for table, schema in TABLES.items():
        assert pq.read_schema(synth / f"{table}.parquet").remove_metadata() == schema
        assert pq.ParquetFile(synth / f"{table}.parquet").num_row_groups > 1
    quotes = pl.read_parquet(synth / "quotes.parquet")
    assert quotes.height == m["rows"]["quotes"]
    assert not quotes.select(pl.struct("symbol", "venue", "ts").is_duplicated().any()).item()
    assert (quotes["ask_px"] > quotes["bid_px"]).all()
    levels = quotes.group_by("symbol").agg(pl.col("bid_px").median()).sort("symbol")["bid_px"].to_list()
    assert levels[0] > 5 * levels[1] > 25 * levels[2]  # each symbol its own price level


def test_manifest_counts_the_csv_size_of_each_table(synth):
    from dbbench.runner import csv_bytes

    m = read_manifest(synth)
    for table in TABLES:  # counted while streaming (many small batches) = the table written as one CSV
        assert m["csv_bytes"][table] == csv_bytes(synth, table) > m["rows"][table] * 20


def test_synth_is_deterministic(synth, tmp_path):
    build_synth(tmp_path, 30_000, seed=3, chunk_steps=7_000)
    for table in TABLES:
        assert pl.read_parquet(tmp_path / f"{table}.parquet").sort("symbol", "venue", "ts").equals(
            pl.read_parquet(synth / f"{table}.parquet").sort("symbol", "venue", "ts"))


def test_iter_batches_streams_the_table_in_its_schema(synth, tmp_path):
    batches = list(iter_batches(synth, "trades", 1_000))
    assert max(b.num_rows for b in batches) <= 1_000
    assert sum(b.num_rows for b in batches) == read_manifest(synth)["rows"]["trades"]
    assert [batches[0].schema.field(c).type for c in DICTIONARY_COLUMNS] == [pa.dictionary(pa.int32(), pa.string())] * 2
    assert batches[0].schema.remove_metadata() == pa.schema(
        [f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in DICTIONARY_COLUMNS else f
         for f in TABLES["trades"]])
    # Decoded, the batches are the table as written, whole and in order, however the dictionaries change.
    for size in (1_000, 10_000_000):
        decoded = pa.Table.from_batches([b.cast(TABLES["trades"]) for b in iter_batches(synth, "trades", size)])
        assert decoded.equals(pq.read_table(synth / "trades.parquet").cast(TABLES["trades"]))
    with pytest.raises(ValueError, match="unknown table"):
        next(iter_batches(synth, "book"))
    pl.read_parquet(synth / "quotes.parquet").drop("venue").write_parquet(tmp_path / "trades.parquet")
    manifest = {k: v for k, v in read_manifest(synth).items() if k != "sha256"}  # a dataset, nothing to compare
    (tmp_path / "dataset.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(ValueError, match="schema"):
        next(iter_batches(tmp_path, "trades"))


def test_repeated_quote_times_are_an_error(synth, tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        build_synth(tmp_path, 1_000, symbols=("X", "X"), venues=("v",))
    quotes = pl.read_parquet(synth / "quotes.parquet").head(5)
    writer = _Writer(tmp_path / "dup")
    with pytest.raises(ValueError, match="repeat"):
        writer.write("quotes", pl.concat([quotes, quotes.head(1)]))


def test_binance_spot_and_usdm_are_two_venues_on_the_receive_clock(binance, tmp_path):
    m = build_binance(tmp_path, binance)
    assert m["venues"] == ["binance_spot", "binance_usdm"] and m["symbols"] == ["BTCUSDT"]
    assert m["rows"]["trades"] > 40_000 and m["rows"]["quotes"] > 130_000
    assert orjson.loads((tmp_path / "dataset.json").read_bytes())["source"]["kind"] == "binance"
    trades = pl.read_parquet(tmp_path / "trades.parquet")
    per_venue = trades.group_by("venue").agg(pl.col("trade_id").n_unique(), pl.len())
    assert (per_venue["trade_id"] == per_venue["len"]).all()
    quotes = pl.read_parquet(tmp_path / "quotes.parquet")
    # Receive times of the recording window (README: 2024-08-08 23:54:13 .. 2024-08-09 00:05:04 UTC).
    lo, hi = quotes["ts"].dt.epoch("s").min(), quotes["ts"].dt.epoch("s").max()
    assert 1_723_161_253 <= lo and hi <= 1_723_161_905


def test_a_table_changed_after_the_build_is_refused(synth, tmp_path):
    import shutil

    from data_loaders.atomic import IntegrityError, sha256

    copy = tmp_path / "ds"
    shutil.copytree(synth, copy)
    assert read_manifest(copy)["sha256"] == {t: sha256(copy / f"{t}.parquet") for t in TABLES}
    assert verify_dataset(copy)["rows"] == read_manifest(copy)["rows"]  # checked once: a later change is still caught
    trades = pl.read_parquet(copy / "trades.parquet")
    trades.with_columns(pl.col("price") * 1.01).write_parquet(copy / "trades.parquet")
    with pytest.raises(IntegrityError, match="trades.parquet is not the file .*dataset.json records"):
        next(iter_batches(copy, "trades"))
    assert next(iter_batches(copy, "quotes")).num_rows > 0  # the untouched table still loads


def test_a_failed_build_keeps_the_previous_dataset(synth, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(synth, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}

    def interrupt(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_synth(copy, 30_000, seed=4, chunk_steps=500, progress=interrupt)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before  # no partial files, nothing replaced


def test_streamed_synth_gives_exactly_the_rows_asked_in_seamless_chunks(tmp_path):
    """--scale ROWS --symbols K --days D: exactly ROWS rows, each market's rows in time order across the
    chunks with no repeated quote time or trade id, spread over D days, the same however it is chunked."""
    from dbbench.dataset import synth_symbols

    m = build_synth(tmp_path / "a", 12_345, seed=1, symbols=synth_symbols(4), days=2, chunk_steps=150)
    assert sum(m["rows"].values()) == 12_345 and len(m["symbols"]) == 4 and m["venues"] == list(SYNTH_VENUES)
    step = m["source"]["step_ns"]
    assert 2 * 86_400e9 - 2 * step <= m["max_ts"] - m["min_ts"] <= 2 * 86_400e9  # D days, to a grid step
    assert pq.ParquetFile(tmp_path / "a" / "trades.parquet").num_row_groups > 8  # many chunks were streamed
    for table, key in (("trades", "trade_id"), ("quotes", "ts")):
        frame = pl.read_parquet(tmp_path / "a" / f"{table}.parquet")
        per_market = frame.group_by("symbol", "venue", maintain_order=True).agg(
            sorted=pl.col("ts").is_sorted(), unique=pl.col(key).n_unique() == pl.len(),
            increasing=(pl.col(key).diff().drop_nulls() > 0).all() if table == "trades" else pl.lit(True))
        assert per_market.height == 8 and per_market.select(pl.all_horizontal("sorted", "unique", "increasing")
                                                            .all()).item(), per_market
    build_synth(tmp_path / "b", 12_345, seed=1, symbols=synth_symbols(4), days=2, chunk_steps=10_000)
    for table in TABLES:
        assert pl.read_parquet(tmp_path / "a" / f"{table}.parquet").sort(pl.all()).equals(
            pl.read_parquet(tmp_path / "b" / f"{table}.parquet").sort(pl.all()))


def test_a_dataset_folder_is_itself_an_input_its_instruments_read_from_columns(synth, tmp_path):
    """Parquet naming its instruments in symbol/venue columns (a dataset's own tables) goes back in whole."""
    from dbbench.dataset import build_from

    m = build_from(tmp_path / "again", [synth])
    before = read_manifest(synth)
    assert m["rows"] == before["rows"] and m["symbols"] == before["symbols"] and m["venues"] == before["venues"]
    assert (m["min_ts"], m["max_ts"]) == (before["min_ts"], before["max_ts"])
    for table in TABLES:
        assert pl.read_parquet(tmp_path / "again" / f"{table}.parquet").sort(pl.all()).equals(
            pl.read_parquet(synth / f"{table}.parquet").sort(pl.all()))
