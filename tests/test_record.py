"""`ticks record` end to end against the loopback replay of the shared recordings (websocket + REST),
with injected disconnects, dropped diffs and a stale snapshot: the recorded files rebuild a book
that agrees with the replayed bookTicker, and every gap is flagged, none silent."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from data_loaders import binance_ws
from data_loaders.cli import app
from data_loaders.quarantine import Quarantine
from data_loaders.record import Chain, RecordConfig, Recorder
from data_loaders.replay import Faults, Replay


def _lines(files: list[Path]) -> list[tuple[int, bytes]]:
    out = []
    for f in files:
        for line in gzip.decompress(f.read_bytes()).splitlines():  # a complete gzip, or this raises
            stamp, _, text = line.partition(b" ")
            out.append((int(stamp), text))
    return out


async def _record(server: Replay, config: RecordConfig, settle_s: float = 0.3) -> dict:
    """Run the recorder against `server` until the replay has been sent, then stop it."""
    await server.start()
    config.ws_url, config.rest_url = server.ws_url, server.rest_url
    recorder = Recorder(config)
    task = asyncio.create_task(recorder.run())
    try:
        await asyncio.wait_for(server.done.wait(), 60)
        await asyncio.sleep(settle_s)
        recorder.stop()
        summary = await task
    finally:
        await server.stop()
    return summary


@pytest.mark.parametrize("market", ["spot", "usdm", "coinm"])
def test_record_replay_with_faults(market, binance, tmp_path):
    """COIN-M: the USD-M recording served as BTCUSD_PERP on the delivery endpoints (no COIN-M recording is shared)."""
    symbol = "btcusd_perp" if market == "coinm" else "btcusdt"
    server = Replay({symbol: binance["usdm" if market == "coinm" else market][:1]}, speed=25, heartbeat_s=0.2,
                    limit=4000)
    depth = [i for i, m in enumerate(server.timeline) if m.stream == "depth"]
    # snapshot requests in order: 0 connect, 1 after the first drop, 2 after the reconnect (served stale),
    # 3 after the stale one is found, 4 after the second drop
    server.faults = Faults(drop={depth[len(depth) // 5], depth[3 * len(depth) // 4]},
                           disconnect_after={depth[len(depth) // 2]}, lost_on_disconnect=40,
                           stale_snapshots={2})  # fmt: skip
    config = RecordConfig(market, [symbol], tmp_path, flush_s=0.1, rotate_s=3600)
    summary = asyncio.run(_record(server, config))

    files = sorted(tmp_path.glob(f"{market}_{symbol}_*.gz"))
    assert files and not list(tmp_path.glob(".*partial"))
    lines = _lines(files)
    # everything sent was recorded, with each snapshot served, nothing else
    assert summary["messages"] == len(server.sent) and summary["snapshots"] == len(server.served_snapshots) == 5
    assert len(lines) == len(server.sent) + len(server.served_snapshots)
    assert summary["disconnects"] == 1 and summary["connections"] == 2  # the heartbeat pings were answered
    assert summary["gaps"] == 2 and summary["stale_snapshots"] == 1
    paths = {"spot": "/api/v3/depth", "usdm": "/fapi/v1/depth", "coinm": "/dapi/v1/depth"}
    assert {path for *_, path in server.served_snapshots} == {paths[market]}  # the market's own REST endpoint

    events = [orjson.loads(line) for line in (tmp_path / f"{market}_events.jsonl").read_bytes().splitlines()]
    flagged = [e for e in events if e["event"] in ("gap", "stale_snapshot")]
    for i in server.faults.drop:  # the recorder logged each dropped diff as a gap around it
        lost = orjson.loads(server.timeline[i].text)["data"]
        assert any(e["event"] == "gap" and e["last_u"] < lost["u"] < e["u"] for e in flagged), lost["u"]
    assert [e["event"] for e in events].count("disconnected") == 1

    book, stats = binance_ws.read("book", files, quarantine=Quarantine(None), levels=5)
    assert stats["ticker_agreement"] >= 0.999, stats
    assert stats["market"] == market and stats["symbol"] == symbol
    assert stats["bad_lines"] == {} and stats["snapshots"] == 5
    # no silent gap: the first book row past each lost diff is out of sync, or a snapshot reset it
    snapshot_times = {stamp for stamp, text in lines if text.startswith(b'{"lastUpdateId"')}
    lost_diffs = [orjson.loads(server.timeline[i].text)["data"] for i in server.lost
                  if server.timeline[i].stream == "depth"]  # fmt: skip
    assert len(lost_diffs) >= 3
    for diff in lost_diffs:
        after = book.filter(pl.col("update_id") >= diff["u"]).row(0, named=True)
        assert not after["in_sync"] or after["local_ts"] in snapshot_times, diff["u"]
    assert stats["out_of_sync_rows"] > 0


def test_chain_follows_binance_rules():
    spot = Chain(futures=False)
    assert spot.diff(5, 9, -1) and not spot.in_sync  # buffered until a snapshot
    assert spot.snapshot(7) and spot.in_sync and spot.cur == 9  # 5..9 straddles 8
    assert spot.diff(10, 12, -1) and not spot.diff(14, 15, -1)  # 13 is missing: a gap
    assert not spot.in_sync and spot.buffer == [(14, 15, -1)]
    assert not spot.snapshot(3)  # stale: 14 does not straddle 4
    assert spot.snapshot(20) and spot.diff(18, 20, -1) and spot.diff(21, 22, -1) and spot.cur == 22
    assert spot.snapshot(21) and spot.cur == 22  # in sync and not ahead: ignored, as the reader does
    futures = Chain(futures=True)
    assert futures.snapshot(100) and futures.diff(90, 99, 80)  # older than the snapshot: dropped
    assert futures.diff(95, 105, 94) and futures.diff(110, 120, 105) and not futures.diff(130, 140, 121)


def test_record_rotates_and_stops_cleanly_on_sigint(binance, tmp_path):
    """The CLI: hourly rotation shortened to 1 s, each file opening with a snapshot; the server closing
    every connection after 0.7 s (Binance's 24 hours), reopened at once; SIGINT closes the last file
    complete; `ticks book` reads the files as they are."""
    server = Replay({"btcusdt": binance["spot"][:1]}, speed=20, limit=3000, faults=Faults(max_age_s=0.7))
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    assert ready.wait(10)
    out = tmp_path / "rec"
    argv = [sys.executable, "-m", "data_loaders.cli", "record", "--market", "spot", "--symbols", "BTCUSDT",
            "--out", str(out), "--rotate", "1s", "--ws-url", server.ws_url, "--rest-url", server.rest_url, "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 60
        while not server.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.2)  # one more rotation
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        loop.call_soon_threadsafe(loop.stop)
    assert proc.returncode == 0, stderr.decode()
    summary = orjson.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["command"] == "record" and summary["messages"] == len(server.sent) and summary["gaps"] == 0
    assert summary["disconnects"] >= 1 and summary["connections"] == summary["disconnects"] + 1 == server.connections
    files = sorted(out.glob("spot_btcusdt_*.gz"))
    assert len(files) >= 2 and summary["files"] == len(files) and not list(out.glob(".*partial"))
    for f in files[1:]:  # each file after the first holds a snapshot of its own (the rotation's)
        assert any(text.startswith(b'{"lastUpdateId"') for _, text in _lines([f])), f
    runner = CliRunner()
    result = runner.invoke(app, ["book", *map(str, files), "--out", str(tmp_path / "book.parquet"), "--json"])
    assert result.exit_code == 0, result.output
    book = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert book["gaps"] == 0 and book["ticker_agreement"] >= 0.999 and book["messages"] == len(_lines(files))


def test_record_usage_and_unreachable_server(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["record", "--market", "options", "--symbols", "x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--market" in result.output
    result = runner.invoke(app, ["record", "--market", "spot", "--symbols", " ,", "--out", str(tmp_path)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["record", "--market", "spot", "--symbols", "btcusdt", "--out", str(tmp_path),
                                 "--rotate", "soon"])  # fmt: skip
    assert result.exit_code == 2 and "--rotate" in result.output
    config = RecordConfig("spot", ["btcusdt"], tmp_path, ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9",
                          backoff_s=0.01, connect_attempts=3)  # fmt: skip
    with pytest.raises(ConnectionError, match="after 3 attempts"):
        asyncio.run(Recorder(config).run())
    events = [orjson.loads(line)["event"] for line in (tmp_path / "spot_events.jsonl").read_bytes().splitlines()]
    assert events.count("connect_error") == 3 and events[-1] == "stop"
