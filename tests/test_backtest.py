"""Backtester on hand-made price paths and signals whose PnL is known exactly."""

import dataclasses
import math

import numpy as np
import polars as pl
import pytest

from hfformer.backtest import (
    BacktestConfig,
    backtest_frame,
    backtest_models,
    config_from_overrides,
    fill_rows,
    load_forecasts,
    positions,
    read_backtest,
    summarize,
    write_backtest,
)

FEE = 1e-3  # the default: Binance spot's 0.1% per side
HORIZONS = range(22, 29)


def make_frame(n=110, signals=None, spread=2.0, quantiles=(50,), step_ms=100):
    """price = 100 + row; bid/ask = price -/+ spread/2; signals {row: [7 values] or a scalar}."""
    rows = np.arange(n)
    price = 100.0 + rows
    columns = {
        "ts": pl.Series(rows * step_ms * 1_000_000).cast(pl.Datetime("ns", "UTC")),
        "price": price,
        "bid_px_1": price - spread / 2,
        "ask_px_1": price + spread / 2,
        "bid_qty_1": np.ones(n),
        "ask_qty_1": np.ones(n),
    }
    for i, h in enumerate(HORIZONS):
        columns[f"y_h{h}"] = np.zeros(n)
        for q in quantiles:
            values = np.full(n, np.nan)
            for row, signal in (signals or {}).items():
                base = signal[i] if isinstance(signal, (list, tuple)) else signal
                values[row] = base + (q - 50) / 100  # q10 = median - 0.4, q90 = median + 0.4
            columns[f"f_h{h}_q{q}"] = values
    return pl.DataFrame(columns, nan_to_null=True)


MIXED = [0.5, 0.5, 0.5, -0.1, 0.5, 0.5, 0.5]  # sum 2.9, signs disagree
SIGNALS = {0: 0.2, 25: -0.11, 50: MIXED, 75: 0.05, 100: 0.2}


def test_published_rule_mid_fills():
    bars = backtest_frame(make_frame(signals=SIGNALS))
    # decisions 0, 25, 50, 75 have an exit (next decision); 100 has none inside 110 rows
    assert bars["status"].to_list() == ["trade", "trade", "flat", "flat"]
    assert bars["side"].to_list() == [1, -1, 0, 0]
    assert bars["size"].to_list() == [
        0.15,
        0.1,
        0.0,
        0.0,
    ]  # sum 1.4 >= 0.15*7; |sum| 0.77 in [0.1, 0.125)*7
    assert bars["entry_px"].to_list()[:2] == [102.0, 127.0]  # 2 ticks after the decision
    assert bars["exit_px"].to_list()[:2] == [125.0, 150.0]  # at the next decision
    long = 0.15 * (125 - 102) - 0.15 * (102 + 125) * FEE
    short = -0.1 * (150 - 127) - 0.1 * (127 + 150) * FEE
    assert bars["pnl"].to_list() == pytest.approx([long, short, 0, 0], abs=1e-12)
    assert bars["fee"].to_list() == pytest.approx(
        [0.15 * 227 * FEE, 0.1 * 277 * FEE, 0, 0], abs=1e-15
    )
    assert bars["cum_pnl"][-1] == pytest.approx(long + short, abs=1e-12)
    assert bars["ts"].dt.epoch("ns").to_list() == [r * 100_000_000 for r in (0, 25, 50, 75)]


def test_touch_fills_buy_at_ask_sell_at_bid():
    bars = backtest_frame(make_frame(signals=SIGNALS), BacktestConfig(fill="touch"))
    assert bars["entry_px"].to_list()[:2] == [
        103.0,
        126.0,
    ]  # long buys the ask, short sells the bid
    assert bars["exit_px"].to_list()[:2] == [124.0, 151.0]  # long sells the bid, short buys the ask
    expected = [
        0.15 * (124 - 103) - 0.15 * (103 + 124) * FEE,
        -0.1 * (151 - 126) - 0.1 * (126 + 151) * FEE,
    ]
    assert bars["pnl"].to_list()[:2] == pytest.approx(expected, abs=1e-12)


def test_exit_with_the_same_delay_and_custom_cadence():
    config = BacktestConfig(exit_at="fill", delay_ticks=3, maker_fee_bps=0.0, taker_fee_bps=0.0)
    bars = backtest_frame(make_frame(signals=SIGNALS), config)
    # exits fill 3 ticks after the next decision: decision 75's exit (row 103) still fits, 100's not
    assert bars.height == 4
    assert bars["entry_px"].to_list()[:2] == [103.0, 128.0]
    assert bars["pnl"].to_list()[:2] == pytest.approx([0.15 * 25, -0.1 * 25])


