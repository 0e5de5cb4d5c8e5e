"""The synthetic markets (v2 `regime`, the default, and v1 `linear`): contracts, determinism,
chunking, the exact weighted mid, the oracle and the ceiling against Monte Carlo."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from data_loaders.cli import app
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA, book_schema
from data_loaders.synth import (
    FILES,
    HORIZONS,
    MARKETS,
    PARAMS,
    START_NS,
    LatentState,
    Market,
    generate,
    latent_streams,
    oracle_multipliers,
    simulate_latent,
)
from data_loaders.synth_regime import (
    REGIME_PARAMS,
    RegimeMarket,
    RegimeState,
    forecasts,
    queue_factors,
    regime_streams,
    simulate_regime,
    stationary,
    transition_matrix,
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


def digest(frame: pl.DataFrame) -> str:
    """The contents of a frame (names, then each column's bytes), independent of Parquet's encoding."""
    h = hashlib.sha256()
    for name in frame.columns:
        h.update(name.encode())
        h.update(frame[name].to_numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module", params=MARKETS)
def hour(request, tmp_path_factory) -> tuple[dict, dict[str, pl.DataFrame]]:
    """One hour (36,000 book rows) of each market with the default settings."""
    out = tmp_path_factory.mktemp(f"synth_hour_{request.param}")
    summary = generate(out, 60, seed=11, market=request.param)
    return summary, read(out)


@pytest.fixture(scope="module")
def linear_hour(tmp_path_factory) -> tuple[dict, dict[str, pl.DataFrame]]:
    out = tmp_path_factory.mktemp("synth_hour_linear")
    summary = generate(out, 60, seed=11, market="linear")
    return summary, read(out)


@pytest.fixture(scope="module")
def regime_hour(tmp_path_factory) -> tuple[dict, dict[str, pl.DataFrame]]:
    out = tmp_path_factory.mktemp("synth_hour_regime")
    summary = generate(out, 60, seed=11, market="regime")
    return summary, read(out)


def test_contracts_and_metadata(hour, tmp_path):
    summary, data = hour
    market = summary["market"]
    assert dict(data["trades"].schema) == TRADES_SCHEMA
    assert dict(data["quotes"].schema) == QUOTES_SCHEMA
    assert dict(data["book"].schema) == book_schema(10)
    forecasts_in = ("oracle",) if market == "linear" else ("oracle", "ceiling")
    oracle_cols = ["ts"] + [f"{f}_h{h}" for f in forecasts_in for h in HORIZONS]
    assert data["oracle"].columns == oracle_cols
    assert all(dtype == pl.Float64 for dtype in data["oracle"].dtypes[1:])
    assert summary["rows"] == {name: frame.height for name, frame in data.items()}
    assert data["book"].height == data["quotes"].height == data["oracle"].height == 36_000
    for name in FILES:
        meta = pq.read_schema(Path(summary["out"]) / f"{name}.parquet").metadata
        assert meta[b"symbol"] == b"BTCUSDT" and meta[b"venue"] == b"synthetic"
        info = json.loads(meta[b"synth"])
        assert info["seed"] == 11 and info["market"] == market
    oracle_meta = json.loads(
        pq.read_schema(Path(summary["out"]) / "oracle.parquet").metadata[b"oracle"]
    )
    assert oracle_meta["price"] == "wmid_paper" and oracle_meta["horizons"] == list(HORIZONS)
    if market == "linear":
        assert oracle_meta["beta"] == PARAMS.beta and oracle_meta["phi"] == PARAMS.phi
    else:
        assert oracle_meta["transition"] == transition_matrix().tolist()

    generate(tmp_path, 0.1, seed=1, levels=3, symbol="ETHUSDT", venue="binance", market=market)
    assert dict(pl.read_parquet(tmp_path / "book.parquet").schema) == book_schema(3)
    assert pq.read_schema(tmp_path / "trades.parquet").metadata[b"symbol"] == b"ETHUSDT"


def test_book_is_sane(hour):
    market, book = hour[0]["market"], hour[1]["book"]
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
    # volatility clustering: |r|^2 (v1) or |r| (v2, whose tails are heavier) autocorrelated at 10 s
    size = returns**2 if market == "linear" else np.abs(returns)
    size = size - size.mean()
    assert np.mean(size[100:] * size[:-100]) / np.mean(size**2) > 0.05


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


def test_weighted_mid_is_the_latent_price_and_oracle_is_closed_form():  # v1
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


def test_oracle_explains_part_of_realised_returns(linear_hour):
    _, data = linear_hour
    logp = np.log(wmid(data["book"]))
    scores = {}
    for h in (1, 5, 30):
        realised = logp[h:] - logp[:-h]
        scores[h] = r2(realised, data["oracle"][f"oracle_h{h}"].to_numpy()[:-h])
    assert 0.05 < scores[5] < 0.35 and scores[5] > scores[30] > 0 and scores[1] > 0, scores


@pytest.mark.parametrize("market", MARKETS)
def test_deterministic_for_a_seed(tmp_path, market):
    generate(tmp_path / "a", 0.5, seed=3, market=market)
    generate(tmp_path / "b", 0.5, seed=3, market=market)
    generate(tmp_path / "c", 0.5, seed=4, market=market)
    generate(tmp_path / "d", 0.5, seed=3, venue="other", market=market)
    a, b, c, d = (read(tmp_path / k) for k in "abcd")
    assert all(a[name].equals(b[name]) for name in FILES)
    assert not a["book"].equals(c["book"])
    # same seed on another venue: the same market (latent price, oracle), another book
    assert a["oracle"].select("ts", "^oracle_.*$").equals(d["oracle"].select("ts", "^oracle_.*$"))
    np.testing.assert_allclose(wmid(a["book"]), wmid(d["book"]), rtol=1e-12)
    assert not a["book"].equals(d["book"])


def test_linear_market_is_unchanged(tmp_path):
    """`--market linear` writes what v1 wrote before the regime market existed (digests of the
    files' contents taken from that code for these two runs)."""
    runs = {
        "a": ({"minutes": 0.5, "seed": 3}, {"trades": "31261fb6b3bfab25", "quotes": "a12ad30f58ba19a9",
                                             "book": "63768280590491cf", "oracle": "4f2e32c156e4173a"}),
        "b": ({"minutes": 0.2, "seed": 7, "levels": 3, "chunk_rows": 97, "symbol": "ETHUSDT",
               "venue": "binance"}, {"trades": "169f8a689dab903a", "quotes": "99f1cfee3ec031af",
                                     "book": "ed8f0e6685411417", "oracle": "6a7f23f47d224372"}),
    }  # fmt: skip
    for name, (kwargs, expected) in runs.items():
        generate(tmp_path / name, market="linear", **kwargs)
        assert {f: digest(frame) for f, frame in read(tmp_path / name).items()} == expected


def test_cli_market_option(tmp_path):
    runner = CliRunner()
    for market in ("linear", None):
        args = ["synth", "--minutes", "0.1", "--seed", "2", "--out", str(tmp_path / str(market))]
        result = runner.invoke(app, args + ([] if market is None else ["--market", market]))
        assert result.exit_code == 0, result.output
    generate(tmp_path / "api", 0.1, seed=2, market="linear")
    cli_linear, api_linear = read(tmp_path / "linear"), read(tmp_path / "api")
    assert all(cli_linear[f].equals(api_linear[f]) for f in FILES)
    assert "ceiling_h5" in read(tmp_path / "None")["oracle"].columns  # the default is v2
    bad = runner.invoke(app, ["synth", "--minutes", "0.1", "--market", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--market must be one of regime, linear" in bad.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("market", MARKETS)
@pytest.mark.parametrize("chunk_rows", [1, 97])
def test_chunking_does_not_change_data(tmp_path, chunk_rows, market):
    generate(tmp_path / "one", 0.5, seed=9, market=market)
    generate(tmp_path / "many", 0.5, seed=9, chunk_rows=chunk_rows, market=market)
    one, many = read(tmp_path / "one"), read(tmp_path / "many")
    assert all(one[name].equals(many[name]) for name in FILES)
    assert pq.ParquetFile(tmp_path / "many" / "book.parquet").metadata.num_row_groups == -(
        -300 // chunk_rows
    )


@pytest.mark.parametrize("market", MARKETS)
def test_memory_is_bounded_per_chunk(tmp_path, market):
    def peak(minutes: float) -> int:
        generate(tmp_path / str(minutes), 0.1, seed=1, chunk_rows=2_000, market=market)  # warm up
        tracemalloc.start()
        generate(tmp_path / str(minutes), minutes, seed=1, chunk_rows=2_000, market=market)
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
    with pytest.raises(ValueError, match="unknown market 'nope'"):
        generate(tmp_path, 1.0, seed=1, market="nope")
    with pytest.raises(ValueError, match="excite < 1 - decay"):  # an explosive Hawkes process
        replace(REGIME_PARAMS, excite=(0.2, 0.6, 0.1))
    with pytest.raises(ValueError, match="one per regime"):
        replace(REGIME_PARAMS, impact=(1e-4, 1e-4))


# v2: the regime market


def regime_rows(seed: int, rows: int) -> tuple[RegimeMarket, object, dict[str, pl.DataFrame]]:
    """`rows` book rows of one regime market: the generator, its latent path and its files."""
    market = RegimeMarket(seed, "BTCUSDT", "synthetic", 10, STEP_NS)
    lat = market.advance(rows)
    files = market.observe(START_NS + np.arange(rows) * STEP_NS, lat)
    return market, lat, {name: pl.DataFrame(cols) for name, cols in files.items()}


def seen_in_files(files: dict[str, pl.DataFrame]) -> dict[str, np.ndarray]:
    """The filter's inputs rebuilt from the files alone: log price, log level-1 depth, spread,
    trades per side per step and the excitations they imply."""
    book, trades, p = files["book"], files["trades"], REGIME_PARAMS
    n = book.height
    step = (trades["ts"].to_numpy() - book["ts"][0]) // STEP_NS
    side = trades["side"].to_numpy()
    buys = np.bincount(step[side > 0], minlength=n)
    sells = np.bincount(step[side < 0], minlength=n)
    e_buy, e_sell = np.zeros(n), np.zeros(n)
    for t in range(1, n):
        e_buy[t] = p.decay * e_buy[t - 1] + buys[t - 1]
        e_sell[t] = p.decay * e_sell[t - 1] + sells[t - 1]
    price = wmid(book)
    frac = price * 100 - np.floor(price * 100)
    return {
        "x": np.log(price),
        "l": np.log((book["bid_qty_1"] + book["ask_qty_1"]).to_numpy()),
        "spread": np.rint((book["ask_px_1"] - book["bid_px_1"]).to_numpy() * 100).astype(np.int64),
        "edge": (frac < p.edge_fraction) | (frac > 1 - p.edge_fraction),
        "buys": buys,
        "sells": sells,
        "e_buy": e_buy,
        "e_sell": e_sell,
    }


def file_beliefs(seen: dict[str, np.ndarray], market: RegimeMarket) -> np.ndarray:
    """P(z[t] | files up to row t) from a fresh filter fed only what the files show."""
    col = {k: seen[k][:, None] for k in ("e_buy", "e_sell", "x", "l", "buys", "sells")}
    lat = type(market.advance(0))(z=np.zeros_like(col["buys"]), x_end=np.array([np.nan]), **col)
    market.pred = stationary()  # the filter's start: the market opens with z ~ stationary
    return market.beliefs(lat, seen["spread"], seen["edge"])


def test_regime_files_show_everything_but_the_regime():
    """The weighted mid is exp(x), the level-1 total is the depth Q, the trades are the latent
    counts, so the excitations follow from the trades file; the ceiling is rebuilt from the files."""
    _, lat, files = regime_rows(5, 20_000)
    seen = seen_in_files(files)
    np.testing.assert_allclose(np.exp(seen["x"]), np.exp(lat.x[:, 0]), rtol=1e-12, atol=0)
    np.testing.assert_allclose(seen["l"], lat.l[:, 0], rtol=1e-12, atol=1e-12)
    assert np.array_equal(seen["buys"], lat.buys[:, 0]) and np.array_equal(seen["sells"], lat.sells[:, 0])
    np.testing.assert_allclose(seen["e_buy"], lat.e_buy[:, 0], atol=1e-9)
    np.testing.assert_allclose(seen["e_sell"], lat.e_sell[:, 0], atol=1e-9)
    flow = seen["e_buy"] - seen["e_sell"]
    belief = file_beliefs(seen, RegimeMarket(5, "BTCUSDT", "synthetic", 10, STEP_NS))
    ceiling = forecasts(flow, queue_factors(seen["l"]), belief)
    stored = files["oracle"].select(f"ceiling_h{h}" for h in HORIZONS).to_numpy()
    np.testing.assert_allclose(ceiling, stored, rtol=1e-6, atol=1e-12)
    oracle = files["oracle"].select(f"oracle_h{h}" for h in HORIZONS).to_numpy()
    assert not np.allclose(oracle, stored, rtol=1e-3)  # the regime is not always known
    lean = np.mean([np.log(files["book"][f"bid_qty_{i}"] / files["book"][f"ask_qty_{i}"]).to_numpy()
                    for i in range(2, 11)], axis=0)
    assert np.corrcoef(lean, flow)[0, 1] > 0.5  # levels 2..10 show the flow, with noise


def monte_carlo_moves(z: np.ndarray, e_buy: float, e_sell: float, log_depth: float,
                      seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of x[t+h] - x[t] over paths starting in regimes z (one per path)."""
    k = z.shape[0]
    state = RegimeState(z, np.full(k, e_buy), np.full(k, e_sell), np.full(k, np.log(60_000.0)),
                        np.full(k, log_depth))
    lat, end = simulate_regime(state, regime_streams(np.random.SeedSequence(seed)), max(HORIZONS))
    x = np.concatenate([lat.x, end.x[None, :]])
    moves = x[np.asarray(HORIZONS)] - x[0]  # (h, paths)
    return moves.mean(axis=1), moves.std(axis=1) / np.sqrt(k)


@pytest.mark.parametrize("z0, e_buy, e_sell, depth_sd", [
    (0, 4.0, 0.5, 0.0), (1, 1.0, 7.0, -1.0), (2, 3.0, 0.2, -1.5), (2, 0.5, 2.5, 1.0),
])  # fmt: skip
def test_regime_oracle_agrees_with_monte_carlo(z0, e_buy, e_sell, depth_sd):
    p = REGIME_PARAMS
    log_depth = np.log(p.touch_median) + depth_sd * p.touch_sigma
    mean, stderr = monte_carlo_moves(np.full(200_000, z0), e_buy, e_sell, log_depth)
    oracle = forecasts(np.array([e_buy - e_sell]), queue_factors(np.array([log_depth])),
                       np.eye(3)[[z0]])[0]
    assert np.all(np.abs(mean - oracle) < 4 * stderr), (mean - oracle) / stderr
    assert np.all(np.abs(oracle[:10]) > 8 * stderr[:10])  # the test can tell a wrong oracle


def test_ceiling_agrees_with_monte_carlo_from_the_filters_posterior():
    """At the row where the regime is least known (oracle and ceiling furthest apart), continuations
    from the filter's posterior over z (all else as the files show) average to the ceiling."""
    _, _, files = regime_rows(21, 20_000)
    seen = seen_in_files(files)
    belief = file_beliefs(seen, RegimeMarket(21, "BTCUSDT", "synthetic", 10, STEP_NS))
    oracle, ceiling = (files["oracle"].select(f"{f}_h{h}" for h in HORIZONS).to_numpy()
                       for f in ("oracle", "ceiling"))
    t = int(np.argmax(np.abs(oracle[:, 4] - ceiling[:, 4])))
    assert belief[t].max() < 0.95
    z = np.random.default_rng(7).choice(3, size=200_000, p=belief[t])
    mean, stderr = monte_carlo_moves(z, seen["e_buy"][t], seen["e_sell"][t], seen["l"][t])
    assert np.all(np.abs(mean - ceiling[t]) < 4 * stderr), (mean - ceiling[t]) / stderr
    assert np.abs(mean[4] - oracle[t, 4]) > 8 * stderr[4]  # ... and not to the oracle


def test_filter_is_calibrated():
    """Over the rows where the filter is unsure of regime k (0.05 < P(z = k) < 0.95), the regime is k
    as often as the filter says; filters that assume half or twice the impact are off, and score
    the true regime worse (log score), so the check has power."""
    _, lat, files = regime_rows(8, 72_000)
    seen, z = seen_in_files(files), lat.z[:, 0]

    def check(impact_scale: float) -> tuple[float, float]:
        market = RegimeMarket(8, "BTCUSDT", "synthetic", 10, STEP_NS)
        market.p = replace(REGIME_PARAMS, impact=tuple(impact_scale * c for c in REGIME_PARAMS.impact))
        belief = file_beliefs(seen, market)
        gaps = []
        for k in range(3):
            unsure = (belief[:, k] > 0.05) & (belief[:, k] < 0.95)
            assert unsure.sum() > 3_000
            gaps.append(abs(np.mean(z[unsure] == k) - belief[unsure, k].mean()))
        return max(gaps), float(np.mean(np.log(belief[np.arange(z.shape[0]), z])))

    (gap, score), (gap_half, score_half), (gap_twice, score_twice) = map(check, (1.0, 0.5, 2.0))
    assert gap < 0.05 and gap_half > 0.08 and gap_twice > 0.08, (gap, gap_half, gap_twice)
    assert score > max(score_half, score_twice) + 0.02, (score, score_half, score_twice)


def test_regime_forecasts_explain_part_of_realised_returns(regime_hour):
    _, data = regime_hour
    logp = np.log(wmid(data["book"]))
    scores = {}
    for h in (1, 5, 30):
        realised = logp[h:] - logp[:-h]
        for name in ("oracle", "ceiling"):
            forecast = data["oracle"][f"{name}_h{h}"].to_numpy()[:-h]
            scores[name, h] = r2(realised, forecast)
            slope = np.polyfit(forecast, realised, 1)[0]  # a conditional mean: slope 1
            assert 0.8 < slope < 1.2, (name, h, slope)
    assert 0.05 < scores["oracle", 5] < 0.5 and scores["oracle", 5] > scores["oracle", 30] > 0, scores
    for h in (1, 5, 30):
        assert 0 < scores["ceiling", h] <= scores["oracle", h], scores
