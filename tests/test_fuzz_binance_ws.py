"""Property-based fuzzing of the Binance recording reader (data_loaders.binance_ws).

Valid recording lines (spot and USD-M diffs, snapshots, trades, bookTickers, other streams) are
mutated (truncated, retyped, fields dropped, bad numbers, non-UTF-8 bytes, bad timestamps, blank
lines, reordered) and read. Properties: the reader returns or raises a ValueError/GapError naming
the file; every line is accounted for (rows out + quarantined + skipped streams + lines of the
other message kinds = lines in); each quarantined line carries its reason and file:line; every
row out has positive finite prices and sizes and plausible times.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from data_loaders import binance_ws as bw
from data_loaders import json_scan
from data_loaders.csv_lines import MAX_NS, MIN_NS
from data_loaders.quarantine import Quarantine

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
T0_MS = 1_723_161_255_000  # 2024-08-09, ms
TRADE = (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255000,"s":"BTCUSDT","t":1,"p":"60000.00",'
         b'"q":"1.000","T":%s,"m":true}}')

# Bad values a number field may take (raw JSON text), by kind; each is one bad-input case.
BAD_DECIMALS = ['"NaN"', '"nan"', '"inf"', '"-inf"', '"Infinity"', '"1e400"', '"-1e400"', '"-1.5"', '"0"',
                '"0.00000000"', '"-0"', '"1e-400"', '""', '"abc"', '"1.2.3"', '"123456789012345678901234567890"',
                "1.5", "null", "true", "[]", "{}", '"1e5"', '" 1"', "NaN", "Infinity", "1e400"]
BAD_INTS = ['"123"', "1.5", "-1", "0", "1", "999999999999999999", "4102444800001", "1262303999999", "1e3", "null",
            "true", "[]", "{}", "9223372036854775808",
            "99999999999999999999999", "-9223372036854775809", '"x"', "12345678901234567890"]
OTHER_STREAMS = ["ethusdt@trade", "btcusdt@kline_1m", "btcusdt@depth20", "btcusdt@aggTrade", "btcusdt@depth@x00ms",
                 "BTCUSDT@trade", "btcusdt", ""]
TIMESTAMPS = ["", "abc", "-1723161254937085768", "0", "99999999999999999999", "1723161254937085768123",
              "1.7e18", "17231612549370857", "1723161254", "\t1723161254937085768"]


def _raw(obj: dict, raw: dict[str, str]) -> str:
    """JSON text of `obj`, with the values named in `raw` replaced by raw JSON text (maybe invalid)."""
    text = json.dumps(obj, separators=(",", ":"))
    for key, token in raw.items():
        text = text.replace(json.dumps(f"@RAW@{key}"), token)
    return text


@st.composite
def message(draw, i: int, futures: bool) -> tuple[dict, str]:
    """One valid message as a dict (stream wrapper or snapshot) and its kind."""
    kind = draw(st.sampled_from(["depth", "depth", "trade", "ticker", "snapshot", "other"]))
    uid = 1000 + 10 * i
    px = lambda: f"{draw(st.integers(60_000_00, 60_020_00)) / 100:.2f}"
    qty = lambda: f"{draw(st.integers(0, 5_000)) / 1000:.3f}"
    if kind == "snapshot":
        return {"lastUpdateId": uid, "bids": [[px(), "1.000"], ["59000.00", "2.000"]],
                "asks": [["60100.00", "1.000"], ["60101.00", qty()]]}, kind
    if kind == "depth":
        data = {"e": "depthUpdate", "E": T0_MS + i, "s": "BTCUSDT", "U": uid - 9, "u": uid,
                "b": [[f"{59_900 + draw(st.integers(0, 50))}.00", qty()]],
                "a": [[f"{60_100 + draw(st.integers(0, 50))}.00", qty()]]}
        if futures:
            data["pu"] = uid - 10
            data["T"] = T0_MS + i
        return {"stream": "btcusdt@depth@100ms", "data": data}, kind
    if kind == "trade":
        data = {"e": "trade", "E": T0_MS + i, "s": "BTCUSDT", "t": 5000 + i, "p": px(), "q": qty(),
                "T": T0_MS + i, "m": draw(st.booleans())}
        return {"stream": "btcusdt@trade", "data": data}, kind
    if kind == "ticker":
        data = {"u": uid, "s": "BTCUSDT", "b": "59999.99", "B": qty(), "a": "60000.01", "A": qty()}
        return {"stream": "btcusdt@bookTicker", "data": data}, kind
    return {"stream": draw(st.sampled_from(OTHER_STREAMS)), "data": {"e": "x", "E": T0_MS}}, kind


@st.composite
def line(draw, i: int, futures: bool, unit: int) -> bytes:
    """One recording line, valid or mutated in one of many ways."""
    msg, _ = draw(message(i, futures))
    ts = str((T0_MS + i) * unit + draw(st.integers(0, 999)))
    data = msg.get("data", msg)
    raw: dict[str, str] = {}
    mutation = draw(st.sampled_from(
        ["none"] * 3 + ["bad_decimal", "bad_int", "drop_field", "retype_data", "truncate", "non_utf8",
                        "bad_timestamp", "blank", "not_json", "bad_level", "bare_value", "extra_nesting",
                        "stream_type"]))
    if mutation == "bad_decimal":
        keys = [k for k in ("p", "q", "b", "B", "a", "A") if isinstance(data.get(k), str)]
        if keys:
            key = draw(st.sampled_from(keys))
            data[key], raw[key] = f"@RAW@{key}", draw(st.sampled_from(BAD_DECIMALS))
    elif mutation == "bad_int":
        keys = [k for k in ("E", "T", "U", "u", "pu", "t", "lastUpdateId") if k in data]
        if keys:
            key = draw(st.sampled_from(keys))
            data[key], raw[key] = f"@RAW@{key}", draw(st.sampled_from(BAD_INTS))
    elif mutation == "drop_field" and data:
        del data[draw(st.sampled_from(sorted(data)))]
    elif mutation == "retype_data" and "data" in msg:
        msg["data"] = draw(st.sampled_from([None, [], "x", 1, {}]))
    elif mutation == "bad_level":
        keys = [k for k in ("b", "a", "bids", "asks") if isinstance(data.get(k), list)]
        if keys:
            key = draw(st.sampled_from(keys))
            bad = draw(st.sampled_from(['[["1"]]', '[["1","2","3"]]', '[[1,2]]', '[["-1","1"]]', '[["0","1"]]',
                                        '[["1","-1"]]', '[["NaN","1"]]', '[["1","inf"]]', '[null]', '[[]]',
                                        '[["1e400","1"]]', '"x"', "null", "{}"]))
            data[key], raw[key] = f"@RAW@{key}", bad
    elif mutation == "stream_type" and "stream" in msg:
        msg["stream"], raw["stream"] = "@RAW@stream", draw(st.sampled_from(["1", "null", "[]", '"@trade"']))
    elif mutation == "bad_timestamp":
        ts = draw(st.sampled_from(TIMESTAMPS))
    body = _raw(msg, raw)
    if mutation == "extra_nesting":
        body = "[" * 70 + "]" * 70 if draw(st.booleans()) else '{"data":{"data":' + body + "}}"
    text = (ts + " " + body).encode()
    if mutation == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif mutation == "non_utf8":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x00", b"\xef\xbb\xbf", b"\r"])) + text[at:]
    elif mutation == "blank":
        text = draw(st.sampled_from([b"", b" ", b"\r", b"\t"]))
    elif mutation == "not_json":
        text = ts.encode() + draw(st.sampled_from([b" ", b" x", b" []", b" 1", b' "s"', b" {", b" {}", b"{}"]))
    elif mutation == "bare_value":
        text = ts.encode() + b" " + draw(st.sampled_from([b"null", b"true", b"[1,2]", b'{"a":1}',
                                                          b'{"lastUpdateId":1}']))
    return text


@st.composite
def recording(draw) -> list[bytes]:
    """The files of one recording: 1-2 files of mutated lines, maybe reordered, gzip or plain."""
    futures = draw(st.booleans())
    files = []
    i = 0
    for _ in range(draw(st.integers(1, 2))):
        unit = draw(st.sampled_from([1_000_000, 1_000, 1]))  # ns, us or ms receive timestamps
        lines = []
        for _ in range(draw(st.integers(0, 25))):
            lines.append(draw(line(i, futures, unit)))
            i += 1
        if len(lines) > 1 and draw(st.booleans()):  # out of order or repeated
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            lines.append(lines[a])
        body = b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))
        files.append(body)
    return files


def _event(text: str) -> None:
    """Count an outcome in Hypothesis' statistics (--hypothesis-show-statistics); no-op in plain tests."""
    if currently_in_test_context():
        event(text)