def test_latency_in_ms_uses_timestamps():
    ts = np.array([0, 10, 20, 30, 400, 500, 600, 700]) * 1_000_000
    rows = fill_rows(ts, np.array([0, 3]), delay_ticks=1, latency_ms=25)
    assert rows.tolist() == [3, 4]  # 25 ms after row 0 is row 3; row 3 + 1 tick is row 4
    bars = backtest_frame(
        make_frame(signals=SIGNALS), BacktestConfig(latency_ms=450, delay_ticks=0)
    )
    assert bars["entry_px"].to_list()[:2] == [105.0, 130.0]  # 100 ms per row -> 5 rows later


def test_size_ladder_and_threshold():
    values = np.array([0.2, 0.13, 0.11, 0.08, 0.06, 0.03])
    signals = np.repeat(values[:, None], 7, axis=1)
    side, size, total = positions(signals, None, None, BacktestConfig(min_signal=0.0))
    assert size.tolist() == [0.15, 0.125, 0.1, 0.075, 0.05, 0.025]
    assert side.tolist() == [1] * 6
    assert total == pytest.approx(values * 7)
    side, size, _ = positions(
        -signals, None, None, BacktestConfig()
    )  # published: skip |sum| < 0.1*n
    assert side.tolist() == [-1, -1, -1, 0, 0, 0]
    assert size.tolist() == [0.15, 0.125, 0.1, 0, 0, 0]


def test_agreement_rule_can_be_switched_off():
    signals = np.array([MIXED, [-x for x in MIXED]])
    assert positions(signals, None, None, BacktestConfig())[0].tolist() == [0, 0]
    side, size, _ = positions(signals, None, None, BacktestConfig(require_agreement=False))
    assert side.tolist() == [1, -1]
    assert size.tolist() == [0.15, 0.15]


def test_quantile_signal_and_interval_rule():
    frame = make_frame(signals={0: 0.6, 25: 0.3, 50: -0.6}, quantiles=(10, 50, 90))
    # q10 = median - 0.4: at decision 0 all q10 = 0.2 > 0 (trade); at 25 q10 = -0.1 (no trade)
    bars = backtest_frame(frame, BacktestConfig(require_interval=True))
    assert bars["side"].to_list() == [1, 0, -1, 0]
    # the 90% quantile as the signal: decision 50 q90 = -0.2 still says short
    bars = backtest_frame(frame, BacktestConfig(signal_quantile=90))
    assert bars["side"].to_list() == [1, 1, -1, 0]
    with pytest.raises(ValueError, match="lacks columns"):
        backtest_frame(make_frame(signals=SIGNALS), BacktestConfig(signal_quantile=10))


def test_maker_and_taker_fees_in_bps():
    config = BacktestConfig(maker_fee_bps=-0.5, taker_fee_bps=5.0, entry_liquidity="maker")
    bars = backtest_frame(make_frame(signals=SIGNALS), config)
    assert bars["fee"][0] == pytest.approx(0.15 * (102 * -0.5e-4 + 125 * 5e-4))
    assert bars["gross_pnl"][0] == pytest.approx(0.15 * 23)


def test_missing_forecasts_and_prices_are_counted_not_traded():
    frame = make_frame(signals={0: 0.2, 25: 0.2, 50: 0.2})
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 27)
        .then(None)
        .otherwise(pl.col("ask_px_1"))
        .alias("ask_px_1")
    )
    bars = backtest_frame(frame, BacktestConfig(fill="touch"))
    assert bars["status"].to_list() == ["trade", "unfilled", "trade", "no_forecast"]
    assert bars["pnl"][1] == 0 and bars["signal"][3] is None
    summary = summarize(bars)
    assert (summary["trades"], summary["unfilled"], summary["no_forecast"], summary["flat"]) == (
        2,
        1,
        1,
        0,
    )


def test_summary_numbers():
    signals = {0: 0.2, 25: -0.2, 50: 0.2, 75: -0.2}  # long wins, short loses 0.15*23 each, no fees
    bars = backtest_frame(
        make_frame(signals=signals), BacktestConfig(maker_fee_bps=0, taker_fee_bps=0)
    )
    s = summarize(bars)
    win = 0.15 * 23
    assert s["pnl"] == pytest.approx(0)
    assert s["hit_rate"] == 0.5 and s["trades"] == 4 and (s["longs"], s["shorts"]) == (2, 2)
    assert s["max_drawdown"] == pytest.approx(win)
    assert s["turnover"] == pytest.approx(0.15 * (102 + 125 + 127 + 150 + 152 + 175 + 177 + 200))
    assert s["volume_btc"] == pytest.approx(8 * 0.15)
    assert s["bar_seconds"] == 2.5
    pnl = np.array([win, -win, win, -win])
    assert s["sharpe"] == pytest.approx(
        pnl.mean() / pnl.std(ddof=1) * math.sqrt(365.25 * 86400 / 2.5), abs=1e-9
    )


