"""The generic book kernel and resampler, against a plain-Python reference book."""

import numpy as np
import polars as pl
import pytest

from data_loaders.order_book import ASK, BID, book_frame, parse_every, rebuild_book, resample_book
from data_loaders.schema import book_schema


def _reference(events, order, reset, levels):
    """Dict book: after each applied event, the top levels as (bids, asks) lists of (px, qty)."""
    bids, asks, out = {}, {}, []
    for k, e in enumerate(order):
        if reset[k]:
            bids.clear()
            asks.clear()
        for side, px, qty in events[e]:
            book = bids if side == BID else asks
            if qty == 0:
                book.pop(px, None)
            else:
                book[px] = qty
        out.append((sorted(bids.items(), reverse=True)[:levels], sorted(asks.items())[:levels]))
    return out


def _flatten(events):
    starts, ends, side, price, qty = [], [], [], [], []
    for ev in events:
        starts.append(len(side))
        for s, p, q in ev:
            side.append(s)
            price.append(p)
            qty.append(q)
        ends.append(len(side))
    return (
        np.array(starts),
        np.array(ends),
        np.array(side, np.int8),
        np.array(price),
        np.array(qty),
    )


def test_kernel_matches_reference_on_random_events():
    rng = np.random.default_rng(7)
    events = []
    for _ in range(3000):
        n = rng.integers(0, 12)
        ev = []
        for _ in range(n):
            side = int(rng.integers(0, 2))
            tick = int(rng.integers(0, 400))  # bids below 100.00, asks above, far levels included
            px = round(100.0 - tick * 0.01, 2) if side == BID else round(100.01 + tick * 0.01, 2)
            qty = 0.0 if rng.random() < 0.4 else round(float(rng.random() * 5), 3)
            ev.append((side, px, qty))
        events.append(ev)
    order = np.concatenate([np.arange(3000), np.arange(1000, 1500)])  # replay some events
    reset = np.zeros(order.size, bool)
    reset[[0, 1200, 3100]] = True
    arrays = rebuild_book(*_flatten(events), levels=5, order=order, reset=reset)
    expected = _reference(events, order, reset, 5)
    assert arrays.bid_px.shape == (order.size, 5)
    for r, (bids, asks) in enumerate(expected):
        got_bids = [(p, q) for p, q in zip(arrays.bid_px[r], arrays.bid_qty[r]) if not np.isnan(p)]
        got_asks = [(p, q) for p, q in zip(arrays.ask_px[r], arrays.ask_qty[r]) if not np.isnan(p)]
        assert got_bids == bids and got_asks == asks, r
        assert np.isnan(arrays.bid_qty[r, len(bids) :]).all()
    assert not arrays.crossed.any()


def test_kernel_emit_and_crossed():
    events = [[(BID, 10.0, 1.0), (ASK, 11.0, 2.0)], [(BID, 11.5, 1.0)], [(BID, 11.5, 0.0)]]
    emit = np.array([False, True, True])
    arrays = rebuild_book(*_flatten(events), levels=2, emit=emit)
    assert arrays.position.tolist() == [1, 2]
    assert arrays.crossed.tolist() == [True, False]
    assert arrays.bid_px[1].tolist()[0] == 10.0 and np.isnan(arrays.bid_px[1, 1])


def test_kernel_grows_past_its_initial_capacity():
    n = 5000
    events = [
        [(BID, float(1000 + i), 1.0) for i in range(n)],
        [(BID, float(1000 + i), 0.0) for i in range(0, n, 2)],
    ]
    arrays = rebuild_book(*_flatten(events), levels=3)
    assert arrays.bid_px[0].tolist() == [5999.0, 5998.0, 5997.0]
    assert arrays.bid_px[1].tolist() == [5999.0, 5997.0, 5995.0]


def test_book_frame_missing_levels_are_null_not_zero():
    arrays = rebuild_book(*_flatten([[(BID, 10.0, 1.0)]]), levels=3)
    frame = book_frame(arrays, np.array([1]), np.array([2]), np.array([3]), np.array([True]))
    assert frame.schema == pl.Schema(book_schema(3))
    assert frame["bid_px_2"].null_count() == 1 and frame["ask_px_1"].null_count() == 1
    assert frame["bid_px_1"][0] == 10.0