def _quarantined(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def _expected_lines(body: bytes) -> int:
    """Lines of a file as the reader numbers them: split on \\n, no line after a final newline."""
    return body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)


def check_recording(bodies: list[bytes]) -> None:
    """Read trades, quotes and the book of one recording and check the properties."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for n, body in enumerate(bodies):
            files.append(Path(tmp) / f"rec{n}.txt")
            files[-1].write_bytes(body)
        lines_in = sum(_expected_lines(b) for b in bodies)
        for what in ("trades", "quotes", "book"):
            qpath = Path(tmp) / f"{what}.quarantine.jsonl"
            try:
                with Quarantine(qpath) as quarantine:
                    frame, stats = bw.read(what, files, quarantine=quarantine)
            except (ValueError, bw.GapError) as exc:
                assert any(str(f) in str(exc) for f in files), f"error names no file: {exc}"
                _event(f"error: {type(exc).__name__}")
                return
            records = _quarantined(qpath)
            _event(f"{what}: {'rows' if frame.height else 'no rows'}, {'some' if records else 'none'} quarantined")
            _check_records(records, files, bodies)
            _check_rows(frame, what)
            kinds = pl.Series([r["kind"] for r in records], dtype=pl.String).value_counts()
            assert stats["bad_lines"] == dict(kinds.iter_rows())
            assert stats["messages"] == lines_in
            # every line: a good message of some kind, a skipped stream, or quarantined by the parser
            parser_bad = sum(1 for r in records if r["kind"] in bw.STATUS_NAMES.values())
            skipped = sum(stats["skipped_streams"].values())
            assert sum(stats["messages_by_kind"].values()) + skipped + parser_bad == lines_in, (stats, records)
            # every good message of this command's kind: a row out or quarantined with its reason
            later = len(records) - parser_bad
            by_kind = stats["messages_by_kind"]
            if what == "trades":
                assert frame.height + later == by_kind["trade"]
            elif what == "quotes":
                assert frame.height + later == by_kind["bookTicker"]
            else:
                duplicates = sum(1 for r in records if r["kind"] == "duplicate_or_out_of_order_id")
                assert stats["diffs"] == by_kind["depth"] and stats["snapshots"] == by_kind["snapshot"]
                assert stats["applied"] + stats["stale_dropped"] + stats["never_synced"] + duplicates == stats[
                    "diffs"], (stats, records)


def _check_records(records: list[dict], files: list[Path], bodies: list[bytes]) -> None:
    """Each quarantined line names its reason and file:line, and quotes that very line."""
    for r in records:
        assert r["kind"] and r["kind"] != "None"
        f = files.index(Path(r["file"]))
        lines = bodies[f].split(b"\n")
        assert 1 <= r["line"] <= len(lines)
        assert r["text"] == lines[r["line"] - 1].decode("utf-8", errors="replace")
    keys = [(r["file"], r["line"]) for r in records]
    assert len(keys) == len(set(keys)), "a line quarantined twice"


def _check_rows(frame: pl.DataFrame, what: str) -> None:
    """Rows out follow the contract: positive finite prices and sizes, times in 2010..2100 (or null)."""
    values = [c for c in frame.columns if c.startswith(("price", "qty", "bid_", "ask_"))]
    for c in values:
        column = frame[c].drop_nulls()
        assert column.is_finite().all() and (column > 0).all() or what == "book" and (column >= 0).all(), c
    for c in ("ts", "local_ts"):
        column = frame[c].drop_nulls()
        assert column.is_between(MIN_NS, MAX_NS).all(), (c, column)


@FUZZ
@given(recording())
def test_fuzz_recording(bodies: list[bytes]) -> None:
    check_recording(bodies)


@FUZZ
@given(recording())
def test_fuzz_line_parsed_as_if_alone(bodies: list[bytes]) -> None:
    """The scanner finds each line's end while parsing it (a good line's JSON stops at its newline, a
    bad line is parsed again within its own bytes): every line's status, kind, fields and levels
    are those of its bytes scanned alone, and the lines are the file's split on newlines."""
    buf = np.frombuffer(b"".join(bodies), np.uint8)
    sym = np.frombuffer(b"btcusdt", np.uint8)
    whole = json_scan.scan(buf, np.cumsum([len(b) for b in bodies], dtype=np.int64), sym)
    split = [(f, n, line) for f, body in enumerate(bodies)
             for n, line in enumerate(body.split(b"\n")[: _expected_lines(body)], 1)]
    assert whole.status.size == len(split)
    for i, (f, n, line) in enumerate(split):
        assert (whole.file_index[i], whole.line_no[i]) == (f, n)
        assert buf[whole.starts[i] : whole.ends[i]].tobytes() == line
        bare = line.rstrip(b"\r ")  # what the line's parse may read: its bytes less trailing CR and spaces
        alone = json_scan.scan(np.frombuffer(bare, np.uint8), np.array([len(bare)]), sym)
        if not bare:  # a blank line alone is no line; in a file it is a malformed one
            assert whole.status[i] == json_scan.MALFORMED
            continue
        for name in ("local_ts", "status", "kind", "ints", "floats", "present", "maker"):
            assert np.array_equal(getattr(whole, name)[i], getattr(alone, name)[0], equal_nan=True), (name, line)
        span = whole.stream_span[i] - (whole.starts[i] if whole.stream_span[i].any() else 0)
        assert np.array_equal(span, alone.stream_span[0]), line
        levels = slice(whole.lv_start[i], whole.lv_end[i])
        for name in ("lv_side", "lv_px", "lv_qty"):
            assert np.array_equal(getattr(whole, name)[levels], getattr(alone, name)), (name, line)


