"""The `ticks` command line on the real recordings: outputs, summaries, failures."""

import gzip
import os
import signal
import subprocess
import sys
import time

import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from data_loaders.cli import app
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA, book_schema

runner = CliRunner()


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout.strip().splitlines()[-1])


def test_book_trades_quotes_info(tmp_path, binance):
    spot = [str(f) for f in binance["spot"]]
    out = tmp_path / "book.parquet"
    summary = _json(
        runner.invoke(app, ["book", *spot, "--levels", "5", "--out", str(out), "--json"])
    )
    assert summary["command"] == "book" and summary["format"] == "binance" and summary["gaps"] == 0
    assert summary["messages"] == 41_249 + 58_325 and summary["bad_lines"] == {}
    book = pl.read_parquet(out)
    assert book.schema == pl.Schema(book_schema(5)) and book.height == summary["rows"] > 6000
    assert not (tmp_path / "book.quarantine.jsonl").exists()

    grid = tmp_path / "grid.parquet"
    _json(runner.invoke(app, ["book", *spot, "--every", "100ms", "--out", str(grid), "--json"]))
    resampled = pl.read_parquet(grid)
    assert (resampled["local_ts"].diff().drop_nulls() == 100_000_000).all()
    assert resampled.height == pytest.approx(
        (book["local_ts"].max() - book["local_ts"].min()) / 1e8, abs=2
    )

    usdm = str(binance["usdm"][0])
    for command, schema in (("trades", TRADES_SCHEMA), ("quotes", QUOTES_SCHEMA)):
        path = tmp_path / f"{command}.parquet"
        result = runner.invoke(app, [command, usdm, "--out", str(path)])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{command}: ") and "bad_lines=0" in result.stdout
        frame = pl.read_parquet(path)
        assert frame.schema == pl.Schema(schema) and frame.height > 20_000

    info = _json(runner.invoke(app, ["info", str(out), "--json"]))
    assert info["kind"] == "book" and info["rows"] == book.height and info["symbol"] == "btcusdt"
    assert info["column_names"].split(",") == book.columns
    info = _json(runner.invoke(app, ["info", usdm, "--json"]))
    assert (
        info["kind"] == "binance-recording" and info["market"] == "usdm" and info["snapshots"] == 1
    )
    assert info["messages"] == 93_954 and info["ts_unit"] == "ns"


