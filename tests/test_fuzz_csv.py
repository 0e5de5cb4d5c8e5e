"""Property-based fuzzing of the CSV readers: Binance public data (trades, aggTrades, bookTicker, with
and without a header) and Tardis.dev (trades, book_snapshot_N, incremental_book_L2).

Valid rows are mutated (fields dropped or added, bad numbers, NaN/inf/1e400, zero and negative
prices and sizes, bad booleans and sides, times in other units or garbage, blank lines, CRLF,
non-UTF-8 bytes, repeated and reordered rows) and read through data_loaders.formats, as the CLI
does. Properties: the reader returns or raises a ValueError naming the file; every data line is a
row out, a quarantined line (with its reason and file:line, quoting that line) or counted as
skipped; rows out follow the contract (positive finite prices and sizes, plausible times).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from data_loaders import formats
from data_loaders.csv_lines import MAX_NS, MIN_NS, read_lines
from data_loaders.quarantine import Quarantine

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
T0_MS = 1_723_161_255_000

# Bad field values, each one bad-input case (shared by every numeric CSV field).
BAD_NUMBERS = ["", "NaN", "nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "-1", "0", "-0", "0.0", "abc",
               "1.2.3", "1e-400", "99999999999999999999999", "9223372036854775808", " 1", "1_000", "0x10", '"1"']
BAD_BOOLS = ["", "yes", "1", "TRUE ", "null", "t"]
BAD_TIMES = ["", "0", "-1", "1723161255", "1723161255000000000000", "17231612550", "abc", "1.5e12", "4102444800001"]
BAD_SIDES = ["", "BUY", "b", "0", "bid"]
RAW_LINES = [b"", b" ", b",", b",,,,,,,", b"\r", b"\xff\xfe", b"a,\xc3\x28,b", b"\x00", b'"', b"#comment"]


@st.composite
def mutate_row(draw, fields: list[str], kinds: str) -> bytes:
    """One CSV line from `fields` (kinds: one letter per field: i int, f decimal, b bool, t time, s side, x text),
    valid or mutated in one way."""
    fields = list(fields)
    mutation = draw(st.sampled_from(["none"] * 4 + ["number", "bool", "time", "side", "drop", "add", "raw",
                                                    "non_utf8", "crlf"]))
    def pick(kind_letters: str) -> int | None:
        places = [i for i, k in enumerate(kinds) if k in kind_letters]
        return draw(st.sampled_from(places)) if places else None
    if mutation == "number" and (i := pick("if")) is not None:
        fields[i] = draw(st.sampled_from(BAD_NUMBERS))
    elif mutation == "bool" and (i := pick("b")) is not None:
        fields[i] = draw(st.sampled_from(BAD_BOOLS))
    elif mutation == "time" and (i := pick("t")) is not None:
        fields[i] = draw(st.sampled_from(BAD_TIMES))
    elif mutation == "side" and (i := pick("s")) is not None:
        fields[i] = draw(st.sampled_from(BAD_SIDES))
    elif mutation == "drop":
        del fields[draw(st.integers(0, len(fields) - 1))]
    elif mutation == "add":
        fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(["", "1", "x"])))
    text = ",".join(fields).encode()
    if mutation == "raw":
        text = draw(st.sampled_from(RAW_LINES))
    elif mutation == "non_utf8":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82"])) + text[at:]
    elif mutation == "crlf":
        text += b"\r"
    return text


def _px(draw) -> str:
    return f"{draw(st.integers(6_000_000, 6_002_000)) / 100:.2f}"


def _qty(draw) -> str:
    return f"{draw(st.integers(1, 5_000)) / 1000:.3f}"


BINANCE = {  # layout -> (header, row kinds, market)
    "spot trades": ("id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch", "ifffibb", "spot"),
    "usdm trades": ("id,price,qty,quote_qty,time,is_buyer_maker", "ifffib", "usdm"),
    "spot aggTrades": ("aggId,price,qty,firstId,lastId,time,isBuyerMaker,isBestMatch", "iffiiibb", "spot"),
    "usdm aggTrades": ("agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker",
                       "iffiiib", "usdm"),
    "bookTicker": ("update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time",
                   "iffffii", "usdm"),
}


@st.composite
def binance_file(draw, layout: str, first_id: int) -> bytes:
    header, kinds, _ = BINANCE[layout]
    unit = draw(st.sampled_from([1, 1000]))  # ms, or us (spot since 2025)
    lines = [header.encode()] if draw(st.booleans()) else []
    for n in range(draw(st.integers(0, 20))):
        i, t = first_id + n, (T0_MS + n) * unit
        if layout == "bookTicker":
            fields = [str(i), "59999.99", _qty(draw), "60000.01", _qty(draw), str(t), str(t)]
            row_kinds = "iffffti"
        else:
            fields = [str(i), _px(draw), _qty(draw)]
            fields += ["1.0"] if "aggTrades" not in layout else [str(10 * i), str(10 * i + 1)]
            fields += [str(t), draw(st.sampled_from(["true", "false", "True"]))]
            fields += ["true"] if layout.startswith("spot") else []
            at = 5 if "aggTrades" in layout else 4  # the time field
            row_kinds = kinds[:at] + "t" + kinds[at + 1:]
        lines.append(draw(mutate_row(fields, row_kinds)))
    return _shuffled(draw, lines, 1 if lines and lines[0] == header.encode() else 0)


def _shuffled(draw, lines: list[bytes], keep: int) -> bytes:
    """Lines joined into a file, maybe with two data lines swapped and one repeated."""
    if len(lines) > keep + 1 and draw(st.booleans()):
        a, b = draw(st.integers(keep, len(lines) - 1)), draw(st.integers(keep, len(lines) - 1))
        lines[a], lines[b] = lines[b], lines[a]
        lines.append(lines[a])
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n", b"\n\n"]))


TARDIS_COMMON = "exchange,symbol,timestamp,local_timestamp"


@st.composite
def tardis_file(draw, kind: str, depth: int, start: int) -> bytes:
    if kind == "trades":
        header = TARDIS_COMMON + ",id,side,price,amount"
    elif kind == "incremental_book_L2":
        header = TARDIS_COMMON + ",is_snapshot,side,price,amount"
    else:
        header = TARDIS_COMMON + "," + ",".join(
            f"{s}[{i}].{f}" for i in range(depth) for s in ("asks", "bids") for f in ("price", "amount"))
    lines = [header.encode()]
    for n in range(draw(st.integers(0, 20))):
        t = str((T0_MS + start + n) * 1000)
        common = ["binance-futures", "BTCUSDT", t, t]
        if kind == "trades":
            fields = [*common, str(start + n), draw(st.sampled_from(["buy", "sell", "unknown"])), _px(draw), _qty(draw)]
            kinds = "xxttisff"
        elif kind == "incremental_book_L2":
            snapshot = n < 2 and start == 0
            side = draw(st.sampled_from(["bid", "ask"]))
            px = f"{(59_990 if side == 'bid' else 60_010) + draw(st.integers(-5, 5))}.0"
            qty = draw(st.sampled_from(["0", _qty(draw)])) if not snapshot else _qty(draw)
            fields = [*common, "true" if snapshot else "false", side, px, qty]
            kinds = "xxttbxff"
        else:
            levels = []
            for i in range(depth):
                levels += [f"{60_001 + i}.0", _qty(draw), f"{59_999 - i}.0", _qty(draw)]
            if depth > 1 and draw(st.booleans()):  # a thinner book: the deepest level empty
                levels[-4:] = ["", "", "", ""]
            fields = [*common, *levels]
            kinds = "xxtt" + "f" * (4 * depth)
        lines.append(draw(mutate_row(fields, kinds)))
    return _shuffled(draw, lines, 1)


def _write(tmp: str, bodies: list[bytes], names: list[str]) -> list[Path]:
    files = []
    for body, name in zip(bodies, names):
        path = Path(tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        files.append(path)
    return files


def _data_lines(body: bytes) -> int:
    """Lines of a file as read_lines numbers them."""
    return read_lines(body).height


def _event(text: str) -> None:
    """Count an outcome in Hypothesis' statistics (--hypothesis-show-statistics); no-op in plain tests."""
    if currently_in_test_context():
        event(text)


