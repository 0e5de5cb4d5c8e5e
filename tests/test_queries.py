"""The Polars reference answers on a hand-made dataset, and compare() catching what it must (strictly: types,
order, a stated tolerance). Every engine answers the larger edge-case dataset in test_edge_answers.py."""

import math
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest

from dbbench.engines.base import QUERY_NAMES, TABLES
from dbbench.queries import (
    ABS_TOL,
    MINUTE_NS,
    REL_TOL,
    ROW_QUERIES,
    SORT_KEYS,
    WINDOW_ROWS,
    check_params,
    compare,
    default_params,
    exact_cast,
    params_for,
    reference,
)

S = 1_000_000_000
T0 = 1_723_161_600 * S  # 2024-08-09 00:00 UTC


def write_dataset(out: Path, trades: list[tuple], quotes: list[tuple]) -> Path:
    """trades: (ts, symbol, venue, trade_id, price, qty, side); quotes: (ts, symbol, venue, bid, bq, ask, aq)."""
    for name, rows in (("trades", trades), ("quotes", quotes)):
        frame = pl.DataFrame(rows, schema=TABLES[name].names, orient="row")
        frame = (frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")), pl.col("side").cast(pl.Int8))
                 if name == "trades" else frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC"))))
        frame.write_parquet(out / f"{name}.parquet")
    all_ts = [r[0] for r in trades + quotes]
    manifest = {"min_ts": min(all_ts), "max_ts": max(all_ts), "symbols": sorted({r[1] for r in trades + quotes}),
                "venues": sorted({r[2] for r in trades + quotes}),
                "rows": {"trades": len(trades), "quotes": len(quotes)}}
    (out / "dataset.json").write_bytes(orjson.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    trades = [
        (T0 + 1 * S, "BTC", "a", 1, 100.0, 1.0, 1),
        (T0 + 1 * S, "BTC", "a", 2, 102.0, 3.0, -1),  # same ts: trade_id decides open/close
        (T0 + 30 * S, "BTC", "a", 3, 101.0, 2.0, 1),
        (T0 + 61 * S, "BTC", "a", 4, 99.0, 1.0, -1),
        (T0 + 2 * S, "BTC", "b", 7, 100.5, 1.0, 1),
        (T0 + 0 * S, "BTC", "b", 6, 100.0, 1.0, 1),  # before any quote of b: no as-of row
    ]
    quotes = [
        (T0 + 0 * S + 500, "BTC", "a", 99.0, 1.0, 101.0, 1.0),
        (T0 + 1 * S, "BTC", "a", 100.0, 1.0, 102.0, 1.0),  # at a trade's ts: it prevails
        (T0 + 1 * S, "BTC", "b", 100.5, 1.0, 101.5, 1.0),  # same ts as a's: both prevail
        (T0 + 1 * S + 10, "BTC", "a", 100.0, 1.0, 104.0, 1.0),
        (T0 + 5 * S, "BTC", "a", 101.0, 1.0, 103.0, 1.0),  # seconds 2..4 empty: no rows
        (T0 + 62 * S, "BTC", "b", 98.0, 1.0, 99.0, 1.0),
    ]
    return write_dataset(out, trades, quotes)


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 / S + seconds, tz=UTC)


def test_default_params_cover_the_data_in_whole_minutes(tiny):
    p = default_params(tiny)
    assert (p["start"], p["end"], p["symbol"]) == (T0, T0 + 120 * S, "BTC")
    assert p["scan_end"] - p["scan_start"] == 300 * S
    with pytest.raises(ValueError, match="missing"):
        check_params({"start": 0})


def test_per_row_queries_ask_about_a_window_sized_to_the_dataset(tiny, tmp_path):
    p = default_params(tiny)
    assert (p["window_start"], p["window_end"]) == (p["start"], p["end"])  # small: the window is everything
    days = 6 * 24 * 60  # 100 million rows over 6 days: about WINDOW_ROWS of them in the window
    manifest = {"min_ts": T0, "max_ts": T0 + days * 60 * S - 1, "symbols": ["X"],
                "rows": {"trades": 66_000_000, "quotes": 34_000_000}}
    (tmp_path / "dataset.json").write_bytes(orjson.dumps(manifest))
    big = default_params(tmp_path)
    minutes = (big["window_end"] - big["window_start"]) // MINUTE_NS
    assert minutes == days * WINDOW_ROWS // 100_000_000 and (big["window_end"] - big["window_start"]) % MINUTE_NS == 0
    assert abs((big["window_start"] - big["start"]) - (big["end"] - big["window_end"])) <= MINUTE_NS  # in the middle
    for name in QUERY_NAMES:
        q = params_for(name, big)
        window = (q["start"], q["end"]) == (big["window_start"], big["window_end"])
        assert window == (name in ROW_QUERIES) and (window or (q["start"], q["end"]) == (big["start"], big["end"]))
    assert params_for("nbbo", {"start": 1, "end": 2}) == {"start": 1, "end": 2}  # no window given: as given


def test_a_window_carries_nothing_in_from_before_it(tiny):
    p = {**default_params(tiny), "window_start": T0 + 60 * S, "window_end": T0 + 120 * S}
    asof = reference("asof_trades_quotes", tiny, params_for("asof_trades_quotes", p))
    assert asof.height == 0  # a's trade at 61 s: a's last quote (5 s) is before the window
    nbbo = reference("nbbo", tiny, params_for("nbbo", p))
    assert nbbo.select("venue", "best_bid", "best_ask").rows() == [("b", 98.0, 99.0)]


def test_ohlcv_ties_break_on_trade_id(tiny):
    bars = reference("ohlcv_1m", tiny, default_params(tiny))
    first = bars.row(0, named=True)
    assert ((first["venue"], first["open"], first["high"], first["low"], first["close"])
            == ("a", 100.0, 102.0, 100.0, 101.0))
    assert (first["volume"], first["trades"]) == (6.0, 3)
    assert bars.columns == ["symbol", "venue", "minute", "open", "high", "low", "close", "volume", "trades"]


def test_vwap_per_minute_and_over_the_range(tiny):
    v = reference("vwap", tiny, default_params(tiny)).filter(pl.col("venue") == "a")
    assert v["vwap"].to_list() == pytest.approx([(100 + 306 + 202) / 6, 99.0])
    assert v["vwap_range"].to_list() == pytest.approx([(100 + 306 + 202 + 99) / 7] * 2)


def test_nbbo_counts_every_venue_quoting_at_or_before_the_update(tiny):
    n = reference("nbbo", tiny, default_params(tiny))
    assert n.height == 6
    at_1s = n.filter(pl.col("ts").dt.epoch("ns") == T0 + S)
    # At 1 s both a (100/102) and b (100.5/101.5) prevail, whichever row is looked at.
    assert at_1s["best_bid"].to_list() == [100.5, 100.5] and at_1s["best_ask"].to_list() == [101.5, 101.5]
    first = n.row(0, named=True)
    assert (first["best_bid"], first["best_ask"]) == (99.0, 101.0)  # only a has quoted
    last = n.row(-1, named=True)
    assert (last["venue"], last["best_bid"], last["best_ask"]) == ("b", 101.0, 99.0)  # a's 101/103 still prevails


def test_mid_returns_sample_the_last_quote_of_each_second(tiny):
    r = reference("mid_returns", tiny, default_params(tiny))
    a = r.filter(pl.col("venue") == "a")
    assert a["second"].to_list() == [ts(1), ts(5)]  # second 0 is the first sample; 2..4 are empty
    assert a["mid"].to_list() == [102.0, 102.0]
    assert a["ret"].to_list() == pytest.approx([math.log(102.0 / 100.0), 0.0])
    vol = reference("exec_volatility", tiny, default_params(tiny)).filter(pl.col("venue") == "a")
    assert vol["returns"].to_list() == [2] and vol["realized_vol"][0] == pytest.approx(math.log(1.02))


def test_asof_uses_the_quote_at_or_before_and_drops_trades_without_one(tiny):
    j = reference("asof_trades_quotes", tiny, default_params(tiny))
    assert 6 not in j["trade_id"].to_list()  # b's trade at 0 s precedes b's first quote
    row = j.filter(pl.col("trade_id") == 1).row(0, named=True)
    assert (row["bid_px"], row["ask_px"]) == (100.0, 102.0)
    assert row["eff_spread_bps"] == pytest.approx(2e4 * (100.0 - 101.0) / 101.0)


def test_last_quote_and_range_scan(tiny):
    last = reference("last_quote", tiny, default_params(tiny))
    assert last["ts"].to_list() == [ts(5), ts(62)]
    scan = reference("range_scan", tiny, {**default_params(tiny), "scan_start": T0 + S, "scan_end": T0 + 2 * S})
    assert scan["trade_id"].to_list() == [1, 2]


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_reference_is_in_its_order_and_equal_to_itself_only_in_it(tiny, name):
    ref = reference(name, tiny, default_params(tiny))
    assert set(SORT_KEYS[name]) <= set(ref.columns) and ref.select(SORT_KEYS[name]).is_unique().all()
    assert compare(ref, ref, name).ok
    if ref.height > 1:
        assert "not in the query's order" in compare(ref.reverse(), ref, name).detail


def test_compare_rejects_wrong_answers(tiny):
    ref = reference("vwap", tiny, default_params(tiny))
    assert compare(ref.with_columns(pl.col("vwap") * (1 + 1e-13)), ref, "vwap").ok  # within tolerance
    off = compare(ref.with_columns(pl.col("vwap") * (1 + 1e-8)), ref, "vwap")
    assert not off.ok and "column vwap" in off.detail
    assert "rows" in compare(ref.head(1), ref, "vwap").detail
    assert "columns" in compare(ref.rename({"vwap": "v"}), ref, "vwap").detail
    assert "columns" in compare(ref.select(reversed(ref.columns)), ref, "vwap").detail  # column order counts
    shifted = ref.with_columns(pl.col("minute") + pl.duration(seconds=1))
    assert not compare(shifted, ref, "vwap").ok
    as_ns = ref.with_columns(pl.col("minute").dt.epoch("ns"))  # TimescaleDB keeps times as bigint ns
    assert compare(as_ns, ref, "vwap").ok
    naive = ref.with_columns(pl.col("minute").dt.replace_time_zone(None))  # DuckDB's TIMESTAMP_NS
    assert compare(naive, ref, "vwap").ok
    as_us = ref.with_columns(pl.col("minute").dt.cast_time_unit("us"))  # a unit that drops nanoseconds
    assert "wrong type" in compare(as_us, ref, "vwap").detail


def test_compare_never_casts_a_float_to_the_integer_due():
    ref = pl.DataFrame({"symbol": ["X"], "venue": ["v"], "minute": [datetime(2024, 8, 9, tzinfo=UTC)],
                        "trades": [4], "avg_qty": [4.9]},
                       schema_overrides={"minute": pl.Datetime("ns", "UTC")})
    assert compare(ref, ref, "avg_trade_volume").ok
    four = ref.with_columns(pl.lit(4.0).alias("avg_qty"))  # 4 where 4.9 is right
    assert "column avg_qty" in compare(four, ref, "avg_trade_volume").detail
    as_int = ref.with_columns(pl.lit(4).alias("avg_qty"))  # an integer where a float is due, even if equal
    assert "wrong type" in compare(as_int, ref.with_columns(pl.lit(4.0).alias("avg_qty")), "avg_trade_volume").detail
    for count in (4.9, 4.0):  # a float count: a wrong type, never truncated or rounded to 4
        verdict = compare(ref.with_columns(pl.lit(count).alias("trades")), ref, "avg_trade_volume")
        assert not verdict.ok and "wrong type" in verdict.detail
    unsigned = ref.with_columns(pl.col("trades").cast(pl.UInt64), pl.col("symbol").cast(pl.Categorical))
    assert compare(unsigned, ref, "avg_trade_volume").ok  # ClickHouse: UInt64 count(), LowCardinality strings
    assert not compare(ref.with_columns(pl.col("avg_qty").cast(pl.Float32)), ref, "avg_trade_volume").ok


def test_exact_cast_keeps_values_or_refuses():
    assert exact_cast(pl.Series("n", [100, 2]), pl.Float64).to_list() == [100.0, 2.0]  # JSON's 100 for 100.0
    for bad, dtype in (([4.9], pl.Int64), ([2**62 + 1], pl.Float64), ([300], pl.Int8)):
        with pytest.raises(ValueError, match="is not exactly"):
            exact_cast(pl.Series("n", bad), dtype)


def test_tolerance_is_relative_with_an_absolute_floor_only_for_returns(tiny):
    assert REL_TOL == 1e-9 and set(ABS_TOL) == {"ret", "realized_vol"}
    ref = reference("mid_returns", tiny, default_params(tiny))
    assert 0.0 in ref["ret"].to_list()  # an unchanged mid: a return of exactly zero
    assert compare(ref.with_columns(pl.col("ret") + 1e-14), ref, "mid_returns").ok  # ln(a) - ln(b) rounding
    assert not compare(ref.with_columns(pl.col("ret") + 1e-9), ref, "mid_returns").ok
    tiny_price = pl.DataFrame({"symbol": ["X"], "venue": ["v"], "ts": [datetime(2024, 8, 9, tzinfo=UTC)],
                               "bid_px": [1.0e-8], "bid_qty": [1.0], "ask_px": [1.1e-8], "ask_qty": [1.0]},
                              schema_overrides={"ts": pl.Datetime("ns", "UTC")})
    wrong = tiny_price.with_columns(pl.col("bid_px") * (1 + 1e-6))  # 1e-14 off: no absolute floor hides it
    assert not compare(wrong, tiny_price, "last_quote").ok