def test_scan_past_its_first_estimate_of_lines() -> None:
    """The scanner sizes its arrays for the line length of the first megabyte; a file whose first
    megabyte is one long snapshot line, followed by many short lines, needs them doubled several
    times, and every line is still parsed in place."""
    levels = b",".join(b'["%d.5","1.0"]' % (10_000 + k) for k in range(100_000))
    snapshot = b'1723161255000000000 {"lastUpdateId":1,"bids":[%s],"asks":[["99999.5","1.0"]]}' % levels
    trades = [b"%d " % (1_723_161_255_000_000_001 + k) + TRADE.replace(b'"t":1,', b'"t":%d,' % k) % b"1723161255000"
              for k in range(5_000)]
    body = b"\n".join([snapshot, *trades]) + b"\n"
    assert len(snapshot) > 1 << 20
    got = json_scan.scan(np.frombuffer(body, np.uint8), np.array([len(body)]), np.frombuffer(b"btcusdt", np.uint8))
    assert got.status.tolist() == [0] * 5_001
    assert got.kind.tolist() == [json_scan.K_SNAPSHOT] + [json_scan.K_TRADE] * 5_000
    assert got.line_no.tolist() == list(range(1, 5_002))
    assert got.ints[1:, json_scan.I_TID].tolist() == list(range(5_000))
    assert (got.lv_start[0], got.lv_end[0], got.lv_px.size) == (0, 100_001, 100_001)
    assert body[got.starts[-1] : got.ends[-1]] == trades[-1]


