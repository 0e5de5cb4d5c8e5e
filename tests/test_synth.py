"""The synthetic market: contracts, determinism, chunking, the exact weighted mid and the oracle."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA, book_schema
from data_loaders.synth import (
    FILES,
    HORIZONS,
    PARAMS,
    START_NS,
    LatentState,
    Market,
    generate,
    latent_streams,
    oracle_multipliers,
    simulate_latent,
)

STEP_NS = 100_000_000


def read(out: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(out / f"{name}.parquet") for name in FILES}


def wmid(book: pl.DataFrame) -> np.ndarray:
    """The paper's weighted mid, written as the paper writes it."""
    b = book
    num = b["ask_px_1"] * b["ask_qty_1"] + b["bid_px_1"] * b["bid_qty_1"]
    return (num / (b["ask_qty_1"] + b["bid_qty_1"])).to_numpy()


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return 1.0 - float(np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


@pytest.fixture(scope="module")
def hour(tmp_path_factory) -> tuple[dict, dict[str, pl.DataFrame]]:
    """One hour (36,000 book rows) with the default settings."""
    out = tmp_path_factory.mktemp("synth_hour")
    summary = generate(out, 60, seed=11)
    return summary, read(out)


def test_contracts_and_metadata(hour, tmp_path):
    summary, data = hour
    assert dict(data["trades"].schema) == TRADES_SCHEMA
    assert dict(data["quotes"].schema) == QUOTES_SCHEMA
    assert dict(data["book"].schema) == book_schema(10)
    oracle_cols = ["ts"] + [f"oracle_h{h}" for h in HORIZONS]
    assert data["oracle"].columns == oracle_cols
    assert all(dtype == pl.Float64 for dtype in data["oracle"].dtypes[1:])
    assert summary["rows"] == {name: frame.height for name, frame in data.items()}
    assert data["book"].height == data["quotes"].height == data["oracle"].height == 36_000
    for name in FILES:
        meta = pq.read_schema(Path(summary["out"]) / f"{name}.parquet").metadata
        assert meta[b"symbol"] == b"BTCUSDT" and meta[b"venue"] == b"synthetic"
        assert json.loads(meta[b"synth"])["seed"] == 11
    oracle_meta = json.loads(
        pq.read_schema(Path(summary["out"]) / "oracle.parquet").metadata[b"oracle"]
    )
    assert oracle_meta["price"] == "wmid_paper" and oracle_meta["horizons"] == list(HORIZONS)
    assert oracle_meta["beta"] == PARAMS.beta and oracle_meta["phi"] == PARAMS.phi

    generate(tmp_path, 0.1, seed=1, levels=3, symbol="ETHUSDT", venue="binance")
    assert dict(pl.read_parquet(tmp_path / "book.parquet").schema) == book_schema(3)
    assert pq.read_schema(tmp_path / "trades.parquet").metadata[b"symbol"] == b"ETHUSDT"


def test_book_is_sane(hour):
    book = hour[1]["book"]
    ts = book["ts"].to_numpy()
    assert ts[0] == START_NS and np.all(np.diff(ts) == STEP_NS)
    assert np.all(book["local_ts"].to_numpy() > ts) and np.all(
        np.diff(book["local_ts"].to_numpy()) >= 0
    )
    assert np.all(np.diff(book["update_id"].to_numpy()) > 0)
    assert book["in_sync"].all() and book.null_count().sum_horizontal().item() == 0
    bid = book.select(f"bid_px_{i}" for i in range(1, 11)).to_numpy()
    ask = book.select(f"ask_px_{i}" for i in range(1, 11)).to_numpy()
    qty = book.select(pl.col("^.*_qty_.*$")).to_numpy()
    assert np.all(bid[:, 0] < ask[:, 0]), "crossed or locked book"
    assert np.all(np.diff(bid, axis=1) < 0) and np.all(np.diff(ask, axis=1) > 0)
    for px in (bid, ask):  # on the 0.01 grid
        np.testing.assert_allclose(px * 100, np.rint(px * 100), rtol=0, atol=1e-6)
    assert np.all(qty > 0)
    spread_ticks = np.rint((ask[:, 0] - bid[:, 0]) * 100)
    assert 0.9 < np.mean(spread_ticks == 1) < 0.99 and spread_ticks.max() > 2
    price = wmid(book)
    assert 40_000 < price.min() and price.max() < 80_000
    returns = np.diff(np.log(price))
    kurtosis = np.mean((returns - returns.mean()) ** 4) / returns.var() ** 2
    assert 2e-5 < returns.std() < 5e-4 and kurtosis > 5  # ~1 bp per 100 ms, heavy tails
    squared = returns**2 - np.mean(returns**2)  # volatility clustering: |r|^2 autocorrelated
    assert np.mean(squared[100:] * squared[:-100]) / np.mean(squared**2) > 0.05


def test_quotes_and_trades_match_the_book(hour):
    _, data = hour
    book, quotes, trades = data["book"], data["quotes"], data["trades"]
    top = book.select(
        "ts",
        "local_ts",
        "update_id",
        bid_px="bid_px_1",
        bid_qty="bid_qty_1",
        ask_px="ask_px_1",
        ask_qty="ask_qty_1",
    )
    assert quotes.equals(top)

    ts = trades["ts"].to_numpy()
    row = (ts - START_NS) // STEP_NS
    assert np.all(np.diff(ts) >= 0) and np.all(ts % STEP_NS > 0)
    assert np.all(np.diff(trades["trade_id"].to_numpy()) == 1)
    assert np.all(trades["local_ts"].to_numpy() > ts) and np.all(
        np.diff(trades["local_ts"].to_numpy()) >= 0
    )
    side = trades["side"].to_numpy()
    assert set(np.unique(side)) == {-1, 1} and np.all(trades["qty"].to_numpy() > 0)
    touch = np.where(side > 0, book["ask_px_1"].to_numpy()[row], book["bid_px_1"].to_numpy()[row])
    assert np.array_equal(trades["price"].to_numpy(), touch)
    signal = data["oracle"]["oracle_h1"].to_numpy()[row]
    assert np.corrcoef(side, signal)[0, 1] > 0.1  # order flow leads the price


def test_weighted_mid_is_the_latent_price_and_oracle_is_closed_form():
    market = Market(seed=5, symbol="BTCUSDT", venue="synthetic", levels=10, step_ns=STEP_NS)
    x, s, sigma = market.advance(20_000)
    files = market.observe(START_NS + np.arange(20_000) * STEP_NS, x, s, sigma)
    book = pl.DataFrame(files["book"])
    np.testing.assert_allclose(wmid(book), np.exp(x), rtol=1e-12, atol=0)
    expected = PARAMS.beta * s[:, None] * oracle_multipliers()[None, :]
    got = pl.DataFrame(files["oracle"]).drop("ts").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
    depth_lean = np.mean(
        [
            np.log(files["book"][f"bid_qty_{i}"] / files["book"][f"ask_qty_{i}"])
            for i in range(2, 11)
        ],
        axis=0,
    )
    assert np.corrcoef(depth_lean, s)[0, 1] > 0.8  # levels 2..10 reveal s, with noise


@pytest.mark.parametrize("s0, v0", [(1.5, 0.8), (-0.7, -0.6)])
def test_oracle_agrees_with_monte_carlo(s0, v0):
    paths = 100_000
    state = LatentState(np.full(paths, np.log(60_000.0)), np.full(paths, s0), np.full(paths, v0))
    x, _, _, _ = simulate_latent(
        state, latent_streams(np.random.SeedSequence(123)), max(HORIZONS) + 1
    )
    moves = x[1:] - x[0]  # (h, paths)
    mean, stderr = moves.mean(axis=1), moves.std(axis=1) / np.sqrt(paths)
    oracle = PARAMS.beta * s0 * oracle_multipliers()
    assert np.all(np.abs(mean - oracle) < 4 * stderr), (mean - oracle) / stderr
    assert np.all(
        np.abs(oracle) > 8 * stderr
    )  # the test can tell a wrong oracle from the right one


def test_oracle_explains_part_of_realised_returns(hour):
    _, data = hour
    logp = np.log(wmid(data["book"]))
    scores = {}
    for h in (1, 5, 30):
        realised = logp[h:] - logp[:-h]
        scores[h] = r2(realised, data["oracle"][f"oracle_h{h}"].to_numpy()[:-h])
    assert 0.05 < scores[5] < 0.35 and scores[5] > scores[30] > 0 and scores[1] > 0, scores


def test_deterministic_for_a_seed(tmp_path):
    generate(tmp_path / "a", 0.5, seed=3)
    generate(tmp_path / "b", 0.5, seed=3)
    generate(tmp_path / "c", 0.5, seed=4)
    generate(tmp_path / "d", 0.5, seed=3, venue="other")
    a, b, c, d = (read(tmp_path / k) for k in "abcd")
    assert all(a[name].equals(b[name]) for name in FILES)
    assert not a["book"].equals(c["book"])
    # same seed on another venue: the same market (latent price, oracle), another book
    assert a["oracle"].equals(d["oracle"])
    np.testing.assert_allclose(wmid(a["book"]), wmid(d["book"]), rtol=1e-12)
    assert not a["book"].equals(d["book"])


@pytest.mark.parametrize("chunk_rows", [1, 97])
def test_chunking_does_not_change_data(tmp_path, chunk_rows):
    generate(tmp_path / "one", 0.5, seed=9)
    generate(tmp_path / "many", 0.5, seed=9, chunk_rows=chunk_rows)
    one, many = read(tmp_path / "one"), read(tmp_path / "many")
    assert all(one[name].equals(many[name]) for name in FILES)
    assert pq.ParquetFile(tmp_path / "many" / "book.parquet").metadata.num_row_groups == -(
        -300 // chunk_rows
    )


def test_memory_is_bounded_per_chunk(tmp_path):
    def peak(minutes: float) -> int:
        generate(tmp_path / str(minutes), 0.1, seed=1, chunk_rows=2_000)  # warm up compiled code
        tracemalloc.start()
        generate(tmp_path / str(minutes), minutes, seed=1, chunk_rows=2_000)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(4.0), peak(40.0)  # 2,400 and 24,000 rows: 2 and 12 chunks of 2,000
    assert long < 1.5 * short, (short, long)  # 10x the rows, about the same peak
    assert long < 2_000 * 8_000  # under 8 kB per chunk row


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="minutes"):
        generate(tmp_path, 0.0, seed=1)
    with pytest.raises(ValueError, match="levels"):
        generate(tmp_path, 1.0, seed=1, levels=0)
