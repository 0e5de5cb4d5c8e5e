"""Binance recordings: parsing, book sync against bookTicker, and every kind of bad input.

Bad input is injected into copies of the real spot recording (written to tmp_path)."""

import gzip
import re

import numpy as np
import orjson
import polars as pl
import pytest

from data_loaders import binance_ws as bw
from data_loaders.quarantine import Quarantine
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA, book_schema, level_columns


@pytest.fixture(scope="module")
def spot_lines(binance) -> list[bytes]:
    """Lines of the first spot file (line 8 is its REST snapshot)."""
    return gzip.decompress(binance["spot"][0].read_bytes()).split(b"\n")[:-1]


@pytest.fixture(scope="module")
def clean(spot_lines, tmp_path_factory):
    """Trades, quotes, book and stats of an unmodified copy."""
    return _read(tmp_path_factory.mktemp("clean"), spot_lines)


def _read(tmp_path, lines, on_gap="flag"):
    path = tmp_path / "rec.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    quarantine = Quarantine(tmp_path / "q.jsonl")
    parsed = bw.parse_recording([path], quarantine)
    trades, _ = bw.trades_frame(parsed, quarantine)
    quotes, _ = bw.quotes_frame(parsed, quarantine)
    book, stats = bw.book_frame_from(parsed, quarantine, on_gap=on_gap)
    quarantine.close()
    records = (
        [orjson.loads(x) for x in quarantine.path.read_bytes().splitlines()]
        if quarantine.total
        else []
    )
    return {
        "trades": trades,
        "quotes": quotes,
        "book": book,
        "stats": stats,
        "records": records,
        "path": path,
    }


def _line_of(lines, needle: bytes, after: int = 10) -> int:
    """0-based index of the first line after `after` containing needle."""
    return next(i for i in range(after, len(lines)) if needle in lines[i])


def test_parsed_values_equal_orjson_on_real_files(binance):
    for files in (binance["spot"][1:], binance["usdm"]):
        parsed = bw.parse_recording(files, Quarantine(None))
        trades, _ = bw.trades_frame(parsed, Quarantine(None))
        quotes, _ = bw.quotes_frame(parsed, Quarantine(None))
        ref_t, ref_q = [], []
        for line in gzip.decompress(files[0].read_bytes()).splitlines():
            local, _, body = line.partition(b" ")
            msg = orjson.loads(body)
            d = msg.get("data", {})
            if msg.get("stream", "").endswith("@trade"):
                ref_t.append(
                    (
                        d["T"] * 1_000_000,
                        int(local),
                        d["t"],
                        float(d["p"]),
                        float(d["q"]),
                        -1 if d["m"] else 1,
                    )
                )
            elif msg.get("stream", "").endswith("@bookTicker"):
                ts = d["T"] * 1_000_000 if "T" in d else None
                ref_q.append(
                    (
                        ts,
                        int(local),
                        d["u"],
                        float(d["b"]),
                        float(d["B"]),
                        float(d["a"]),
                        float(d["A"]),
                    )
                )
        assert trades.rows() == ref_t
        assert quotes.rows() == ref_q
        assert trades.schema == pl.Schema(TRADES_SCHEMA) and quotes.schema == pl.Schema(
            QUOTES_SCHEMA
        )


@pytest.mark.parametrize("name", ["spot", "usdm"])
def test_rebuilt_book_agrees_with_bookticker(binance, name):
    quarantine = Quarantine(None)
    parsed = bw.parse_recording(binance[name], quarantine)
    book, stats = bw.book_frame_from(parsed, quarantine, levels=10)
    quotes, _ = bw.quotes_frame(parsed, quarantine)
    agree, compared = bw.bookticker_agreement(book, quotes)
    assert compared >= 0.99 * book.height > 6000
    assert agree / compared >= 0.999, (agree, compared)
    assert stats["ticker_agreement"] == round(agree / compared, 6)
    assert stats["market"] == name and stats["gaps"] == 0 and stats["crossed_rows"] == 0
    assert stats["snapshots"] == 1 and stats["never_synced"] == 0 and stats["stale_dropped"] > 0
    assert quarantine.total == 0 and book["in_sync"].all()
    assert book.schema == pl.Schema(book_schema(10))
    assert book["local_ts"].is_sorted() and book["update_id"].is_sorted()
    assert (book["bid_px_1"] < book["ask_px_1"]).all()
    assert (
        book.select(pl.all().null_count()).row(0) == (0,) * book.width
    )  # deep books: all 10 levels


