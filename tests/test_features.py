import numpy as np
import polars as pl
import pytest

from data_loaders.features import (
    INVALID_REASONS,
    FeatureConfig,
    TrainScaling,
    build_features,
    feature_names,
    make_targets,
    target_scale,
)
from data_loaders.quarantine import Quarantine
from data_loaders.schema import book_schema, level_columns
from data_loaders.windows import Windows, time_split, valid_window_ends, zscore_windows


def make_book(bid, bid_qty, ask, ask_qty, levels=2, tick=0.01, in_sync=None) -> pl.DataFrame:
    """A book frame in the contract: level 1 as given, deeper levels one tick apart with size 1."""
    bid, bid_qty, ask, ask_qty = (
        np.asarray(v, dtype=np.float64) for v in (bid, bid_qty, ask, ask_qty)
    )
    n = bid.size
    cols = {
        "ts": np.arange(n, dtype=np.int64) * 100_000_000,
        "local_ts": np.arange(n, dtype=np.int64),
        "update_id": np.arange(n, dtype=np.int64),
        "in_sync": np.ones(n, dtype=bool) if in_sync is None else np.asarray(in_sync),
    }
    for i in range(1, levels + 1):
        cols[f"bid_px_{i}"] = bid - (i - 1) * tick
        cols[f"bid_qty_{i}"] = bid_qty if i == 1 else np.ones(n)
        cols[f"ask_px_{i}"] = ask + (i - 1) * tick
        cols[f"ask_qty_{i}"] = ask_qty if i == 1 else np.ones(n)
    return pl.DataFrame(cols, schema=book_schema(levels))


HAND = {
    "bid": [100, 100, 100.5, 100.5, 100.2],
    "bid_qty": [1, 2, 1, 1, 5],
    "ask": [101, 101, 101, 100.8, 100.8],
    "ask_qty": [3, 2, 1, 4, 4],
}


def column(f, name):
    return f.x[:, f.names.index(name)].astype(np.float64)


def test_default_names_are_the_papers_42_features():
    names = feature_names(FeatureConfig())
    assert len(names) == 42
    assert names[:2] == ["price", "log_return"] and names[2:] == level_columns(10)
    assert names[2:5] == ["bid_px_1", "bid_px_2", "bid_px_3"] and names[-1] == "ask_qty_10"
    f = build_features(make_book(**HAND, levels=10))
    assert f.x.shape == (5, 42) and f.x.dtype == np.float32 and f.x.flags.c_contiguous


def test_weighted_mid_microprice_mid_and_lagged_return_exact():
    book = make_book(**HAND)
    wmid = np.array(
        [403 / 4, 100.5, (101 + 100.5) / 2, (100.8 * 4 + 100.5) / 5, (100.8 * 4 + 100.2 * 5) / 9]
    )
    micro = np.array(
        [401 / 4, 100.5, (100.5 + 101) / 2, (100.5 * 4 + 100.8) / 5, (100.2 * 4 + 100.8 * 5) / 9]
    )
    f = build_features(book, FeatureConfig(levels=2, include_microprice=True))
    np.testing.assert_allclose(f.price, wmid, rtol=1e-15)
    assert f.price.dtype == np.float64
    # Price-valued columns are stored relative to price_ref; adding it back gives the prices.
    np.testing.assert_allclose(column(f, "price") + f.price_ref, wmid, atol=1e-5)
    np.testing.assert_allclose(column(f, "microprice") + f.price_ref, micro, atol=1e-5)
    np.testing.assert_allclose(
        column(f, "bid_px_2") + f.price_ref, book["bid_px_2"].to_numpy(), atol=1e-5
    )
    np.testing.assert_array_equal(column(f, "ask_qty_1"), HAND["ask_qty"])
    ret = column(f, "log_return")
    assert np.isnan(ret[0])
    np.testing.assert_allclose(ret[1:], np.log(wmid[1:] / wmid[:-1]), rtol=1e-6)
    np.testing.assert_array_equal(f.ts, book["ts"].to_numpy())

    m = build_features(book, FeatureConfig(levels=2, price="microprice"))
    np.testing.assert_allclose(m.price, micro, rtol=1e-15)
    mid = build_features(book, FeatureConfig(levels=2, price="mid"))
    np.testing.assert_allclose(mid.price, (np.array(HAND["bid"]) + HAND["ask"]) / 2, rtol=1e-15)


def test_order_flow_imbalance_cont_kukanov_stoikov():
    f = build_features(make_book(**HAND), FeatureConfig(levels=2, include_ofi=True))
    assert f.names[-1] == "ofi"
    # r1: bid same (+2-1), ask same (-2+3); r2: bid up (+1), ask same (-1+2);
    # r3: bid same (+1-1), ask down (-4); r4: bid down (-1), ask same (-4+4).
    np.testing.assert_array_equal(column(f, "ofi")[1:], [2, 2, -4, -1])