def test_bad_lines_are_reported_and_quarantined(tmp_path, binance):
    lines = gzip.decompress(binance["spot"][0].read_bytes()).split(b"\n")
    lines[2] = lines[2][:40]
    lines[3] = b"garbage"
    src = tmp_path / "rec.gz"
    src.write_bytes(gzip.compress(b"\n".join(lines)))
    out = tmp_path / "q.parquet"
    result = runner.invoke(app, ["quotes", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    bad = next(part for part in result.stdout.split() if part.startswith("bad_lines="))
    assert sorted(bad.removeprefix("bad_lines=").split(",")) == [
        "invalid_json=1",
        "malformed_line=1",
    ]
    records = [orjson.loads(x) for x in (tmp_path / "q.quarantine.jsonl").read_bytes().splitlines()]
    assert sorted((r["kind"], r["line"]) for r in records) == [
        ("invalid_json", 3),
        ("malformed_line", 4),
    ]


def test_failures_exit_nonzero_with_a_message(tmp_path, binance):
    out = str(tmp_path / "x.parquet")
    not_data = tmp_path / "notes.txt"
    not_data.write_text("hello\n")
    result = runner.invoke(app, ["book", str(not_data), "--out", out])
    assert result.exit_code == 3 and "not a Binance recording" in result.output
    result = runner.invoke(app, ["book", str(tmp_path / "missing.gz"), "--out", out])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["book", str(binance["usdm"][0]), "--out", str(not_data / "x.parquet")])
    assert result.exit_code == 2 and "cannot write" in result.output and "notes.txt" in result.output
    result = runner.invoke(
        app, ["book", str(binance["usdm"][0]), "--on-gap", "maybe", "--out", out]
    )
    assert result.exit_code == 2 and "--on-gap" in result.output
    result = runner.invoke(
        app, ["book", str(binance["usdm"][0]), "--format", "binance-csv", "--out", out]
    )
    assert result.exit_code == 3 and "not a book" in result.output

    lines = gzip.decompress(binance["usdm"][0].read_bytes()).split(b"\n")
    gap_at = next(i for i in range(3000, len(lines)) if b"@depth" in lines[i])
    del lines[gap_at]
    gapped = tmp_path / "gapped.gz"
    gapped.write_bytes(gzip.compress(b"\n".join(lines), compresslevel=1))
    result = runner.invoke(app, ["book", str(gapped), "--on-gap", "error", "--out", out])
    assert result.exit_code == 3 and "gap in the update ids" in result.output
    flagged = _json(runner.invoke(app, ["book", str(gapped), "--out", out, "--json"]))
    assert flagged["gaps"] == 1 and flagged["out_of_sync_rows"] > 0


def test_synth_is_wired(tmp_path):
    result = runner.invoke(
        app, ["synth", "--minutes", "0.2", "--seed", "3", "--out", str(tmp_path / "m"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout.strip().splitlines()[-1])["command"] == "synth"
    book = pl.read_parquet(tmp_path / "m" / "book.parquet")
    assert book.height == 120


def test_a_new_run_replaces_an_earlier_runs_quarantine(tmp_path, binance):
    clean = [str(f) for f in binance["usdm"]]
    lines = gzip.decompress(binance["usdm"][0].read_bytes()).splitlines()
    dirty = tmp_path / "usdm_btcusdt_dirty.txt"
    dirty.write_bytes(b"\n".join([*lines[:50], b"garbage", *lines[50:]]) + b"\n")
    out = tmp_path / "trades.parquet"
    quarantine = tmp_path / "trades.quarantine.jsonl"
    assert _json(runner.invoke(app, ["trades", str(dirty), "--out", str(out), "--json"]))["bad_lines"]
    assert quarantine.exists()
    assert _json(runner.invoke(app, ["trades", *clean, "--out", str(out), "--json"]))["bad_lines"] == {}
    assert not quarantine.exists()  # the earlier run's lines do not belong to this output
    assert not list(tmp_path.glob(".*partial"))


def test_kill_9_during_book_leaves_the_previous_output_or_the_new_one_never_a_part(tmp_path, binance):
    spot = [str(f) for f in binance["spot"]]
    out = tmp_path / "book.parquet"
    argv = [sys.executable, "-c", "from data_loaders.cli import app; app()", "book", *spot, "--out", str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    previous = pl.read_parquet(out)
    outcomes = set()
    for delay in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0):  # bounded: six runs, each killed or finished
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        outcomes.add(proc.wait())
        assert pl.read_parquet(out).equals(previous)  # whole: the old file or an identical new one
    subprocess.run(argv, check=True, capture_output=True)  # the next run starts clean over a partial
    assert pl.read_parquet(out).equals(previous) and not list(tmp_path.glob(".*partial"))
    assert -signal.SIGKILL in outcomes, "no run was killed mid-way: the test proved nothing"


def test_files_of_two_markets_or_two_symbols_are_not_one_recording(tmp_path, binance):
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["trades", str(binance["spot"][0]), str(binance["usdm"][0]), "--out", str(out)])
    assert result.exit_code == 3 and "files of different markets given as one recording" in result.output
    assert "spot_btcusdt_20240808.gz (spot)" in result.output and "usdm_btcusdt_20240808.gz (usdm)" in result.output
    other = tmp_path / "spot_ethusdt_20240808.gz"
    other.write_bytes(gzip.compress(gzip.decompress(binance["spot"][0].read_bytes()).replace(b"btcusdt@", b"ethusdt@")))
    result = runner.invoke(app, ["trades", str(binance["spot"][0]), str(other), "--out", str(out)])
    assert result.exit_code == 3 and "files of different symbols" in result.output and "(ethusdt)" in result.output
    nameless = tmp_path / "nameless.gz"
    nameless.write_bytes(gzip.compress(b'1723161253000000000 {"stream":"@trade","data":{"e":"trade"}}\n'))
    result = runner.invoke(app, ["trades", str(nameless), "--out", str(out)])
    assert result.exit_code == 3 and "stream names without a symbol" in result.output
    assert not out.exists()


def test_a_file_whose_every_line_is_quarantined_is_an_error_not_an_empty_table(tmp_path):
    lines = [(b'1723161253000000000 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161253000,"s":"BTCUSDT",'
              b'"t":1,"p":"abc","q":"0.1","T":1723161253000,"m":true}}'),
             (b'1723161253000000001 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161253000,"s":"BTCUSDT",'
              b'"t":2,"p":"-1","q":"0.1","T":1723161253000,"m":true}}')]
    recording = tmp_path / "spot_btcusdt_20240808.gz"
    recording.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    out = tmp_path / "t.parquet"
    result = runner.invoke(app, ["trades", str(recording), "--out", str(out)])
    assert result.exit_code == 3 and "no usable trades rows" in result.output and "was not written" in result.output
    assert not out.exists()
    quarantined = [orjson.loads(line) for line in (tmp_path / "t.quarantine.jsonl").read_bytes().splitlines()]
    assert sorted((q["kind"], q["line"]) for q in quarantined) == [("non_numeric_field", 1), ("non_positive_price", 2)]


def test_json_with_spaces_after_the_colons_is_read_like_compact_json(tmp_path):
    recording = tmp_path / "spot_btcusdt_20240808.txt"
    recording.write_text('1723161253000000000 {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1723161253000, '
                         '"s": "BTCUSDT", "t": 1, "p": "60000", "q": "0.1", "T": 1723161253000, "m": true}}\n')
    result = runner.invoke(app, ["trades", str(recording), "--out", str(tmp_path / "t.parquet"), "--json"])
    summary = _json(result)
    assert summary["rows"] == 1 and summary["symbol"] == "btcusdt" and summary["skipped_streams"] == {}


def test_a_snapshot_of_another_book_mid_file_is_quarantined_not_applied(tmp_path, binance):
    lines = gzip.decompress(binance["spot"][0].read_bytes()).split(b"\n")
    middle = next(i for i in range(len(lines) // 2, len(lines)) if b"@depth" in lines[i])
    stamp = lines[middle].split(b" ", 1)[0]
    last_id = max(orjson.loads(line.split(b" ", 1)[1])["data"]["u"] for line in lines if b"@depth" in line)
    foreign = {"lastUpdateId": last_id + 10**9, "bids": [["0.7801", "1200"]], "asks": [["0.7802", "900"]]}
    lines.insert(middle, stamp + b" " + orjson.dumps(foreign))  # e.g. NEXOUSDT's, with ids this stream never reaches
    recording = tmp_path / "spot_btcusdt_20240808.gz"
    recording.write_bytes(gzip.compress(b"\n".join(lines), compresslevel=1))
    out = tmp_path / "book.parquet"
    summary = _json(runner.invoke(app, ["book", str(recording), "--out", str(out), "--json"]))
    assert summary["bad_lines"] == {"foreign_snapshot": 1} and summary["gaps"] == 0
    assert summary["out_of_sync_rows"] == 0 and summary["ticker_agreement"] >= 0.999
    quarantined = orjson.loads((tmp_path / "book.quarantine.jsonl").read_bytes())
    assert quarantined["kind"] == "foreign_snapshot" and quarantined["line"] == middle + 1


def test_aggtrade_streams_and_spot_trades_with_order_ids_are_read(tmp_path):
    """aggTrade carries its id in "a" (and first/last trade ids "f"/"l"), a spot trade its order ids in "b"/"a":
    integers, not prices; both were quarantined as non-numeric (aggTrade streams were skipped)."""
    agg = tmp_path / "usdm_btcusdt_agg.txt"
    agg.write_text(
        '1723161253000000000 {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161253001,'
        '"s":"BTCUSDT","a":5933014,"p":"60000.1","q":"0.5","f":100,"l":105,"T":1723161253000,"m":true}}\n'
        '1723161253100000000 {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161253101,'
        '"s":"BTCUSDT","a":5933015,"p":"60000.2","q":"0.25","f":106,"l":106,"T":1723161253100,"m":false}}\n')
    out = tmp_path / "agg.parquet"
    summary = _json(runner.invoke(app, ["trades", str(agg), "--out", str(out), "--json"]))
    assert summary["rows"] == 2 and summary["trades_from"] == "aggTrade" and summary["bad_lines"] == {}
    trades = pl.read_parquet(out)
    assert trades["trade_id"].to_list() == [5933014, 5933015] and trades["side"].to_list() == [-1, 1]
    assert trades["qty"].to_list() == [0.5, 0.25] and trades["ts"][0] == 1723161253000 * 1_000_000
    old = tmp_path / "spot_btcusdt_old.txt"
    old.write_text('1723161253000000000 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161253001,'
                   '"s":"BTCUSDT","t":12345,"p":"60000.1","q":"0.5","b":88,"a":50,"T":1723161253000,'
                   '"m":true,"M":true}}\n')
    summary = _json(runner.invoke(app, ["trades", str(old), "--out", str(out), "--json"]))
    assert summary["rows"] == 1 and summary["bad_lines"] == {}
    assert pl.read_parquet(out).row(0) == (1723161253000 * 1_000_000, 1723161253000000000, 12345, 60000.1, 0.5, -1)


def test_coinm_recordings_are_coinm_with_contracts_turned_into_base_units(tmp_path):
    """COIN-M sizes count contracts (100 USD each for BTCUSD): 3 contracts at 60,000 are 0.005 BTC."""
    recording = tmp_path / "coinm_btcusd_perp.txt"
    recording.write_text(
        '1723161253000000000 {"stream":"btcusd_perp@aggTrade","data":{"e":"aggTrade","E":1723161253001,'
        '"s":"BTCUSD_PERP","a":7,"p":"60000","q":"3","f":1,"l":2,"T":1723161253000,"m":false}}\n'
        '1723161253100000000 {"stream":"btcusd_perp@bookTicker","data":{"e":"bookTicker","u":400900217,'
        '"s":"BTCUSD_PERP","ps":"BTCUSD","b":"50000","B":"10","a":"50000.5","A":"20","T":1723161253100,'
        '"E":1723161253101}}\n')
    out = tmp_path / "t.parquet"
    summary = _json(runner.invoke(app, ["trades", str(recording), "--out", str(out), "--json"]))
    assert summary["market"] == "coinm" and summary["symbol"] == "btcusd_perp"
    assert pl.read_parquet(out)["qty"].to_list() == [3 * 100 / 60_000]
    summary = _json(runner.invoke(app, ["quotes", str(recording), "--out", str(out), "--json"]))
    quote = pl.read_parquet(out).row(0, named=True)
    assert summary["market"] == "coinm" and (quote["bid_qty"], quote["ask_qty"]) == (10 * 100 / 50_000,
                                                                                      20 * 100 / 50_000.5)