def check_read(files: list[Path], bodies: list[bytes], what: str, header: list[bool], **kw) -> None:
    """Read `files` as `what` and check the properties (see the module docstring)."""
    qpath = files[0].parent / "q.jsonl"
    try:
        with Quarantine(qpath) as quarantine:
            frame, stats = formats.read(what, files, quarantine=quarantine, **kw)
    except ValueError as exc:  # FormatError is a ValueError
        assert any(f.name in str(exc) for f in files) or "ambiguous" in str(exc), f"error names no file: {exc}"
        _event(f"{what}: error {str(exc).split(':')[-1][:40]}")
        return
    records = [orjson.loads(x) for x in qpath.read_bytes().splitlines()] if qpath.exists() else []
    # rows so mangled that most fit a layout of another width: the header is then read (and
    # quarantined) as a row of that layout, accounted for like any other line
    header = [h and not any(r["line"] == 1 and Path(r["file"]) == f for r in records)
              for h, f in zip(header, files)]
    _event(f"{what}: {'rows' if frame.height else 'no rows'}, {'some' if records else 'none'} quarantined")
    for r in records:
        f = files.index(Path(r["file"]))
        lines = bodies[f].split(b"\n")
        assert r["kind"] and 1 + header[f] <= r["line"] <= len(lines), r
        # the line as written (a CR of a CRLF line among LF lines is kept; blank lines quote as "")
        assert r["text"].rstrip("\r") == lines[r["line"] - 1].rstrip(b"\r").decode("utf-8", errors="replace")
    keys = [(r["file"], r["line"]) for r in records]
    assert len(keys) == len(set(keys)), "a line quarantined twice"
    assert stats["bad_lines"] == dict(pl.Series([r["kind"] for r in records], dtype=pl.String).value_counts()
                                      .iter_rows())
    lines_in = sum(_data_lines(b) - h for b, h in zip(bodies, header))
    if what == "book" and "skipped_before_snapshot" in stats and "updates_applied" in stats:
        quarantined = sum(1 for r in records if r["kind"] != "crossed")
        assert stats["updates_applied"] + stats["skipped_before_snapshot"] + quarantined == lines_in, (stats, records)
    else:
        assert frame.height + len(records) == lines_in, (stats, records)
    for c in frame.columns:
        column = frame[c].drop_nulls()
        if c.startswith(("price", "qty", "bid_", "ask_")):
            assert column.is_finite().all() and (column > 0).all(), (c, column)
        elif c in ("ts", "local_ts"):
            assert column.is_between(MIN_NS, MAX_NS).all(), (c, column)


