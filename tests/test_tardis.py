"""Tardis.dev CSV reader, on trades / book_snapshot_25 / incremental_book_L2 files written from the real recording."""

from __future__ import annotations

import gzip
import heapq
from itertools import groupby, pairwise
from pathlib import Path

import orjson
import polars as pl
import pytest

from data_loaders import binance_csv, tardis
from data_loaders.quarantine import Quarantine
from data_loaders.schema import TRADES_SCHEMA, book_schema

TRADES_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
INCREMENTAL_HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
SNAPSHOT_HEADER = ",".join(
    ["exchange", "symbol", "timestamp", "local_timestamp"]
    + [f"{s}[{i}].{f}" for i in range(25) for s in ("asks", "bids") for f in ("price", "amount")]
)
N_DIFFS = 1200


@pytest.fixture(scope="module")
def spot(binance) -> dict:
    """Trades, the REST snapshot and the depth diffs that follow it (chained by U/u), from the first real spot file.

    Diffs received before the snapshot but newer than it are given the snapshot's arrival time, as a
    collector that buffers them until the snapshot arrives would write them."""
    trades, diffs, snapshot = [], [], None
    with gzip.open(binance["spot"][0], "rb") as f:
        for line in f:
            local_ns, text = line.split(b" ", 1)
            message = orjson.loads(text)
            if "lastUpdateId" in message:
                snapshot = (int(local_ns), message)
            elif message["stream"].endswith("@trade"):
                trades.append((int(local_ns), message["data"]))
            elif "@depth" in message["stream"]:
                diffs.append((int(local_ns), message["data"]))
    snapshot_ns, last_id = snapshot[0], snapshot[1]["lastUpdateId"]
    diffs = [(max(local_ns, snapshot_ns), d) for local_ns, d in diffs if d["u"] > last_id][:N_DIFFS]
    assert diffs[0][1]["U"] <= last_id + 1 <= diffs[0][1]["u"]
    assert all(b["U"] == a["u"] + 1 for (_, a), (_, b) in pairwise(diffs))  # no update missing
    return {"trades": trades, "snapshot": snapshot, "diffs": diffs}


def trade_lines(trades: list) -> list[str]:
    return [
        f"binance,BTCUSDT,{t['T'] * 1000},{local_ns // 1000},{t['t']},{'sell' if t['m'] else 'buy'},{t['p']},{t['q']}"
        for local_ns, t in trades
    ]


def expected_trades(trades: list) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [t["T"] * 1_000_000 for _, t in trades],
            "local_ts": [local_ns // 1000 * 1000 for local_ns, _ in trades],
            "trade_id": [t["t"] for _, t in trades],
            "price": [float(t["p"]) for _, t in trades],
            "qty": [float(t["q"]) for _, t in trades],
            "side": [-1 if t["m"] else 1 for _, t in trades],
        },
        schema=TRADES_SCHEMA,
    )