def test_models_share_decisions_and_prices():
    a = make_frame(signals={0: 0.2, 25: 0.2, 50: 0.2})
    b = make_frame(
        signals={0: -0.2, 50: -0.2}, quantiles=(10, 50, 90)
    )  # no forecast at decision 25
    result = backtest_models({"a": a, "b": b})
    assert result.bars["a"]["status"].to_list() == ["trade", "no_forecast", "trade", "no_forecast"]
    assert result.summary["a"]["pnl"] == pytest.approx(
        -result.summary["b"]["pnl"] - 2 * result.summary["a"]["fees"]
    )
    interval = backtest_models({"a": a, "b": b}, BacktestConfig(require_interval=True))
    assert list(interval.bars) == ["b"] and "f_h22_q10" in interval.skipped["a"]
    with pytest.raises(ValueError, match="different rows or prices"):
        backtest_models({"a": a, "shifted": a.with_columns(pl.col("price") + 1)})


def test_overrides_parse_like_toml():
    config = config_from_overrides(
        ["fill=touch", "latency_ms=5", "horizons=[20, 21]", "require_interval=true"]
    )
    assert (config.fill, config.latency_ms, config.horizons, config.require_interval) == (
        "touch",
        5.0,
        (20, 21),
        True,
    )
    assert dataclasses.replace(config, fill="mid") != config
    with pytest.raises(ValueError, match="takes a int"):
        config_from_overrides(["every=fast"])
    with pytest.raises(ValueError, match="expected key=value"):
        config_from_overrides(["nonsense=1"])
    with pytest.raises(ValueError, match="fill must be"):
        config_from_overrides(["fill=limit"])


def test_run_dir_round_trip(tmp_path):
    (tmp_path / "forecasts").mkdir()
    make_frame(signals=SIGNALS).write_parquet(tmp_path / "forecasts" / "hfformer.parquet")
    (tmp_path / "lstm").mkdir()
    (tmp_path / "lstm" / "metrics.csv").write_text(
        "epoch,step,train_loss,val_loss,lr,windows_per_s\n"
    )
    with pytest.raises(ValueError, match=r"no forecasts for \['lstm'\]"):
        load_forecasts(tmp_path)
    (tmp_path / "lstm" / "metrics.csv").unlink()
    result = backtest_models(load_forecasts(tmp_path))
    write_backtest(tmp_path, result)
    payload, bars = read_backtest(tmp_path)
    assert payload["models"]["hfformer"]["trades"] == 2
    assert payload["config"]["horizons"] == list(HORIZONS)
    assert (
        bars.filter(pl.col("model") == "hfformer")["pnl"].to_list()
        == result.bars["hfformer"]["pnl"].to_list()
    )


def test_pnl_interval_matches_the_spread_of_a_known_total():
    from hfformer.bootstrap import percentile_interval, resampled_totals

    assert percentile_interval(resampled_totals(np.ones(100), block=20)) == pytest.approx((100.0, 100.0))
    rng = np.random.default_rng(1)
    samples = rng.normal(0.0, 1.0, 4000)  # independent: the total's sd is sqrt(4000)
    lo, hi = percentile_interval(resampled_totals(samples, block=20))
    assert lo < samples.sum() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(4000), rel=0.2)
    assert np.isnan(percentile_interval(np.array([np.nan, np.inf]))).all()


def test_summary_gives_intervals_and_warns_of_a_sharpe_from_under_a_day():
    bars = backtest_frame(make_frame(signals=SIGNALS), BacktestConfig(maker_fee_bps=0, taker_fee_bps=0))
    s = summarize(bars)
    for key in ("pnl", "sharpe", "hit_rate"):
        assert s[f"{key}_lo"] <= s[key] <= s[f"{key}_hi"] or np.isnan(s[key]), key
    assert s["span_hours"] < 24 and "< 1 day" in s["sharpe_warning"]


def test_fee_presets_name_what_users_pay_and_the_papers_fee():
    from hfformer.backtest import FEE_PRESETS, config_from_overrides, fee_preset

    assert fee_preset(BacktestConfig()) == "spot" and FEE_PRESETS["spot"] == (10.0, 10.0)
    paper = config_from_overrides(["fees=paper"])
    assert (paper.maker_fee_bps, paper.taker_fee_bps) == (0.02, 0.02) and fee_preset(paper) == "paper"
    usdm = config_from_overrides(["fees=usdm"])
    assert (usdm.maker_fee_bps, usdm.taker_fee_bps) == (2.0, 5.0)
    custom = config_from_overrides(["taker_fee_bps=3", "fees=paper"])  # explicit fees win, in any order
    assert (custom.maker_fee_bps, custom.taker_fee_bps) == (0.02, 3.0) and fee_preset(custom) == "custom"
    with pytest.raises(ValueError, match="unknown fee preset 'vip9'"):
        config_from_overrides(["fees=vip9"])
    frame = make_frame(signals=SIGNALS)
    charged = {name: backtest_frame(frame, config_from_overrides([f"fees={name}"]))["fee"][0] for name in FEE_PRESETS}
    assert charged["spot"] == pytest.approx(0.15 * 227 * 1e-3) and charged["paper"] == pytest.approx(0.15 * 227 * 2e-6)