def test_size_imbalance_per_level_and_return_in_basis_points():
    book = make_book(**HAND)
    f = build_features(book, FeatureConfig(levels=2, include_imbalance=True, return_bp=True))
    assert f.names == feature_names(FeatureConfig(levels=2)) + ["imbalance_1", "imbalance_2"]
    bq, aq = np.array(HAND["bid_qty"], float), np.array(HAND["ask_qty"], float)
    np.testing.assert_allclose(column(f, "imbalance_1"), (bq - aq) / (bq + aq), rtol=1e-6)
    np.testing.assert_array_equal(column(f, "imbalance_2"), 0.0)  # make_book: size 1 both sides
    paper = build_features(book, FeatureConfig(levels=2))
    np.testing.assert_allclose(column(f, "log_return")[1:], column(paper, "log_return")[1:] * 1e4,
                               rtol=1e-6)
    # The paper's z-score adds 0.01 to the window std: a raw log return (std ~1e-4 here) is
    # flattened toward 0, the same return in bp keeps its unit scale.
    rng = np.random.default_rng(3)
    ret = rng.standard_normal((100, 1)) * 1e-4
    assert np.abs(zscore_windows(ret.astype(np.float32))).max() < 0.1
    assert zscore_windows((ret * 1e4).astype(np.float32)).std() > 0.99


def test_invalid_rows_flagged_and_counted_by_reason_never_dropped():
    n = 10
    book = make_book(
        bid=np.full(n, 100.0),
        bid_qty=np.ones(n),
        ask=np.full(n, 100.1),
        ask_qty=np.ones(n),
        in_sync=[True, True, True, False, True, True, True, True, True, True],
    )
    book = book.with_columns(
        bid_qty_2=pl.when(pl.int_range(n) == 5).then(None).otherwise(pl.col("bid_qty_2")),
        ask_px_1=pl.when(pl.int_range(n) == 7).then(99.0).otherwise(pl.col("ask_px_1")),
        ask_qty_2=pl.when(pl.int_range(n) == 8).then(-1.0).otherwise(pl.col("ask_qty_2")),
    )
    f = build_features(book, FeatureConfig(levels=2))
    assert f.x.shape[0] == n and f.valid.shape == (n,)
    np.testing.assert_array_equal(
        f.valid, [False, True, True, False, False, False, False, False, False, False]
    )
    assert f.report == {
        "rows": 10,
        "valid": 2,
        "invalid": 8,
        "not_in_sync": 1,
        "missing_value": 1,
        "nonpositive": 1,
        "crossed": 1,
        "no_previous": 4,
    }


def test_chunked_and_lazy_builds_equal_the_whole_build():
    rng = np.random.default_rng(0)
    n = 1000
    bid = 60_000 + np.cumsum(rng.integers(-1, 2, n)) * 0.01
    book = make_book(
        bid,
        rng.uniform(0.1, 3, n),
        bid + 0.01 * rng.integers(1, 3, n),
        rng.uniform(0.1, 3, n),
        levels=3,
        in_sync=rng.random(n) > 0.01,
    )
    cfg = FeatureConfig(levels=3, include_ofi=True, include_microprice=True)
    whole = build_features(book, cfg)
    for other in (
        build_features(book, cfg, chunk_rows=7),
        build_features(book.lazy(), cfg, chunk_rows=64),
    ):
        np.testing.assert_array_equal(other.x, whole.x)
        np.testing.assert_array_equal(other.price, whole.price)
        np.testing.assert_array_equal(other.valid, whole.valid)
        assert other.report == whole.report and other.price_ref == whole.price_ref


def test_float32_features_keep_sub_tick_precision_at_btc_prices():
    """Stored raw, 60,000 in float32 is only 0.004 precise; relative to price_ref the z-scored
    windows match a float64 computation from the book."""
    rng = np.random.default_rng(1)
    n = 400
    bid = 61_234.56 + np.cumsum(rng.integers(-1, 2, n)) * 0.01
    book = make_book(bid, rng.uniform(0.1, 3, n), bid + 0.01, rng.uniform(0.1, 3, n), levels=2)
    f = build_features(book, FeatureConfig(levels=2))
    exact = np.stack([f.price, book["bid_px_1"].to_numpy()], axis=1)[-100:]
    ours = zscore_windows(f.x[-100:, [0, 2]])
    np.testing.assert_allclose(ours, (exact - exact.mean(0)) / (exact.std(0) + 0.01), atol=2e-4)