def test_spot_files_are_one_recording(binance):
    whole, _ = bw.read("book", binance["spot"], quarantine=Quarantine(None))
    second, stats2 = bw.read("book", binance["spot"][1:], quarantine=Quarantine(None))
    assert (
        second.height == 0 and stats2["never_synced"] == stats2["diffs"] > 3000
    )  # no snapshot of its own
    start = int(bw.parse_recording(binance["spot"][1:], Quarantine(None)).local_ts.min())
    later = whole.filter(pl.col("local_ts") >= start)
    assert later.height == stats2["diffs"] and later["in_sync"].all()


def test_microsecond_timestamps_are_detected(tmp_path, spot_lines, clean):
    lines = [
        (b"%d" % (int(ts) // 1000)) + b" " + body
        for ts, _, body in (x.partition(b" ") for x in spot_lines)
    ]
    got = _read(tmp_path, lines)
    assert got["stats"]["ts_unit"] == "us" and clean["stats"]["ts_unit"] == "ns"
    assert got["quotes"]["local_ts"].to_list() == [
        t // 1000 * 1000 for t in clean["quotes"]["local_ts"]
    ]


def _assert_quarantined(got, kind, path, line_no, text):
    assert got["stats"]["bad_lines"] == {kind: 1}
    (record,) = got["records"]
    assert record == {"kind": kind, "file": str(path), "line": line_no, "text": text.decode()}


@pytest.mark.parametrize(
    "kind,make",
    [
        ("malformed_line", lambda line: b"not a timestamp " + line),
        ("invalid_json", lambda line: line[: len(line) // 2]),  # truncated
        ("invalid_json", lambda line: line.replace(b'"data":', b'"data"')),
        (
            "non_numeric_field",
            lambda line: line.replace(b'"b":"61837.63000000"', b'"b":"61837.6x"'),
        ),
        ("non_numeric_field", lambda line: line.replace(b'"u":', b'"u":"x",  "v":')),
        ("non_numeric_field", lambda line: line.replace(b'"b":"61837.63000000"', b'"b":"1e400"')),  # inf
        ("non_numeric_field", lambda line: re.sub(rb'"A":"[^"]*"', b'"A":"2E+999"', line)),
        ("negative_size", lambda line: line.replace(b'"B":"', b'"B":"-')),
        ("missing_field", lambda line: line.replace(b'"A":', b'"Z":')),
        (
            "crossed_book",
            lambda line: line.replace(b'"b":"61837.63000000"', b'"b":"71837.63000000"'),
        ),
    ],
)
def test_bad_quote_line_is_quarantined_and_nothing_else_changes(
    tmp_path, spot_lines, clean, kind, make
):
    lines = list(spot_lines)
    i = _line_of(lines, b'"b":"61837.63000000"', after=20)
    assert b"@bookTicker" in lines[i]
    lines[i] = make(lines[i])
    got = _read(tmp_path, lines)
    _assert_quarantined(got, kind, got["path"], i + 1, lines[i])
    u = orjson.loads(spot_lines[i].partition(b" ")[2])["data"]["u"]
    assert got["quotes"].equals(clean["quotes"].filter(pl.col("update_id") != u))
    assert got["trades"].equals(clean["trades"]) and got["book"].equals(clean["book"])


def test_bad_trade_and_unknown_stream(tmp_path, spot_lines, clean):
    lines = list(spot_lines)
    i = _line_of(lines, b"@trade")
    bad = lines[i].replace(b'"m":true', b'"m":"yes"').replace(b'"m":false', b'"m":"yes"')
    lines[i] = bad
    kline = (
        lines[i + 1].partition(b" ")[0] + b' {"stream":"btcusdt@kline_1m","data":{"k":{"o":"1"}}}'
    )
    lines.insert(i + 1, kline)
    got = _read(tmp_path, lines)
    _assert_quarantined(got, "non_numeric_field", got["path"], i + 1, bad)
    assert got["stats"]["skipped_streams"] == {"btcusdt@kline_1m": 1}
    tid = orjson.loads(spot_lines[i].partition(b" ")[2])["data"]["t"]
    assert got["trades"].equals(clean["trades"].filter(pl.col("trade_id") != tid))
    assert got["book"].equals(clean["book"])


def test_duplicate_diff_is_quarantined_not_applied(tmp_path, spot_lines, clean):
    lines = list(spot_lines)
    i = _line_of(lines, b"@depth")
    lines.insert(i + 1, lines[i])
    got = _read(tmp_path, lines)
    _assert_quarantined(got, "duplicate_or_out_of_order_id", got["path"], i + 2, lines[i])
    assert got["book"].equals(clean["book"]) and got["stats"]["gaps"] == 0


def test_swapped_diffs_make_a_gap_and_a_stale_diff(tmp_path, spot_lines, clean):
    lines = list(spot_lines)
    i = _line_of(lines, b"@depth")
    j = _line_of(lines, b"@depth", after=i + 1)
    lines[i], lines[j] = lines[j], lines[i]
    got = _read(tmp_path, lines)
    assert got["stats"]["gaps"] == 1 and got["stats"]["bad_lines"] == {
        "duplicate_or_out_of_order_id": 1
    }
    assert got["records"][0]["line"] == j + 1  # the earlier diff, received late
    in_sync = got["book"]["in_sync"]
    assert 0 < in_sync.sum() == in_sync.arg_min() < 5  # no later snapshot: out of sync to the end


def test_gap_flags_drops_or_fails(tmp_path, spot_lines, clean):
    lines = list(spot_lines)
    i = _line_of(lines, b"@depth", after=5000)
    del lines[i]
    got = _read(tmp_path, lines)
    book = got["book"]
    assert got["stats"]["gaps"] == 1 and got["stats"]["bad_lines"] == {}
    in_sync = book["in_sync"].to_numpy()
    first_bad = int(np.argmin(in_sync))
    assert in_sync[:first_bad].all() and not in_sync[first_bad:].any()
    assert book.head(first_bad).equals(clean["book"].head(first_bad))
    assert got["stats"]["out_of_sync_rows"] == book.height - first_bad
    dropped = _read(tmp_path, lines, on_gap="drop")["book"]
    assert dropped.equals(book.head(first_bad))
    at = _line_of(lines, b"@depth", after=i)  # the gap shows at the next diff
    with pytest.raises(bw.GapError, match=f"rec.txt:{at + 1} "):
        _read(tmp_path, lines, on_gap="error")


def test_crossed_book_is_counted_and_flagged(tmp_path, spot_lines, clean):
    lines = list(spot_lines)
    i = _line_of(lines, b"@depth")
    lines[i] = lines[i].replace(b'"b":[', b'"b":[["99999.00000000","1.00000000"],', 1)
    got = _read(tmp_path, lines)
    _assert_quarantined(got, "crossed_book", got["path"], i + 1, lines[i])
    book = got["book"]
    crossed = book["bid_px_1"] >= book["ask_px_1"]
    assert got["stats"]["crossed_rows"] == crossed.sum() > 0
    assert not book.filter(crossed)["in_sync"].any()
    assert book.height == clean["book"].height


def test_futures_gap_uses_pu(tmp_path, binance):
    lines = gzip.decompress(binance["usdm"][0].read_bytes()).split(b"\n")[:-1][:20000]
    i = _line_of(lines, b"@depth", after=3000)
    del lines[i]
    got = _read(tmp_path, lines)
    assert got["stats"]["market"] == "usdm" and got["stats"]["gaps"] == 1


def test_truncated_gzip_is_a_clear_error(tmp_path, binance):
    data = binance["spot"][0].read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.gz: corrupt or truncated gzip"):
        bw.parse_recording([cut], Quarantine(None))
    twice = tmp_path / "twice.gz"  # two gzip members are one stream
    twice.write_bytes(data + data)
    assert bw.parse_recording([twice], Quarantine(None)).messages == 2 * 41_249


def test_files_are_read_back_to_back(tmp_path, binance):
    """Gzip members (a trailer gives only its own member's size, so the buffer must grow), zero
    padding after a member, and a plain file: the bytes read are the files' text back to back."""
    data = binance["spot"][0].read_bytes()
    text = gzip.decompress(data)
    members = tmp_path / "members.gz"
    members.write_bytes(data + b"\0" * 7 + gzip.compress(text[:1000]) + b"\0")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text[-999:])
    buf, ends = bw._read_files([members, plain])
    assert buf.tobytes() == text + text[:1000] + text[-999:]
    assert ends.tolist() == [len(text) + 1000, len(text) + 1999]


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    book, stats = bw.read("book", [empty], quarantine=Quarantine(None))
    assert book.height == 0 and stats["messages"] == 0 and stats["diffs"] == 0
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"hello world\n\n")
    quarantine = Quarantine(None)
    trades, stats = bw.read("trades", [junk], quarantine=quarantine)
    assert trades.height == 0 and dict(quarantine.counts) == {"malformed_line": 2}


@pytest.mark.parametrize("field", [b"p", b"q"])
def test_trade_price_or_size_beyond_float_range_is_quarantined(tmp_path, spot_lines, clean, field):
    lines = list(spot_lines)
    i = _line_of(lines, b"@trade")
    lines[i] = re.sub(b'"' + field + b'":"[^"]*"', b'"' + field + b'":"1e400"', lines[i])
    got = _read(tmp_path, lines)
    _assert_quarantined(got, "non_numeric_field", got["path"], i + 1, lines[i])
    tid = orjson.loads(spot_lines[i].partition(b" ")[2])["data"]["t"]
    assert got["trades"].equals(clean["trades"].filter(pl.col("trade_id") != tid))
    assert got["trades"]["price"].is_finite().all() and got["trades"]["qty"].is_finite().all()


def _reference_rows(lines: list[bytes], levels: int) -> list[tuple]:
    """Binance's procedure written plainly, one message at a time: stdlib json, dict books, sorted
    tops. Rows (update_id, top bids, top asks), one for the snapshot with the diffs buffered
    before it, then one per applied diff. For a recording without gaps (asserted as it goes)."""
    import heapq
    import json

    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    buffered: list[dict] = []
    rows: list[tuple] = []
    futures = any(b'"pu":' in line for line in lines)
    state = {"cur": None, "awaiting": False}

    def apply(diff: dict) -> bool:
        first, last, cur = diff["U"], diff["u"], state["cur"]
        if state["awaiting"]:
            if last < cur + (0 if futures else 1):
                return False  # older than the snapshot
            assert first <= cur + (0 if futures else 1)
            state["awaiting"] = False
        elif last <= cur:
            return False  # a duplicate
        else:
            assert diff["pu"] == cur if futures else first == cur + 1  # the recording chains
        for book, key in ((bids, "b"), (asks, "a")):
            for px, qty in diff[key]:
                if float(qty) == 0:
                    book.pop(float(px), None)
                else:
                    book[float(px)] = float(qty)
        state["cur"] = last
        return True

    def row() -> None:
        rows.append((state["cur"], heapq.nlargest(levels, bids.items()), heapq.nsmallest(levels, asks.items())))

    for line in lines:
        message = json.loads(line.partition(b" ")[2])
        if "lastUpdateId" in message:
            bids.clear()
            asks.clear()
            for book, key in ((bids, "bids"), (asks, "asks")):
                book.update((float(px), float(qty)) for px, qty in message[key] if float(qty) != 0)
            state["cur"], state["awaiting"] = message["lastUpdateId"], True
            for diff in buffered:
                apply(diff)
            buffered.clear()
            row()
        elif "@depth" in message["stream"]:
            if state["cur"] is None:
                buffered.append(message["data"])
            elif apply(message["data"]):
                row()
    return rows


@pytest.mark.parametrize("name", ["spot", "usdm"])
def test_rebuild_equals_a_plain_reference_rebuild_on_real_files(tmp_path, binance, name):
    """The compiled scanner and book kernel give, row for row, the books of a plain stdlib-json,
    dict-book rebuild: the first 20,000 lines of each recording (a few thousand book rows)."""
    lines = gzip.decompress(binance[name][0].read_bytes()).split(b"\n")[:20_000]
    path = tmp_path / f"{name}.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    book, stats = bw.read("book", [path], quarantine=Quarantine(None), levels=10)
    expected = _reference_rows(lines, 10)
    assert stats["gaps"] == 0 and book["in_sync"].all()
    assert book.height == len(expected) > 1000
    names = level_columns(10)
    for got, (update_id, top_bids, top_asks) in zip(book.select("update_id", *names).iter_rows(), expected):
        want = [None] * 40
        for i, (px, qty) in enumerate(top_bids):
            want[i], want[10 + i] = px, qty
        for i, (px, qty) in enumerate(top_asks):
            want[20 + i], want[30 + i] = px, qty
        assert got == (update_id, *want)


def test_a_price_with_more_than_22_decimals_is_read_not_garbage(tmp_path):
    """The quick decimal path stops at 15 digits; past 22 decimals it once read beyond its table of
    powers of ten (1e-26 came out as 4.8e242)."""
    path = tmp_path / "rec.txt"
    snapshot = b'{"lastUpdateId":1,"bids":[["0.00000000000000000000000001","1"]],"asks":[]}'
    path.write_bytes(b"1723161253000000000 " + snapshot + b"\n")
    parsed = bw.parse_recording([path], Quarantine(None))
    assert parsed.lv_px.tolist() == pytest.approx([1e-26], rel=1e-15)