def test_recording_example_reads_clean() -> None:
    """The generator's unmutated lines read without quarantine (the fuzz starts from valid input)."""
    check_recording([b"1723161254937085768 " + TRADE % b"1723161255342" + b"\n"])


# --- regressions: the inputs the fuzzing found, each as a plain test -------------------------------
def _read_one(tmp_path: Path, body: bytes, what: str) -> tuple[pl.DataFrame, dict, list[dict]]:
    path = tmp_path / "rec.txt"
    path.write_bytes(body)
    qpath = tmp_path / "q.jsonl"
    with Quarantine(qpath) as quarantine:
        frame, stats = bw.read(what, [path], quarantine=quarantine)
    return frame, stats, _quarantined(qpath)


ZERO_TICKER = (b'1723161255000000000 {"stream":"btcusdt@bookTicker","data":{"u":1000,"s":"BTCUSDT","b":"59999.99",'
               b'"B":"0.000","a":"60000.01","A":"1.000"}}\n')
ZERO_TRADE = (b'1723161255000000000 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255000,"s":"BTCUSDT",'
              b'"t":1,"p":"60000.00","q":"0.000","T":1723161255000,"m":true}}\n')


@pytest.mark.parametrize(("what", "body"), [("quotes", ZERO_TICKER), ("trades", ZERO_TRADE)])
def test_zero_size_is_quarantined(tmp_path: Path, what: str, body: bytes) -> None:
    """A bookTicker or trade of size 0 came out as a row (contract: sizes are positive); now quarantined."""
    frame, _, records = _read_one(tmp_path, body, what)
    assert frame.height == 0
    assert [(r["kind"], r["line"]) for r in records] == [("zero_size", 1)]


