"""Binance public-data CSV reader, on files written in each published layout from the real recordings."""

from __future__ import annotations

import gzip
import io
import zipfile
from itertools import groupby
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from data_loaders import binance_csv
from data_loaders.quarantine import Quarantine
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA

SPOT_TRADES_HEADER = "id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch"
UM_TRADES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"
SPOT_AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"
UM_AGG_HEADER = (
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
)
BOOK_TICKER_HEADER = (
    "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"
)
SPOT = {"symbol": "BTCUSDT", "market": "spot"}  # for files whose names do not say
USDM = {"symbol": "BTCUSDT", "market": "usdm"}


def stream(path: Path, name: str, max_lines: int) -> list[dict]:
    """The `data` of one stream's messages among the first lines of a real recording."""
    out = []
    with gzip.open(path, "rb") as f:
        for i, line in enumerate(f):
            if i == max_lines:
                break
            if name.encode() in line[:80]:
                out.append(orjson.loads(line.split(b" ", 1)[1])["data"])
    return out


@pytest.fixture(scope="module")
def real(binance) -> dict[str, list[dict]]:
    return {
        "spot_trades_1": stream(binance["spot"][0], "@trade", 100_000),  # the whole first file,
        "spot_trades_2": stream(binance["spot"][1], "@trade", 12_000),
        "usdm_trades": stream(binance["usdm"][0], "@trade", 24_000),
        "usdm_quotes": stream(binance["usdm"][0], "@bookTicker", 12_000),
    }


def bool_text(value: bool, spot: bool) -> str:
    return (
        str(value) if spot else str(value).lower()
    )  # spot files write True/False, futures true/false


def trade_lines(trades: list[dict], spot: bool, scale: int) -> list[str]:
    return [
        ",".join(
            [
                str(t["t"]),
                t["p"],
                t["q"],
                f"{float(t['p']) * float(t['q']):.8f}",
                str(t["T"] * scale),
                bool_text(t["m"], spot),
            ]
            + ([bool_text(t["M"], spot)] if spot else [])
        )
        for t in trades
    ]


def aggregate(trades: list[dict]) -> list[dict]:
    """Aggregate trades as Binance does: consecutive fills at one time and price by one taker."""
    out = []
    for (time, price, maker), group in groupby(trades, key=lambda t: (t["T"], t["p"], t["m"])):
        group = list(group)
        qty = sum(float(t["q"]) for t in group)
        out.append(
            {
                "a": len(out) + 1_000_000,
                "p": price,
                "q": f"{qty:.8f}",
                "f": group[0]["t"],
                "l": group[-1]["t"],
                "T": time,
                "m": maker,
            }
        )
    return out


def agg_lines(aggs: list[dict], spot: bool, scale: int) -> list[str]:
    return [
        ",".join(
            [
                str(a["a"]),
                a["p"],
                a["q"],
                str(a["f"]),
                str(a["l"]),
                str(a["T"] * scale),
                bool_text(a["m"], spot),
            ]
            + (["True"] if spot else [])
        )
        for a in aggs
    ]


def quote_lines(quotes: list[dict], scale: int) -> list[str]:
    return [
        ",".join(
            [str(q["u"]), q["b"], q["B"], q["a"], q["A"], str(q["T"] * scale), str(q["E"] * scale)]
        )
        for q in quotes
    ]


def expected_trades(rows: list[dict], id_key: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [r["T"] * 1_000_000 for r in rows],
            "local_ts": [None] * len(rows),
            "trade_id": [r[id_key] for r in rows],
            "price": [float(r["p"]) for r in rows],
            "qty": [float(r["q"]) for r in rows],
            "side": [-1 if r["m"] else 1 for r in rows],
        },
        schema=TRADES_SCHEMA,
    )


def expected_quotes(quotes: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [q["T"] * 1_000_000 for q in quotes],
            "local_ts": [None] * len(quotes),
            "update_id": [q["u"] for q in quotes],
            "bid_px": [float(q["b"]) for q in quotes],
            "bid_qty": [float(q["B"]) for q in quotes],
            "ask_px": [float(q["a"]) for q in quotes],
            "ask_qty": [float(q["A"]) for q in quotes],
        },
        schema=QUOTES_SCHEMA,
    )