def test_parse_every():
    assert parse_every("100ms") == 100_000_000
    assert parse_every("1s") == 1_000_000_000
    assert parse_every("250us") == 250_000
    assert parse_every(5) == 5
    with pytest.raises(ValueError):
        parse_every("fast")
    with pytest.raises(ValueError):
        parse_every("0ms")


def test_resample_takes_last_state_at_or_before_each_grid_point():
    levels = 1
    book = pl.DataFrame(
        {
            "ts": [1, 2, 3, 4],
            "local_ts": [150, 199, 200, 420],
            "update_id": [10, 11, 12, 13],
            "in_sync": [True, True, False, True],
            "bid_px_1": [1.0, 2.0, 3.0, 4.0],
            "bid_qty_1": [1.0, 1.0, 1.0, 1.0],
            "ask_px_1": [5.0, 5.0, 5.0, None],
            "ask_qty_1": [1.0, 1.0, 1.0, None],
        }
    ).cast(book_schema(levels))
    grid, backwards = resample_book(book, 100)
    assert backwards == 0
    assert grid["local_ts"].to_list() == [200, 300, 400]
    assert grid["update_id"].to_list() == [12, 12, 12]  # the state at 200 includes the row at 200
    assert grid["in_sync"].to_list() == [False, False, False]
    assert grid["ts"].to_list() == [3, 3, 3]
    assert grid.schema == book.schema
    assert resample_book(book, 50)[0]["update_id"].to_list() == [10, 12, 12, 12, 12, 12]


def _one_level_book(local_ts: list[int]) -> pl.DataFrame:
    n = len(local_ts)
    return pl.DataFrame({"ts": list(range(n)), "local_ts": local_ts, "update_id": list(range(10, 10 + n)),
                         "in_sync": [True] * n, "bid_px_1": [1.0 + i for i in range(n)], "bid_qty_1": [1.0] * n,
                         "ask_px_1": [50.0] * n, "ask_qty_1": [1.0] * n}).cast(book_schema(1))


def test_resample_counts_a_receive_time_that_steps_backwards_and_keeps_receive_order():
    book = _one_level_book([100, 250, 150, 320])  # the third row's clock stepped back 100
    grid, backwards = resample_book(book, 100)
    assert backwards == 1
    assert grid["local_ts"].to_list() == [100, 200, 300]
    # received after the row at 250: its state prevails from 250 on, never before
    assert grid["update_id"].to_list() == [10, 10, 12]


def test_resample_refuses_a_clock_jump_too_long_for_a_grid_with_a_clear_error():
    year = 365 * 86_400 * 10**9
    book = _one_level_book([10**18, 10**18 + 10**8, 10**18 + year, 10**18 + year + 10**8])
    with pytest.raises(ValueError, match=r"largest step is 8,760.0 h, at book row 2.*clock jump"):
        resample_book(book, "100ms")


def test_a_snapshot_of_400k_levels_in_one_10_mb_line_is_read_in_bounded_memory(tmp_path):
    """The book reserves free blocks per slice of an event, not one per level of the whole event
    (which took 1.6 GB for this line)."""
    import gzip
    import json
    import subprocess
    import sys

    bids = [[f"{60_000 - i * 0.01:.2f}", "0.001"] for i in range(200_000)]
    asks = [[f"{60_001 + i * 0.01:.2f}", "0.001"] for i in range(200_000)]
    snapshot = json.dumps({"lastUpdateId": 100, "bids": bids, "asks": asks}, separators=(",", ":"))
    diff = json.dumps({"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "E": 1723161253000,
                       "s": "BTCUSDT", "U": 101, "u": 101, "b": [["60000.00", "1"]], "a": []}},
                      separators=(",", ":"))
    recording = tmp_path / "spot_btcusdt_20240808.gz"
    recording.write_bytes(gzip.compress(f"1723161253000000000 {snapshot}\n1723161253100000000 {diff}\n".encode()))
    out = tmp_path / "book.parquet"
    # VmHWM, the peak of this process's own memory (ru_maxrss would include the forking pytest's)
    measured = ("import re, sys\nfrom data_loaders.cli import app\ntry:\n    app(sys.argv[1:])\n"
                "except SystemExit:\n"
                "    print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
                "    raise")
    done = subprocess.run([sys.executable, "-c", measured, "book", str(recording), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 800, f"peak RSS {peak_mb:.0f} MB"
    book = pl.read_parquet(out)
    assert book.height == 2 and book["bid_qty_1"].to_list() == [0.001, 1.0]