@st.composite
def binance_case(draw) -> tuple[str, list[bytes], bool]:
    layout = draw(st.sampled_from(sorted(BINANCE)))
    bodies = [draw(binance_file(layout, 1000 * k)) for k in range(draw(st.integers(1, 2)))]
    return layout, bodies, draw(st.booleans())


@FUZZ
@given(binance_case())
def test_fuzz_binance_csv(case: tuple[str, list[bytes], bool]) -> None:
    layout, bodies, named = case
    header_text, _, market = BINANCE[layout]
    kind = layout.split()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        # the data.binance.vision layout names symbol and market, else the caller does
        names = [f"{'spot' if market == 'spot' else 'futures/um'}/BTCUSDT-{kind}-2024-08-0{k + 1}.csv"
                 if named else f"f{k}.csv" for k in range(len(bodies))]
        files = _write(tmp, bodies, names)
        header = [b.split(b"\n", 1)[0] == header_text.encode() for b in bodies]
        kw = {} if named else {"symbol": "btcusdt", "market": market}
        check_read(files, bodies, "quotes" if layout == "bookTicker" else "trades", header, fmt="binance-csv", **kw)


@st.composite
def tardis_case(draw) -> tuple[str, int, list[bytes]]:
    kind = draw(st.sampled_from(["trades", "incremental_book_L2", "book_snapshot"]))
    depth = draw(st.integers(1, 3)) if kind == "book_snapshot" else 0
    bodies = [draw(tardis_file(kind, depth, 100 * k)) for k in range(draw(st.integers(1, 2)))]
    return kind, depth, bodies


@FUZZ
@given(tardis_case(), st.sampled_from(["flag", "drop"]))
def test_fuzz_tardis_csv(case: tuple[str, int, list[bytes]], on_gap: str) -> None:
    kind, _, bodies = case
    with tempfile.TemporaryDirectory() as tmp:
        names = [f"binance-futures_{kind}_2024-08-0{k + 1}_BTCUSDT.csv" for k in range(len(bodies))]
        files = _write(tmp, bodies, names)
        if kind == "trades":
            check_read(files, bodies, "trades", [True] * len(files), fmt="tardis")
        else:
            check_read(files, bodies, "book", [True] * len(files), fmt="tardis", levels=2, on_gap=on_gap)


@pytest.mark.parametrize("body", [b"1,60000.0,1.0,1.0,1723161255000,true,true\n"])
def test_binance_example_reads_clean(tmp_path: Path, body: bytes) -> None:
    """The generator's unmutated rows read without quarantine (the fuzz starts from valid input)."""
    path = tmp_path / "spot" / "BTCUSDT-trades-2024-08-09.csv"
    path.parent.mkdir()
    path.write_bytes(body)
    check_read([path], [body], "trades", [False], fmt="binance-csv")