def write(path: Path, lines: list[str], header: str | None = None) -> Path:
    """A CSV as Binance publishes it: `.zip` holding one `.csv`, else plain text."""
    text = "\n".join(([header] if header else []) + lines) + "\n"
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(path.with_suffix(".csv").name, text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    "layout, header, scale, name",
    [
        ("spot trades", None, 1, "BTCUSDT-trades-2024-08-08.zip"),
        ("spot trades", None, 1000, "BTCUSDT-trades-2025-01-01.csv"),
        ("spot trades", SPOT_TRADES_HEADER, 1000, "BTCUSDT-trades-2025-01-02.zip"),
        ("usdm trades", UM_TRADES_HEADER, 1, "BTCUSDT-trades-2024-08-08.zip"),
        ("usdm trades", None, 1, "BTCUSDT-trades-2024-08-08.csv"),
        ("spot aggTrades", None, 1000, "BTCUSDT-aggTrades-2025-01-01.zip"),
        ("spot aggTrades", SPOT_AGG_HEADER, 1, "BTCUSDT-aggTrades-2024-08-08.csv"),
        ("usdm aggTrades", UM_AGG_HEADER, 1, "BTCUSDT-aggTrades-2024-08-08.zip"),
        ("usdm aggTrades", None, 1, "BTCUSDT-aggTrades-2024-08-08.csv"),
    ],
)
def test_trades_layouts_round_trip(real, tmp_path, layout, header, scale, name):
    """Written where data.binance.vision puts it, so the path names the symbol and market."""
    spot = layout.startswith("spot")
    trades = real["spot_trades_1"] if spot else real["usdm_trades"]
    if "aggTrades" in layout:
        rows, id_key = aggregate(trades), "a"
        lines = agg_lines(rows, spot, scale)
        assert len(rows) < len(trades)  # real fills do aggregate
    else:
        rows, id_key = trades, "t"
        lines = trade_lines(rows, spot, scale)
    folder = (
        tmp_path / ("spot" if spot else "futures/um") / "daily" / name.split("-")[1] / "BTCUSDT"
    )
    folder.mkdir(parents=True)
    path = write(folder / name, lines, header)
    assert binance_csv.sniff(path)
    quarantine = Quarantine(None)
    got, stats = binance_csv.read("trades", [path], quarantine=quarantine)
    assert quarantine.total == 0
    assert len(rows) > 1_000
    assert got.equals(expected_trades(rows, id_key))
    assert stats == {"symbol": "btcusdt", "market": "spot" if spot else "usdm"}


@pytest.mark.parametrize(
    "header, scale, name",
    [(BOOK_TICKER_HEADER, 1, "q.zip"), (None, 1, "q.csv"), (None, 1000, "q.zip")],
)
def test_book_ticker_round_trip(real, tmp_path, header, scale, name):
    quotes = real["usdm_quotes"]
    path = write(tmp_path / name, quote_lines(quotes, scale), header)
    assert binance_csv.sniff(path)
    quarantine = Quarantine(None)
    got, stats = binance_csv.read("quotes", [path], quarantine=quarantine, **USDM)
    assert (
        quarantine.total == 0
        and len(quotes) > 2_000
        and stats == {"symbol": "btcusdt", "market": "usdm"}
    )
    assert got.equals(expected_quotes(quotes))


def test_files_in_order_are_one_dataset_across_the_us_switch(real, tmp_path):
    """Day 1 in ms (zipped), day 2 in us (plain): one continuous trade stream, ids without a gap."""
    day1 = write(tmp_path / "d1.zip", trade_lines(real["spot_trades_1"], True, 1))
    day2 = write(tmp_path / "d2.csv", trade_lines(real["spot_trades_2"], True, 1000))
    quarantine = Quarantine(None)
    got, _ = binance_csv.read("trades", [day1, day2], quarantine=quarantine, **SPOT)
    assert quarantine.total == 0
    assert got.equals(expected_trades(real["spot_trades_1"] + real["spot_trades_2"], "t"))
    # the real recording continues at 00:00: check the two files really are consecutive
    assert (
        got["trade_id"][len(real["spot_trades_1"])]
        == got["trade_id"][len(real["spot_trades_1"]) - 1] + 1
    )