def test_missing_book_columns_and_bad_config_are_clear_errors():
    with pytest.raises(ValueError, match="in_sync"):
        build_features(make_book(**HAND).drop("in_sync"), FeatureConfig(levels=2))
    with pytest.raises(ValueError, match="bid_px_3"):
        build_features(make_book(**HAND), FeatureConfig(levels=3))
    with pytest.raises(ValueError, match="price"):
        build_features(make_book(**HAND), FeatureConfig(levels=2, price="last"))


def test_targets_exact_with_scale():
    assert target_scale(1) == 1 / 1.11 and target_scale(4) == 1 / 2.24
    p = np.array([100.0, 101.0, 99.0, 100.0, 102.0])
    y = make_targets(p, (1, 2, 4))
    assert y.shape == (5, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y[:4, 0], np.log(p[1:] / p[:-1]) * 1e4 / 1.11, rtol=1e-6)
    np.testing.assert_allclose(
        y[:3, 1], np.log(p[2:] / p[:-2]) * 1e4 / (1.1 * np.sqrt(2) + 0.02), rtol=1e-6
    )
    assert y[0, 2] == np.float32(np.log(102 / 100) * 1e4 / 2.24)
    assert np.isnan(y[4, 0]) and np.isnan(y[3:, 1]).all() and np.isnan(y[1:, 2]).all()
    assert np.isfinite(y[:4, 0]).all() and np.isfinite(y[:3, 1]).all()


def test_features_and_windows_on_the_real_binance_book(binance):
    """The spot recording rebuilt on the paper's 100 ms grid: the pipeline runs end to end."""
    binance_ws = pytest.importorskip("data_loaders.binance_ws")
    book, _ = binance_ws.read("book", binance["spot"][:1], quarantine=Quarantine(None), levels=10, every="100ms")
    cfg = FeatureConfig()
    f = build_features(book, cfg)
    assert f.x.shape == (book.height, 42) and f.report["rows"] == book.height
    assert f.report["valid"] + sum(f.report[r] for r in INVALID_REASONS) == book.height
    assert f.report["valid"] > 0.9 * book.height, f.report
    v = f.valid
    bid, ask = book["bid_px_1"].to_numpy()[v], book["ask_px_1"].to_numpy()[v]
    assert ((f.price[v] >= bid) & (f.price[v] <= ask)).all()
    assert np.isfinite(f.x[v]).all()
    np.testing.assert_allclose(column(f, "bid_px_1")[v] + f.price_ref, bid, atol=2e-3)

    y = make_targets(f.price, cfg.horizons)
    ends = valid_window_ends(f.valid, 100, max(cfg.horizons))
    split = time_split(ends, len(f.price), gap=max(cfg.horizons) + 99)
    xb, yb = Windows(f.x, y, split.train).batch(np.arange(min(64, len(split.train))))
    assert len(split.test) > 0 and np.isfinite(xb).all() and np.isfinite(yb).all()


def test_train_scaling_is_fitted_on_the_training_rows_only():
    rng = np.random.default_rng(0)
    names = ["price", "log_return", "bid_px_1", "bid_qty_1", "ask_px_1", "ask_qty_1", "imbalance_1"]
    x = rng.uniform(0.5, 20, (1000, len(names))).astype(np.float32)
    x[:, -1] = rng.uniform(-1, 1, 1000)
    rows = np.arange(600)
    scaling = TrainScaling.fit(x, names, rows)
    assert [names[c] for c in scaling.columns] == ["bid_qty_1", "ask_qty_1", "imbalance_1"]
    assert scaling.log.tolist() == [True, True, False]
    assert scaling.zscore_mask().tolist() == [True, True, True, False, True, False, False]
    later = x.copy()
    later[600:, 3:] *= 9  # what happens after the training rows changes nothing
    refit = TrainScaling.fit(later, names, rows)
    np.testing.assert_array_equal(refit.mean, scaling.mean)
    np.testing.assert_array_equal(refit.std, scaling.std)
    inputs = scaling.inputs(x)
    np.testing.assert_array_equal(inputs[:, :3], x[:, :3])  # prices and returns as they were
    np.testing.assert_allclose(inputs[rows][:, scaling.columns].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(inputs[rows][:, scaling.columns].std(axis=0), 1, atol=1e-5)
    log_bid = np.log(x[:, 3].astype(np.float64))
    expected = (log_bid - log_bid[rows].mean()) / log_bid[rows].std()
    np.testing.assert_allclose(inputs[:, 3], expected, rtol=1e-5, atol=1e-5)
    again = TrainScaling.from_state_dict(scaling.state_dict())
    np.testing.assert_array_equal(again.inputs(x), inputs)
    x[5, 3] = 0.0  # log(0) on a training row
    with pytest.raises(ValueError, match="bid_qty_1 has non-finite"):
        TrainScaling.fit(x, names, rows)
