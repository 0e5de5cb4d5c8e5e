"""`ticks download` against a loopback HTTP server laid out like data.binance.vision: small zips with
their CHECKSUM files, a wrong checksum, a truncated zip and a transfer cut short (then resumed)."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from data_loaders.atomic import verify
from data_loaders.cli import app

runner = CliRunner()
T0 = 1_723_161_600_000  # 2024-08-09 00:00 UTC, ms


def _zip(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, text)
    return buf.getvalue()


def _archives() -> dict[str, bytes]:
    """Two days of spot trades and aggTrades, one of USD-M trades and bookTicker, with checksums."""
    files = {}
    for day in (0, 1):
        date = f"2024-08-{9 + day:02d}"
        t = T0 + day * 86_400_000
        trades = "".join(f"{100 + i},61800.{i:02d},0.01,618.0,{t + i * 10},{i % 2 == 0},True\n" for i in range(50))
        agg = "".join(f"{7 + i},61800.{i:02d},0.02,{100 + 2 * i},{101 + 2 * i},{t + i * 10},False,True\n"
                      for i in range(25))
        files[f"data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{date}.zip"] = _zip(f"BTCUSDT-trades-{date}.csv", trades)
        files[f"data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{date}.zip"] = _zip(
            f"BTCUSDT-aggTrades-{date}.csv", agg)
    um = "id,price,qty,quote_qty,time,is_buyer_maker\n" + "".join(
        f"{9 + i},61790.{i:02d},0.005,308.9,{T0 + i},{'true' if i % 3 else 'false'}\n" for i in range(40))
    files["data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-09.zip"] = _zip(
        "BTCUSDT-trades-2024-08-09.csv", um)
    ticker = ("update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time\n"
              + "".join(f"{500 + i},61790.1,1.5,61790.2,2.5,{T0 + i},{T0 + i + 1}\n" for i in range(30)))
    files["data/futures/um/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-08-09.zip"] = _zip(
        "BTCUSDT-bookTicker-2024-08-09.csv", ticker)
    for path, data in list(files.items()):
        files[path + ".CHECKSUM"] = f"{hashlib.sha256(data).hexdigest()}  {Path(path).name}\n".encode()
    return files


class Archive(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.files = _archives()
        self.cut: set[str] = set()  # paths whose next transfer breaks off half-way
        self.ranges: list[str] = []
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Archive

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        data = self.server.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if "Range" in self.headers:
            self.server.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if path in self.server.cut:
            self.server.cut.discard(path)
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the peer goes away mid-transfer
            return
        self.wfile.write(data[start:])


@pytest.fixture
def archive():
    server = Archive()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _download(archive: Archive, out: Path, *extra: str) -> tuple[int, dict | str]:
    args = ["download", "--out", str(out), "--base-url", f"http://127.0.0.1:{archive.server_address[1]}",
            "--json", *extra]  # fmt: skip
    result = runner.invoke(app, args)
    if result.exit_code:
        return result.exit_code, result.output
    return 0, orjson.loads(result.stdout.strip().splitlines()[-1])


def test_download_convert_and_resume(archive, tmp_path):
    code, summary = _download(archive, tmp_path, "--market", "spot", "--symbol", "btcusdt",
                              "--from", "2024-08-09", "--to", "2024-08-10")  # fmt: skip
    assert code == 0, summary
    assert summary["downloaded"] == 4 and summary["files"] == 4 and summary["rows"] == 2 * (50 + 25)
    assert summary["not_published_list"] == "bookTicker (none for spot)"
    parquet = tmp_path / "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-09.parquet"
    verify(parquet)  # written with its sha256
    trades = pl.read_parquet(parquet)
    assert trades.height == 50 and trades["ts"][0] == T0 * 1_000_000 and set(trades["side"]) == {-1, 1}
    meta = {k.decode(): v.decode() for k, v in pq.read_metadata(parquet).metadata.items() if not k.startswith(b"ARROW")}
    assert meta["symbol"] == "btcusdt" and meta["market"] == "spot" and meta["kind"] == "trades"

    code, again = _download(archive, tmp_path, "--market", "spot", "--symbol", "BTCUSDT",
                            "--from", "2024-08-09", "--to", "2024-08-10")  # fmt: skip
    assert code == 0 and again["downloaded"] == 0 and again["already_done"] == 4

    # USD-M: bookTicker is published for the first day only; the trades transfer breaks off, then resumes
    path = "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-09.zip"
    archive.cut.add(path)
    args = ("--market", "usdm", "--symbol", "BTCUSDT", "--from", "2024-08-09", "--to", "2024-08-10",
            "--kinds", "trades,bookTicker")  # fmt: skip
    code, message = _download(archive, tmp_path, *args)
    assert code == 4 and "run the same command again to resume" in message
    assert not (tmp_path / path).exists() and (tmp_path / path).with_name(f".{Path(path).name}.partial").exists()
    code, summary = _download(archive, tmp_path, *args)
    assert code == 0, summary
    assert summary["resumed"] == 1 and archive.ranges and summary["downloaded"] == 2
    assert summary["not_published_list"] == "trades 2024-08-10,bookTicker 2024-08-10"
    quotes = pl.read_parquet(
        tmp_path / "data/futures/um/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-08-09.parquet")
    assert quotes.height == 30 and quotes["update_id"][0] == 500


def test_wrong_checksum_and_truncated_zip(archive, tmp_path):
    path = "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-09.zip"
    archive.files[path + ".CHECKSUM"] = f"{'0' * 64}  {Path(path).name}\n".encode()
    args = ("--market", "spot", "--symbol", "BTCUSDT", "--from", "2024-08-09", "--to", "2024-08-09",
            "--kinds", "trades")
    code, message = _download(archive, tmp_path, *args)
    assert code == 4 and "does not match the published" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing half-written, not even a partial

    truncated = archive.files[path][: len(archive.files[path]) // 2]
    archive.files[path] = truncated  # damaged at the source: its checksum matches, its zip does not read
    archive.files[path + ".CHECKSUM"] = f"{hashlib.sha256(truncated).hexdigest()}  {Path(path).name}\n".encode()
    code, message = _download(archive, tmp_path, *args)
    assert code == 3 and "not a readable zip" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]

    code, message = _download(archive, tmp_path, "--market", "spot", "--symbol", "BTCUSDT", "--from", "2024-08-10",
                              "--to", "2024-08-09")  # fmt: skip
    assert code == 2


def test_downloaded_days_become_a_dataset(archive, tmp_path):
    """The converted Parquet of several days is one input; the zips beside them are the same rows in
    another format, so giving both is refused rather than counting every trade twice."""
    from dbbench.dataset import build_from

    code, summary = _download(archive, tmp_path, "--market", "spot", "--symbol", "BTCUSDT", "--kinds", "trades",
                              "--from", "2024-08-09", "--to", "2024-08-10")  # fmt: skip
    assert code == 0, summary
    folder = tmp_path / "data/spot/daily/trades/BTCUSDT"
    with pytest.raises(ValueError, match="BTCUSDT@binance_spot given in more than one format"):
        build_from(tmp_path / "both", [folder])
    # The served second day repeats the first day's trade ids: the same trades again, counted once.
    m = build_from(tmp_path / "ds", sorted(folder.glob("*.parquet")))
    assert m["rows"] == {"trades": 50, "quotes": 0} and m["venues"] == ["binance_spot"]
    assert m["source"]["quarantined"] == {"duplicate_id": 50}
    assert m["source"]["inputs"][0]["clock"] == "ts"  # archives carry no receive time
    m = build_from(tmp_path / "zips", sorted(folder.glob("*.zip")))  # the archives themselves: the same rows
    assert m["rows"] == {"trades": 50, "quotes": 0} and m["source"]["quarantined"] == {"duplicate_id": 50}