def test_files_out_of_order_are_quarantined_across_files(real, tmp_path):
    day1 = write(tmp_path / "d1.csv", trade_lines(real["spot_trades_1"], True, 1))
    day2 = write(tmp_path / "d2.csv", trade_lines(real["spot_trades_2"], True, 1))
    quarantine = Quarantine(tmp_path / "q.jsonl")
    got, _ = binance_csv.read("trades", [day2, day1], quarantine=quarantine, **SPOT)
    quarantine.close()
    assert got.equals(expected_trades(real["spot_trades_2"], "t"))
    assert dict(quarantine.counts) == {"out_of_order": len(real["spot_trades_1"])}
    first = orjson.loads((tmp_path / "q.jsonl").read_bytes().splitlines()[0])
    assert (first["file"], first["line"]) == (str(day1), 1)


def test_bad_rows_are_counted_quarantined_and_good_rows_untouched(real, tmp_path):
    trades = real["spot_trades_1"][:3000]
    lines = trade_lines(trades, True, 1000)
    good = lines[100].split(",")
    injected = {  # line number (1-based, in the final file) -> (kind, text)
        11: ("malformed", ",".join(good[:5])),
        22: ("non_numeric", ",".join([good[0], "abc", *good[2:]])),
        33: ("non_positive", ",".join([*good[:2], "-0.5", *good[3:]])),
        44: (
            "bad_timestamp",
            ",".join([*good[:4], str(trades[100]["T"]), *good[5:]]),
        ),  # ms in a us file
        55: ("non_numeric", ",".join([*good[:5], "maybe", good[6]])),
        66: ("malformed", ""),
        77: (
            "out_of_order",
            ",".join(
                [str(trades[-1]["t"] + 10), *good[1:4], str(trades[0]["T"] * 1000 - 1), *good[5:]]
            ),
        ),
        88: (
            "duplicate_id",
            lines[79],
        ),  # line 87 again (7 rows were inserted above it): same id and time
    }
    for line_no in sorted(injected):
        lines.insert(line_no - 1, injected[line_no][1])
    path = write(tmp_path / "bad.zip", lines)
    assert binance_csv.sniff(path)  # a few bad rows do not hide the format
    quarantine = Quarantine(tmp_path / "bad.quarantine.jsonl")
    got, _ = binance_csv.read("trades", [path], quarantine=quarantine, **SPOT)
    quarantine.close()
    assert got.equals(expected_trades(trades, "t"))
    kinds = [kind for kind, _ in injected.values()]
    assert dict(quarantine.counts) == {k: kinds.count(k) for k in set(kinds)}
    written = [
        orjson.loads(x) for x in (tmp_path / "bad.quarantine.jsonl").read_bytes().splitlines()
    ]
    assert [(w["line"], w["kind"], w["text"]) for w in written] == [
        (n, k, t) for n, (k, t) in sorted(injected.items())
    ]
    assert {w["file"] for w in written} == {str(path)}


def test_bad_quotes_crossed_and_negative(real, tmp_path):
    quotes = real["usdm_quotes"][:2000]
    lines = quote_lines(quotes, 1)
    q = quotes[50]
    crossed = ",".join(
        [str(q["u"]), q["a"], q["B"], q["b"], q["A"], str(q["T"]), str(q["E"])]
    )  # bid and ask swapped
    negative = ",".join(
        [str(q["u"]), q["b"], "-" + q["B"], q["a"], q["A"], str(q["T"]), str(q["E"])]
    )
    lines[60:60] = [crossed, negative]
    path = write(tmp_path / "bt.csv", lines, BOOK_TICKER_HEADER)
    quarantine = Quarantine(tmp_path / "bt.jsonl")
    got, _ = binance_csv.read("quotes", [path], quarantine=quarantine, **USDM)
    quarantine.close()
    assert got.equals(expected_quotes(quotes))
    written = [orjson.loads(x) for x in (tmp_path / "bt.jsonl").read_bytes().splitlines()]
    assert [(w["kind"], w["line"]) for w in written] == [
        ("crossed", 62),
        ("non_positive", 63),
    ]  # header is line 1