# --- regressions: the inputs the fuzzing found, each as a plain test -------------------------------
def _quarantine_of(files: list[Path], what: str, **kw) -> tuple[pl.DataFrame, dict, list[tuple[str, int]]]:
    qpath = files[0].parent / "q.jsonl"
    with Quarantine(qpath) as quarantine:
        frame, stats = formats.read(what, files, quarantine=quarantine, **kw)
    records = [orjson.loads(x) for x in qpath.read_bytes().splitlines()] if qpath.exists() else []
    return frame, stats, [(r["kind"], r["line"]) for r in records]


def test_non_utf8_byte_is_a_quarantined_line(tmp_path: Path) -> None:
    """A byte that is not UTF-8 failed the whole file with polars' 'invalid utf-8 sequence' (no file
    named, not a ValueError: a traceback); now only that line is quarantined."""
    path = tmp_path / "f.csv"
    body = (b"0,59999.99,0.001,60000.01,0.001,1723161255000,1723161255000\n"
            b"\xff1,59999.99,0.001,60000.01,0.001,1723161255001,1723161255001\n")
    path.write_bytes(body)
    frame, _, records = _quarantine_of([path], "quotes", fmt="binance-csv", symbol="btcusdt", market="usdm")
    assert frame.height == 1
    assert records == [("non_numeric", 2)]
    check_read([path], [body], "quotes", [False], fmt="binance-csv", symbol="btcusdt", market="usdm")


TARDIS_SNAPSHOT_1 = (b"exchange,symbol,timestamp,local_timestamp,"
                     b"asks[0].price,asks[0].amount,bids[0].price,bids[0].amount\n")
SNAPSHOT_1_ROW = b"binance-futures,BTCUSDT,1723161255000000,1723161255000000,60001.0,1,59999.0,2\n"


@pytest.mark.parametrize("rows", [b"", SNAPSHOT_1_ROW])
def test_tardis_book_snapshot_1_reads(tmp_path: Path, rows: bytes) -> None:
    """A book_snapshot_1 file raised polars' 'cannot return empty fold' (its level-order check had no
    pairs of levels); now it reads."""
    path = tmp_path / "binance-futures_book_snapshot_1_2024-08-09_BTCUSDT.csv"
    path.write_bytes(TARDIS_SNAPSHOT_1 + rows)
    frame, _, records = _quarantine_of([path], "book", fmt="tardis", levels=2)
    assert frame.height == (1 if rows else 0) and records == []
    if rows:
        assert frame.row(0, named=True)["bid_px_1"] == 59999.0 and frame.row(0, named=True)["bid_px_2"] is None


def test_tardis_row_of_another_instrument_names_file_and_line(tmp_path: Path) -> None:
    """A row whose exchange is garbled failed with 'files hold several instruments', naming no file
    or line; now the error names both rows' file:line."""
    path = tmp_path / "binance-futures_trades_2024-08-09_BTCUSDT.csv"
    path.write_bytes(b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                     b"binance-futures,BTCUSDT,1723161255000000,1723161255000000,0,buy,60000.00,0.001\n"
                     b"\xffbinance-futures,BTCUSDT,1723161255001000,1723161255001000,1,buy,60000.00,0.001\n")
    with pytest.raises(ValueError, match=f"several instruments.*{path}:2 names.*{path}:3 names"):
        formats.read("trades", [path], fmt="tardis")


def test_tardis_incremental_counts_every_row(tmp_path: Path) -> None:
    """An update before any snapshot is skipped, and the stats now say how many rows were applied, so
    rows = updates_applied + skipped_before_snapshot + quarantined."""
    path = tmp_path / "binance-futures_incremental_book_L2_2024-08-09_BTCUSDT.csv"
    body = (b"exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
            b"binance-futures,BTCUSDT,1723161255100000,1723161255100000,false,bid,59990.0,0\n"
            b"binance-futures,BTCUSDT,1723161255200000,1723161255200000,true,bid,59990.0,1\n"
            b"binance-futures,BTCUSDT,1723161255200000,1723161255200000,true,ask,60010.0,x\n")
    path.write_bytes(body)
    _, stats, records = _quarantine_of([path], "book", fmt="tardis", levels=2)
    assert (stats["updates_applied"], stats["skipped_before_snapshot"], stats["quarantined"]) == (1, 1, 1)
    assert records == [("non_numeric", 4)]