def incremental_rows(spot: dict) -> list[tuple]:
    """(timestamp_us, local_us, is_snapshot, side, price, amount) as Tardis writes them, in arrival order."""
    local_ns, snap = spot["snapshot"]
    rows = [
        (local_ns // 1000, local_ns // 1000, True, side, p, q)
        for side, key in (("bid", "bids"), ("ask", "asks"))
        for p, q in snap[key]
    ]
    for local_ns, d in spot["diffs"]:
        rows += [
            (d["E"] * 1000, local_ns // 1000, False, side, p, q)
            for side, key in (("bid", "b"), ("ask", "a"))
            for p, q in d[key]
        ]
    return rows


def row_line(row: tuple) -> str:
    ts, local, is_snapshot, side, price, amount = row
    return f"binance,BTCUSDT,{ts},{local},{str(is_snapshot).lower()},{side},{price},{amount}"


def reference_books(rows: list[tuple], levels: int) -> list[tuple]:
    """An independent, plain-Python book: (ts_ns, local_ns, top bids, top asks) after each message."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    out, was_snapshot = [], False
    for (local, is_snapshot), group in groupby(rows, key=lambda r: (r[1], r[2])):
        group = list(group)
        if is_snapshot and not was_snapshot:
            bids.clear()
            asks.clear()
        was_snapshot = is_snapshot
        for _, _, _, side, price, amount in group:
            book = bids if side == "bid" else asks
            if float(amount) == 0:
                book.pop(float(price), None)
            else:
                book[float(price)] = float(amount)
        top_bids = [(p, bids[p]) for p in heapq.nlargest(levels, bids)]
        top_asks = [(p, asks[p]) for p in heapq.nsmallest(levels, asks)]
        out.append((group[-1][0] * 1000, local * 1000, top_bids, top_asks))
    return out


def book_frame(books: list[tuple], levels: int) -> pl.DataFrame:
    def column(side: int, field: int, i: int) -> list[float | None]:
        return [b[2 + side][i][field] if i < len(b[2 + side]) else None for b in books]

    data = {
        "ts": [b[0] for b in books],
        "local_ts": [b[1] for b in books],
        "update_id": [None] * len(books),
        "in_sync": [True] * len(books),
    }
    for name, side, field in (
        ("bid_px", 0, 0),
        ("bid_qty", 0, 1),
        ("ask_px", 1, 0),
        ("ask_qty", 1, 1),
    ):
        data.update({f"{name}_{i + 1}": column(side, field, i) for i in range(levels)})
    return pl.DataFrame(data, schema=book_schema(levels))


def snapshot_lines(books: list[tuple]) -> list[str]:
    """book_snapshot_25 rows, written (as Tardis does) only when the top 25 changed."""
    lines, previous = [], None
    for ts, local, top_bids, top_asks in books:
        if (top_bids, top_asks) == previous:
            continue
        previous = (top_bids, top_asks)
        fields = [str(ts // 1000), str(local // 1000)]
        for i in range(25):
            for book in (top_asks, top_bids):
                fields += [str(book[i][0]), str(book[i][1])] if i < len(book) else ["", ""]
        lines.append("binance,BTCUSDT," + ",".join(fields))
    return lines


def write(path: Path, header: str, lines: list[str]) -> Path:
    text = "\n".join([header, *lines]) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def read_quarantine(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


@pytest.mark.parametrize("name", ["trades.csv.gz", "trades.csv"])
def test_trades_round_trip(spot, tmp_path, name):
    path = write(tmp_path / name, TRADES_HEADER, trade_lines(spot["trades"]))
    assert tardis.sniff(path) and not binance_csv.sniff(path)
    quarantine = Quarantine(None)
    got, stats = tardis.read("trades", [path], quarantine=quarantine)
    assert quarantine.total == 0 and got.height > 5_000
    assert stats == {"symbol": "btcusdt", "market": "spot"}  # from the rows: binance,BTCUSDT
    assert got.equals(expected_trades(spot["trades"]))


def test_trades_in_several_files_are_one_dataset(spot, tmp_path):
    half = len(spot["trades"]) // 2
    first = write(tmp_path / "a.csv.gz", TRADES_HEADER, trade_lines(spot["trades"][:half]))
    second = write(tmp_path / "b.csv", TRADES_HEADER, trade_lines(spot["trades"][half:]))
    assert tardis.read("trades", [first, second], quarantine=Quarantine(None))[0].equals(
        expected_trades(spot["trades"])
    )
    quarantine = Quarantine(None)
    reversed_order, _ = tardis.read("trades", [second, first], quarantine=quarantine)
    assert dict(quarantine.counts) == {
        "out_of_order": half
    }  # arrival times go back across the files
    assert reversed_order.equals(expected_trades(spot["trades"][half:]))


def test_bad_trade_rows_are_quarantined_and_good_rows_untouched(spot, tmp_path):
    trades = spot["trades"][:2000]
    lines = trade_lines(trades)
    f = lines[500].split(",")
    injected = {  # line number in the final file (header is line 1) -> (kind, text)
        10: ("malformed", ",".join(f[:7])),
        20: ("non_numeric", ",".join([*f[:6], "1e", f[7]])),
        30: ("non_numeric", ",".join([*f[:5], "up", *f[6:]])),
        40: ("non_positive", ",".join([*f[:7], "0"])),
        50: ("bad_timestamp", ",".join([*f[:3], "17", *f[4:]])),
        60: ("out_of_order", ",".join([*f[:3], str(int(lines[0].split(",")[3]) - 1), *f[4:]])),
        70: ("non_numeric", ",".join([*f[:4], "abc-guid", *f[5:]])),
    }
    for line_no in sorted(injected):
        lines.insert(line_no - 2, injected[line_no][1])
    path = write(tmp_path / "bad.csv.gz", TRADES_HEADER, lines)
    quarantine = Quarantine(tmp_path / "bad.jsonl")
    got, _ = tardis.read("trades", [path], quarantine=quarantine)
    quarantine.close()
    assert got.equals(expected_trades(trades))
    written = read_quarantine(tmp_path / "bad.jsonl")
    assert [(w["line"], w["kind"], w["text"]) for w in written] == [
        (n, k, t) for n, (k, t) in sorted(injected.items())
    ]
    assert {w["file"] for w in written} == {str(path)}


def test_empty_id_and_unknown_side_are_null_not_invented(tmp_path):
    path = write(
        tmp_path / "t.csv",
        TRADES_HEADER,
        ["deribit,BTC-PERPETUAL,1723161255342000,1723161255350000,,unknown,61000.5,10"],
    )
    got, stats = tardis.read("trades", [path], quarantine=Quarantine(None))
    assert got.select("trade_id", "side").row(0) == (None, None)
    assert stats == {
        "symbol": "btc-perpetual",
        "market": "deribit",
    }  # other exchanges by their Tardis id


def test_incremental_book_rebuild_matches_an_independent_book(spot, tmp_path):
    rows = incremental_rows(spot)
    path = write(
        tmp_path / "incremental_book_L2.csv.gz", INCREMENTAL_HEADER, [row_line(r) for r in rows]
    )
    assert tardis.sniff(path)
    quarantine = Quarantine(None)
    got, stats = tardis.read("book", [path], levels=10, quarantine=quarantine, on_gap="flag")
    assert quarantine.total == 0
    expected = book_frame(reference_books(rows, 10), 10)
    assert expected.height > 1_000
    assert got.equals(expected)
    assert (
        stats["snapshots"] == 1
        and stats["crossed"] == 0
        and stats["gaps"] == 0
        and stats["rows"] == expected.height
    )


def test_book_snapshot_25_round_trip_and_agrees_with_incremental(spot, tmp_path):
    rows = incremental_rows(spot)
    books = reference_books(rows, 25)
    snapshot = write(tmp_path / "book_snapshot_25.csv", SNAPSHOT_HEADER, snapshot_lines(books))
    incremental = write(
        tmp_path / "incremental_book_L2.csv", INCREMENTAL_HEADER, [row_line(r) for r in rows]
    )
    assert tardis.sniff(snapshot)
    quarantine = Quarantine(None)
    got10, stats = tardis.read("book", [snapshot], levels=10, quarantine=quarantine, on_gap="flag")
    assert quarantine.total == 0 and stats["rows"] == len(snapshot_lines(books)) > 500
    from_incremental = tardis.read("book", [incremental], levels=25, quarantine=Quarantine(None), on_gap="flag")[0]
    level_cols = [c for c in from_incremental.columns if c[-1].isdigit()]
    changed = from_incremental.filter(
        pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in level_cols)
    )
    got25 = tardis.read("book", [snapshot], levels=25, quarantine=Quarantine(None), on_gap="flag")[0]
    assert got25.equals(changed)
    assert got10.equals(changed.select(got10.columns))
    got30 = tardis.read("book", [snapshot], levels=30, quarantine=Quarantine(None), on_gap="flag")[0]
    assert got30.select("bid_px_26", "ask_qty_30").null_count().row(0) == (
        got30.height,
        got30.height,
    )  # never invented


def test_bad_snapshot_rows(spot, tmp_path):
    books = reference_books(incremental_rows(spot), 25)[:400]
    lines = snapshot_lines(books)
    f = lines[100].split(",")
    ask0, bid0 = 4, 6  # field positions of asks[0].price and bids[0].price
    crossed = f.copy()
    crossed[bid0] = str(float(f[ask0]) + 1)
    unsorted = f.copy()
    unsorted[ask0], unsorted[ask0 + 4] = f[ask0 + 4], f[ask0]
    half = f.copy()
    half[ask0 + 1] = ""
    garbled = f.copy()
    garbled[bid0 + 1] = "x"
    thin = lines[200].split(",")
    thin[-4:-2] = ["", ""]  # asks[24] missing: the book is thinner, not broken
    injected = {
        5: ("crossed", crossed),
        6: ("unsorted_levels", unsorted),
        7: ("non_numeric", half),
        8: ("non_numeric", garbled),
    }
    for line_no in sorted(injected):
        lines.insert(line_no - 2, ",".join(injected[line_no][1]))
    lines[200 + len(injected)] = ",".join(thin)
    path = write(tmp_path / "snap.csv", SNAPSHOT_HEADER, lines)
    quarantine = Quarantine(tmp_path / "q.jsonl")
    got, stats = tardis.read("book", [path], levels=25, quarantine=quarantine, on_gap="flag")
    quarantine.close()
    assert [(w["line"], w["kind"]) for w in read_quarantine(tmp_path / "q.jsonl")] == [
        (n, k) for n, (k, _) in sorted(injected.items())
    ]
    assert stats["crossed"] == 1 and stats["rows"] == len(snapshot_lines(books))
    assert (
        got.row(200, named=True)["ask_px_25"] is None
        and got.row(200, named=True)["bid_px_25"] is not None
    )


def test_incremental_gap_flag_drop_error_and_bad_rows(spot, tmp_path):
    rows = incremental_rows(spot)
    n_snapshot = len(spot["snapshot"][1]["bids"]) + len(spot["snapshot"][1]["asks"])
    clean = reference_books(rows, 10)
    # a fresh snapshot later on (as after a reconnect): the clean book state at a message boundary, re-sent
    at = next(i for i in range(n_snapshot + 2000, len(rows)) if rows[i][1] != rows[i - 1][1])
    local = rows[at][1] - 1
    state = reference_books(rows[:at], 5000)[-1]
    resnap = [(local, local, True, "bid", str(p), str(q)) for p, q in state[2]] + [
        (local, local, True, "ask", str(p), str(q)) for p, q in state[3]
    ]
    cross_at = n_snapshot + 500  # a bid above the best ask: updates were missed
    best_ask = reference_books(rows[:cross_at], 1)[-1][3][0][0]
    crossing = (rows[cross_at][0], rows[cross_at][1], False, "bid", str(best_ask + 5), "0.5")
    before = [
        (rows[0][0] - 5, rows[0][1] - 5, False, "bid", "1000.0", "1.0")
    ] * 3  # buffered before the first snapshot
    bad = [
        ("malformed", "binance,BTCUSDT,1,2,false"),
        (
            "non_numeric",
            row_line(rows[n_snapshot + 10]).replace(",bid,", ",buy,").replace(",ask,", ",buy,"),
        ),
        ("non_positive", row_line(rows[n_snapshot + 10])[: -len(rows[n_snapshot + 10][5])] + "-1"),
    ]
    lines = [
        row_line(r)
        for r in before + rows[:cross_at] + [crossing] + rows[cross_at:at] + resnap + rows[at:]
    ]
    bad_at = len(before) + n_snapshot + 100
    lines[bad_at:bad_at] = [text for _, text in bad]
    path = write(tmp_path / "inc.csv", INCREMENTAL_HEADER, lines)

    quarantine = Quarantine(tmp_path / "q.jsonl")
    flagged, stats = tardis.read("book", [path], levels=10, quarantine=quarantine, on_gap="flag")
    quarantine.close()
    written = read_quarantine(tmp_path / "q.jsonl")
    assert [(w["line"], w["kind"]) for w in written[:3]] == [
        (bad_at + 2 + i, kind) for i, (kind, _) in enumerate(bad)
    ]
    assert {w["kind"] for w in written[3:]} == {"crossed"}
    assert lines[written[3]["line"] - 2].split(",")[3] == str(
        crossing[1]
    )  # the last line of the crossing message
    assert stats["skipped_before_snapshot"] == 3 and stats["snapshots"] == 2 and stats["gaps"] == 1
    assert stats["crossed"] == len(written) - 3 > 0
    out = flagged.filter(~pl.col("in_sync"))
    assert out["local_ts"].min() == crossing[1] * 1000 and out["local_ts"].max() < local * 1000
    # before the gap and after the new snapshot the book is exactly the clean one
    expected = book_frame(clean, 10)
    assert flagged.filter(pl.col("local_ts") < crossing[1] * 1000).equals(
        expected.filter(pl.col("local_ts") < crossing[1] * 1000)
    )
    assert flagged.filter(pl.col("local_ts") > local * 1000).equals(
        expected.filter(pl.col("local_ts") > local * 1000)
    )
    resent = flagged.filter(pl.col("local_ts") == local * 1000)
    assert resent["in_sync"].to_list() == [True] and resent["bid_px_1"][0] == state[2][0][0]

    dropped, drop_stats = tardis.read("book", [path], levels=10, quarantine=Quarantine(None), on_gap="drop")
    assert (
        dropped.equals(flagged.filter(pl.col("in_sync"))) and drop_stats["rows"] == dropped.height
    )
    with pytest.raises(ValueError, match=rf"{path}:{written[3]['line']}: book crossed"):
        tardis.read("book", [path], levels=10, quarantine=Quarantine(None), on_gap="error")


def test_sniff_and_clear_errors(binance, spot, tmp_path):
    trades = write(tmp_path / "t.csv", TRADES_HEADER, trade_lines(spot["trades"][:10]))
    incremental = write(
        tmp_path / "i.csv", INCREMENTAL_HEADER, [row_line(r) for r in incremental_rows(spot)[:10]]
    )
    other = write(
        tmp_path / "o.csv",
        "exchange,symbol,timestamp,local_timestamp,funding_rate",
        ["deribit,X,1,2,0.1"],
    )
    assert tardis.sniff(trades) and tardis.sniff(incremental)
    assert not tardis.sniff(other) and not tardis.sniff(binance["spot"][0])
    with pytest.raises(ValueError, match="incremental_book_L2"):
        tardis.read("trades", [incremental], quarantine=Quarantine(None))
    with pytest.raises(ValueError, match="different Tardis data types"):
        tardis.read("book", [incremental, write(tmp_path / "s.csv", SNAPSHOT_HEADER, [])], levels=5,
                    quarantine=Quarantine(None))
    with pytest.raises(ValueError, match="on_gap"):
        tardis.read("book", [incremental], levels=5, quarantine=Quarantine(None), on_gap="ignore")


def test_symbol_and_market_from_rows_file_name_or_caller(spot, tmp_path):
    lines = trade_lines(spot["trades"][:50])
    named = write(tmp_path / "binance_trades_2024-08-08_BTCUSDT.csv.gz", TRADES_HEADER, lines)
    assert tardis.read("trades", [named], quarantine=Quarantine(None))[1] == {
        "symbol": "btcusdt",
        "market": "spot",
    }
    futures = write(
        tmp_path / "binance-futures_trades_2024-08-08_BTCUSDT.csv", TRADES_HEADER, lines
    )
    with pytest.raises(
        ValueError, match=r"market is ambiguous \(rows: spot, binance-futures_trades.*: usdm\)"
    ):
        tardis.read("trades", [futures], quarantine=Quarantine(None))  # binance rows in a binance-futures file
    with pytest.raises(ValueError, match=r"symbol is ambiguous.*--symbol: ethusdt"):
        tardis.read("trades", [named], quarantine=Quarantine(None), symbol="ETHUSDT")

    # no good row names the instrument: the file name or the caller must
    empty = write(
        tmp_path / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv",
        INCREMENTAL_HEADER,
        [],
    )
    book, stats = tardis.read("book", [empty], levels=5, quarantine=Quarantine(None))
    assert book.height == 0 and (stats["symbol"], stats["market"]) == ("btcusdt", "usdm")
    bare = write(tmp_path / "i.csv", INCREMENTAL_HEADER, [])
    with pytest.raises(
        ValueError, match="cannot tell the symbol: rows, i.csv do not name it; pass --symbol"
    ):
        tardis.read("book", [bare], levels=5, quarantine=Quarantine(None))
    stats = tardis.read("book", [bare], levels=5, quarantine=Quarantine(None), symbol="BTCUSDT", market="usdm")[1]
    assert (stats["symbol"], stats["market"]) == ("btcusdt", "usdm")
    rows = [row_line(r) for r in incremental_rows(spot)[:300]]
    snapshot = write(
        tmp_path / "binance_incremental_book_L2_2024-08-08_BTCUSDT.csv", INCREMENTAL_HEADER, rows
    )
    stats = tardis.read("book", [snapshot], levels=5, quarantine=Quarantine(None))[1]
    assert (stats["symbol"], stats["market"]) == ("btcusdt", "spot")


def test_coinm_amounts_are_contracts_read_in_base_units(tmp_path):
    """binance-delivery amounts count contracts (100 USD each for BTCUSD, 10 USD for the other pairs), as
    Binance gives them: trades and book levels come out in the base asset, like every other venue's sizes."""
    trades = write(tmp_path / "binance-delivery_trades_2024-08-08_BTCUSD_PERP.csv", TRADES_HEADER, [
        "binance-delivery,BTCUSD_PERP,1723161600000000,1723161600001000,1,buy,60000.0,3",
        "binance-delivery,BTCUSD_PERP,1723161600002000,1723161600003000,2,sell,50000.0,1",
    ])
    got, stats = tardis.read("trades", [trades], quarantine=Quarantine(None))
    assert stats == {"symbol": "btcusd_perp", "market": "coinm"}
    assert got["qty"].to_list() == pytest.approx([0.005, 0.002], rel=1e-12)
    book = write(tmp_path / "binance-delivery_incremental_book_L2_2024-08-08_ETHUSD_PERP.csv", INCREMENTAL_HEADER, [
        "binance-delivery,ETHUSD_PERP,1723161600000000,1723161600001000,true,bid,2500.0,50",
        "binance-delivery,ETHUSD_PERP,1723161600000000,1723161600001000,true,ask,2501.0,20",
    ])
    got, stats = tardis.read("book", [book], levels=1, quarantine=Quarantine(None))
    assert stats["market"] == "coinm"
    assert got["bid_qty_1"][-1] == pytest.approx(50 * 10 / 2500)
    assert got["ask_qty_1"][-1] == pytest.approx(20 * 10 / 2501)


def test_quotes_and_book_ticker_files_read_as_quotes_bad_rows_quarantined(tmp_path):
    """quotes (and book_ticker, the same columns, asks first): the best bid and ask per row; an empty side,
    a crossed quote or garbage is quarantined with its file and line, never guessed."""
    header = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount"
    path = write(tmp_path / "binance-futures_quotes_2024-08-08_BTCUSDT.csv.gz", header, [
        "binance-futures,BTCUSDT,1723161600000000,1723161600001000,2.5,60001.0,60000.0,1.5",
        "binance-futures,BTCUSDT,1723161600100000,1723161600101000,,,60000.0,1.5",  # no ask
        "binance-futures,BTCUSDT,1723161600200000,1723161600201000,1.0,59999.0,60000.0,1.0",  # crossed
        "binance-futures,BTCUSDT,1723161600300000,1723161600301000,1.0,abc,60000.0,1.0",
        "binance-futures,BTCUSDT,1723161600400000,1723161600401000,3.0,60002.0,60001.0,0.5",
    ])
    quarantine = Quarantine(tmp_path / "q.jsonl")
    got, stats = tardis.read("quotes", [path], quarantine=quarantine)
    quarantine.close()
    assert stats == {"symbol": "btcusdt", "market": "usdm"}
    assert got.rows() == [(1723161600000000000, 1723161600001000000, None, 60000.0, 1.5, 60001.0, 2.5),
                          (1723161600400000000, 1723161600401000000, None, 60001.0, 0.5, 60002.0, 3.0)]
    assert [(r["kind"], r["line"]) for r in read_quarantine(tmp_path / "q.jsonl")] == [
        ("empty_side", 3), ("crossed", 4), ("non_numeric", 5)]
    from data_loaders import formats

    frame, stats = formats.read("quotes", [path])
    assert frame.height == 2 and stats["format"] == "tardis" and stats["bad_lines"] == {
        "empty_side": 1, "crossed": 1, "non_numeric": 1}