def test_header_detection_never_swallows_a_data_row(real, tmp_path):
    lines = trade_lines(real["usdm_trades"][:500], False, 1)
    broken_first = ",".join(
        ["x", *lines[0].split(",")[1:]]
    )  # a garbled first data row is not a header
    path = write(tmp_path / "t.csv", [broken_first, *lines[1:]])
    quarantine = Quarantine(None)
    got, _ = binance_csv.read("trades", [path], quarantine=quarantine, **USDM)
    assert dict(quarantine.counts) == {"non_numeric": 1}
    assert got.equals(expected_trades(real["usdm_trades"][1:500], "t"))
    plain = write(tmp_path / "p.csv", lines)  # no header: the first row is data
    assert (
        binance_csv.read("trades", [plain], quarantine=Quarantine(None), **USDM)[0]["trade_id"][0]
        == real["usdm_trades"][0]["t"]
    )


def test_wrong_kind_and_mixed_layouts_are_clear_errors(real, tmp_path):
    quotes = write(
        tmp_path / "q.csv", quote_lines(real["usdm_quotes"][:100], 1), BOOK_TICKER_HEADER
    )
    spot = write(tmp_path / "s.csv", trade_lines(real["spot_trades_1"][:100], True, 1))
    usdm = write(
        tmp_path / "u.csv", trade_lines(real["usdm_trades"][:100], False, 1), UM_TRADES_HEADER
    )
    with pytest.raises(ValueError, match="bookTicker"):
        binance_csv.read("trades", [quotes], quarantine=Quarantine(None), **USDM)
    with pytest.raises(ValueError, match="different layouts"):
        binance_csv.read("trades", [spot, usdm], quarantine=Quarantine(None), **USDM)


def test_sniff_rejects_other_files(binance, tmp_path):
    assert not binance_csv.sniff(binance["spot"][0])  # the websocket recording itself
    tardis = tmp_path / "tardis.csv"
    tardis.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nbinance,BTCUSDT,1,2,3,buy,4,5\n"
    )
    assert not binance_csv.sniff(tardis)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert not binance_csv.sniff(empty)
    assert not binance_csv.sniff(write(tmp_path / "junk.zip", ["hello world"]))


def test_gzip_member_is_read_too(real, tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(
        gzip.compress("\n".join(trade_lines(real["usdm_trades"][:300], False, 1)).encode())
    )
    assert binance_csv.read("trades", [path], quarantine=Quarantine(None), **USDM)[0].equals(
        expected_trades(real["usdm_trades"][:300], "t")
    )


def test_zip_with_several_members_is_an_error(tmp_path):
    path = tmp_path / "two.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("a.csv", "1,1,1,1,1723161255342,true\n")
        z.writestr("b.csv", "2,1,1,1,1723161255342,true\n")
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="one CSV"):
        binance_csv.read("trades", [path], quarantine=Quarantine(None), **USDM)


def test_symbol_and_market_from_the_path_or_the_caller_else_a_clear_error(real, tmp_path):
    lines = trade_lines(real["usdm_trades"][:200], False, 1)
    um = tmp_path / "data" / "futures" / "um" / "daily" / "trades" / "ETHUSDT"
    um.mkdir(parents=True)
    named = write(um / "ETHUSDT-trades-2024-08-08.zip", lines, UM_TRADES_HEADER)
    assert binance_csv.read("trades", [named], quarantine=Quarantine(None))[1] == {
        "symbol": "ethusdt",
        "market": "usdm",
    }
    assert (
        binance_csv.read("trades", [named], quarantine=Quarantine(None), symbol="ethusdt",
                         market="USDM")[1]["market"] == "usdm"
    )
    with pytest.raises(
        ValueError,
        match=r"symbol is ambiguous.*ETHUSDT-trades-2024-08-08.zip: ethusdt.*--symbol: btcusdt",
    ):
        binance_csv.read("trades", [named], quarantine=Quarantine(None), symbol="BTCUSDT")

    plain = write(tmp_path / "t.csv", lines)  # the name says nothing: the caller must
    with pytest.raises(
        ValueError, match="cannot tell the symbol: t.csv do not name it; pass --symbol"
    ):
        binance_csv.read("trades", [plain], quarantine=Quarantine(None), market="usdm")
    with pytest.raises(ValueError, match="cannot tell the market.*pass --venue"):
        binance_csv.read("trades", [plain], quarantine=Quarantine(None), symbol="BTCUSDT")
    assert binance_csv.read("trades", [plain], quarantine=Quarantine(None), **USDM)[1] == {
        "symbol": "btcusdt",
        "market": "usdm",
    }
    named_only = write(
        tmp_path / "BTCUSDT-trades-2024-08-08.csv", lines
    )  # the name gives the symbol only
    assert (
        binance_csv.read("trades", [named_only], quarantine=Quarantine(None), market="usdm")[1]["symbol"]
        == "btcusdt"
    )

    spot_dir = tmp_path / "spot"
    spot_dir.mkdir()
    wrong = write(spot_dir / "BTCUSDT-trades-2024-08-08.csv", lines)  # USD-M rows under spot/
    with pytest.raises(ValueError, match="usdm trades layout cannot be the spot market"):
        binance_csv.read("trades", [wrong], quarantine=Quarantine(None))
    other = write(um / "BTCUSDT-trades-2024-08-09.csv", lines)
    with pytest.raises(ValueError, match="symbol is ambiguous"):  # files of two instruments
        binance_csv.read("trades", [named, other], quarantine=Quarantine(None))