@pytest.mark.parametrize("exchange_ms", [b"0", b"-1", b"999999999999999999", b"4102444800001"])
def test_implausible_exchange_time_is_quarantined(tmp_path: Path, exchange_ms: bytes) -> None:
    """A trade time T of 0, -1 ms or past 2100 came out as a row at 1970 (or an int64 overflow's
    wrapped value); now quarantined as bad_timestamp."""
    frame, _, records = _read_one(tmp_path, b"1723161255000000000 " + TRADE % exchange_ms + b"\n", "trades")
    assert frame.height == 0
    assert [(r["kind"], r["line"]) for r in records] == [("bad_timestamp", 1)]


def test_depth_event_time_zero_is_quarantined(tmp_path: Path) -> None:
    """A diff with E=0 gave a book row with ts=0; now the diff is quarantined (and the chain breaks)."""
    body = (b'1723161255000000000 {"lastUpdateId":5,"bids":[["1","1"]],"asks":[["2","1"]]}\n'
            b'1723161255000000001 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":0,"s":"BTCUSDT",'
            b'"U":6,"u":7,"b":[],"a":[]}}\n')
    frame, _, records = _read_one(tmp_path, body, "book")
    assert frame["ts"].to_list() == [None]  # the snapshot's row: a REST snapshot has no exchange time
    assert [(r["kind"], r["line"]) for r in records] == [("bad_timestamp", 2)]


def test_receive_time_past_int64_is_malformed(tmp_path: Path) -> None:
    """A 19-digit receive time above int64's range wrapped negative and failed the whole file ('cannot
    tell the unit', naming no file); now that line is malformed and the rest is read."""
    good = b"1723161255000000000 " + TRADE % b"1723161255000"
    frame, _, records = _read_one(tmp_path, good + b"\n9999999999999999999 " + TRADE[:-2] + b',"x":1}}\n', "trades")
    assert frame.height == 1
    assert [(r["kind"], r["line"]) for r in records] == [("malformed_line", 2)]


def test_ns_stamp_in_a_us_file_is_malformed(tmp_path: Path) -> None:
    """A ns receive time among us ones was scaled by 1000 in int64 (an overflow: a wrapped value that
    could pass the plausibility check); now it is checked in the file's unit first."""
    lines = [b"%d " % (1_723_161_255_000_000 + i) + TRADE % b"1723161255000" for i in range(3)]
    lines.insert(1, b"1723161255000000000 " + TRADE % b"1723161255000")
    frame, _, records = _read_one(tmp_path, b"\n".join(lines) + b"\n", "trades")
    assert frame["local_ts"].to_list() == [1_723_161_255_000_000_000]  # trade id 1 repeats on lines 3-4
    assert [(r["kind"], r["line"]) for r in records] == [("malformed_line", 2), ("duplicate_or_out_of_order_id", 3),
                                                         ("duplicate_or_out_of_order_id", 4)]


def test_unknown_unit_error_names_the_file(tmp_path: Path) -> None:
    """Receive times in seconds raised 'cannot tell the receive-timestamp unit' without the file's name."""
    path = tmp_path / "rec.txt"
    path.write_bytes(b"1723161255 " + TRADE % b"1723161255000" + b"\n")
    with pytest.raises(ValueError, match=f"{path}: cannot tell the receive-timestamp unit"):
        bw.read("trades", [path], quarantine=Quarantine(None))