def test_cli_writes_symbol_and_market_as_the_recordings_path_does(real, binance, tmp_path):
    """`ticks trades/quotes` put the symbol and market in the Parquet metadata, as for a recording."""
    from typer.testing import CliRunner

    from data_loaders.cli import app

    def metadata(path: Path) -> dict[str, str]:
        kv = pq.read_metadata(path).metadata
        return {k.decode(): v.decode() for k, v in kv.items() if k in (b"symbol", b"market")}

    runner = CliRunner()
    recording = tmp_path / "recording.parquet"
    assert (
        runner.invoke(app, ["trades", str(binance["usdm"][0]), "--out", str(recording)]).exit_code
        == 0
    )
    plain = write(tmp_path / "t.csv", trade_lines(real["usdm_trades"][:100], False, 1))
    out = tmp_path / "csv.parquet"
    args = ["trades", str(plain), "--out", str(out)]
    result = runner.invoke(app, [*args, "--symbol", "BTCUSDT", "--venue", "usdm"])
    assert result.exit_code == 0, result.output
    assert metadata(out) == metadata(recording) == {"symbol": "btcusdt", "market": "usdm"}
    result = runner.invoke(app, args)
    assert (
        result.exit_code == 3
        and "cannot tell the symbol: t.csv do not name it; pass --symbol" in result.output
    )
    result = runner.invoke(
        app, ["quotes", str(binance["usdm"][0]), "--venue", "spot", "--out", str(out)]
    )
    assert (
        result.exit_code == 3
        and "market is ambiguous (the recording: usdm, --venue: spot)" in result.output
    )


def test_coinm_files_count_contracts_and_are_read_in_base_units(tmp_path):
    """data.binance.vision futures/cm files: quantities are contracts (100 USD each for BTCUSD, 10 USD for
    the other pairs), turned into the base asset like every other market's sizes."""
    folder = tmp_path / "data/futures/cm/daily/trades/BTCUSD_PERP"
    folder.mkdir(parents=True)
    path = folder / "BTCUSD_PERP-trades-2024-08-08.csv"
    path.write_text("id,price,qty,base_qty,time,is_buyer_maker\n"
                    "1,60000.0,3,0.005,1723161600000,true\n2,50000.0,1,0.002,1723161600001,false\n")
    got, stats = binance_csv.read("trades", [path], quarantine=Quarantine(None))
    assert stats == {"symbol": "btcusd_perp", "market": "coinm"}
    assert got["qty"].to_list() == [0.005, 0.002] and got["side"].to_list() == [-1, 1]
    eth = tmp_path / "data/futures/cm/daily/aggTrades/ETHUSD_PERP/ETHUSD_PERP-aggTrades-2024-08-08.csv"
    eth.parent.mkdir(parents=True)
    eth.write_text(UM_AGG_HEADER + "\n7,2500.0,5,10,12,1723161600000,false\n")
    assert binance_csv.read("trades", [eth], quarantine=Quarantine(None))[0]["qty"].to_list() == [5 * 10 / 2500]
