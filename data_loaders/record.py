"""`ticks record`: Binance's combined websocket streams -> the gzip line files `ticks book` reads.

Why it is built this way (Binance's "How to manage a local order book correctly", spot and futures):
- one combined-stream connection per market carries every symbol's depth diffs, bookTicker and
  trades; each message is written as received, `<local receive ns> <JSON>`, to its symbol's file
  (the reader takes one symbol per file);
- the REST depth snapshot (limit 1000) is requested once the stream is open (buffer first, then
  snapshot), after every update-id gap, after every reconnect and at every file rotation (so each
  file can be read alone); it is written into the file in receive order, where the reader
  replays Binance's sync rules on it;
- the update-id chain is checked live (ids only, no prices: `Chain`, the reader's rules), so a gap
  or a stale snapshot triggers a new snapshot at once and is logged to `<market>_events.jsonl`,
  never silent;
- lines are compressed as one complete gzip member per flush (every second): what is on disk is
  always a readable gzip, a crash loses at most the last second; files are rotated on UTC period
  boundaries, fsynced and renamed into place (data_loaders.atomic.publish) when closed;
- a dropped connection (Binance closes every one after 24 hours) is reopened at once, a failing
  one with exponential backoff and full jitter; aiohttp answers Binance's pings and sends its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from isal import igzip

from data_loaders.atomic import partial_path, publish
from data_loaders.binance_ws import A_GAP, sync_step

log = logging.getLogger("ticks.record")


@dataclass(frozen=True)
class Endpoints:
    ws: str  # combined streams: {ws}/stream?streams=a/b/c
    rest: str
    depth_path: str  # REST depth snapshot
    futures: bool  # diffs chain with `pu` instead of `U`


MARKETS = {
    "spot": Endpoints("wss://stream.binance.com:9443", "https://api.binance.com", "/api/v3/depth", False),
    "usdm": Endpoints("wss://fstream.binance.com", "https://fapi.binance.com", "/fapi/v1/depth", True),
    "coinm": Endpoints("wss://dstream.binance.com", "https://dapi.binance.com", "/dapi/v1/depth", True),
}


@dataclass
class RecordConfig:
    market: str
    symbols: list[str]
    out: Path
    ws_url: str | None = None  # base URL override (testnet, a local replay)
    rest_url: str | None = None
    depth: str = "depth@100ms"
    trades: str = "trade"  # or aggTrade
    rotate_s: int = 3600
    flush_s: float = 1.0
    backoff_s: float = 1.0  # first retry delay; doubles up to backoff_max_s, full jitter
    backoff_max_s: float = 60.0
    duration_s: float | None = None  # stop by itself after this long (scripts, tests)
    connect_attempts: int = 6  # failures before the first connection that end the run (a wrong URL)
    compresslevel: int = 1  # ISA-L levels 0-3: 1 keeps up with many symbols on a fraction of a core

    def endpoints(self) -> Endpoints:
        base = MARKETS[self.market]
        return Endpoints(
            (self.ws_url or base.ws).rstrip("/"), (self.rest_url or base.rest).rstrip("/"), base.depth_path,
            base.futures,
        )  # fmt: skip


class Chain:
    """Binance's sync rules on update ids alone, as data_loaders.binance_ws applies them: tells the
    recorder when its file has a gap (or a stale snapshot) and needs a new snapshot."""

    def __init__(self, futures: bool) -> None:
        self.futures = futures
        self.cur: int | None = None  # last update id of a book in sync; None: waiting for a snapshot
        self.awaiting = False  # a snapshot was taken: the next diff must straddle it
        self.buffer: list[tuple[int, int, int]] = []  # diffs received while no snapshot is in sync

    def reset(self) -> None:
        self.cur, self.awaiting, self.buffer = None, False, []

    def _apply(self, first: int, last: int, prev: int) -> bool:
        """False when the diff breaks the chain (a stale or duplicate diff is skipped, as the reader does)."""
        assert self.cur is not None
        action, _, awaiting, cur = sync_step(first, last, prev, self.futures, True, self.awaiting, self.cur)
        if action == A_GAP:
            return False
        self.awaiting, self.cur = awaiting, cur
        return True

    def diff(self, first: int, last: int, prev: int) -> bool:
        """Take one diff; False at a gap (the chain then waits for a snapshot, keeping this diff)."""
        if self.cur is None:
            self.buffer.append((first, last, prev))
            return True
        if self._apply(first, last, prev):
            return True
        self.cur, self.awaiting, self.buffer = None, False, [(first, last, prev)]
        return False

    def snapshot(self, last_update_id: int) -> bool:
        """Take a snapshot (ignored when in sync and not ahead); False when the diffs received
        since do not straddle it: a stale snapshot, another is needed."""
        if self.cur is not None and last_update_id <= self.cur:
            return True
        self.cur, self.awaiting = last_update_id, True
        pending, self.buffer = self.buffer, []
        for i, (first, last, prev) in enumerate(pending):
            if not self._apply(first, last, prev):
                self.cur, self.awaiting, self.buffer = None, False, pending[i:]
                return False
        return True

    @property
    def in_sync(self) -> bool:
        return self.cur is not None


class Sink:
    """One symbol's output: lines held in memory, appended as one gzip member per flush to a
    hidden partial file that `close` fsyncs and renames into place."""

    def __init__(self, folder: Path, stem: str, level: int) -> None:
        self.folder, self.stem, self.level = folder, stem, level
        self.lines: list[str] = []
        self.path: Path | None = None
        self.handle = None
        self.files: list[Path] = []
        self.bytes = 0

    def _open(self) -> None:
        opened = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        path = self.folder / f"{self.stem}_{opened}.gz"
        n = 1
        while path.exists() or partial_path(path).exists():  # a restart within the same second
            path, n = self.folder / f"{self.stem}_{opened}-{n}.gz", n + 1
        self.path = path
        self.handle = open(partial_path(path), "ab")  # noqa: SIM115 - open for the file's hour, closed in close()

    def flush(self) -> None:
        if not self.lines:
            return
        if self.handle is None:
            self._open()
        data = igzip.compress("".join(self.lines).encode(), self.level)
        self.lines.clear()
        self.handle.write(data)
        self.handle.flush()
        self.bytes += len(data)

    def close(self) -> None:
        """Flush, fsync and publish the current file; the next line opens a new one."""
        self.flush()
        if self.handle is None:
            return
        self.handle.close()
        publish(partial_path(self.path), self.path)
        self.files.append(self.path)
        self.handle = self.path = None


_STREAM = '{"stream":"'
_IDS = re.compile(r'"U":(\d+),"u":(\d+)(?:,"pu":(-?\d+))?')


@dataclass
class Stats:
    messages: Counter = field(default_factory=Counter)  # by stream kind
    snapshots: int = 0
    gaps: int = 0
    stale_snapshots: int = 0
    connections: int = 0
    disconnects: int = 0
    snapshot_errors: int = 0
    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=time.process_time)


class Recorder:
    def __init__(self, config: RecordConfig, on_status: Callable[[Recorder], None] | None = None) -> None:
        if config.market not in MARKETS:
            raise ValueError(f"unknown market {config.market!r}; use one of {', '.join(MARKETS)}")
        if not config.symbols:
            raise ValueError("no symbols to record")
        self.config = config
        self.api = config.endpoints()
        self.symbols = [s.lower() for s in config.symbols]
        self.streams = [f"{s}@{kind}" for s in self.symbols for kind in (config.depth, "bookTicker", config.trades)]
        config.out.mkdir(parents=True, exist_ok=True)
        self.sinks = {s: Sink(config.out, f"{config.market}_{s}", config.compresslevel) for s in self.symbols}
        self.chains = {s: Chain(self.api.futures) for s in self.symbols}
        self.fetching: dict[str, asyncio.Task] = {}
        self.stats = Stats()
        self.on_status = on_status
        self.stopping = asyncio.Event()
        self._events = open(config.out / f"{config.market}_events.jsonl", "ab")  # noqa: SIM115 - closed by run()

    # --- events and files ---------------------------------------------------------------------
    def event(self, kind: str, **fields: object) -> None:
        """One line in <market>_events.jsonl (gaps, connections, snapshots, files), flushed at once."""
        self._events.write(orjson.dumps({"ts": time.time_ns(), "event": kind, **fields}) + b"\n")
        self._events.flush()
        level = logging.WARNING if kind in ("gap", "stale_snapshot", "disconnected", "snapshot_error") else logging.INFO
        log.log(level, "%s %s", kind, fields)

    def _write(self, symbol: str, line: str) -> None:
        self.sinks[symbol].lines.append(line)

    def _close_files(self) -> None:
        for symbol, sink in self.sinks.items():
            closed = sink.path
            sink.close()
            if closed is not None:
                self.event("file", symbol=symbol, path=str(closed))

    def _rotate(self) -> None:
        self._close_files()
        for symbol in self.symbols:
            if self.chains[symbol].in_sync:  # each file opens with a snapshot, to be read alone
                self._resync(symbol, "rotate")

    # --- snapshots ----------------------------------------------------------------------------
    def _resync(self, symbol: str, reason: str) -> None:
        """Request a snapshot unless one is on its way."""
        task = self.fetching.get(symbol)
        if task is not None and not task.done() and not task.cancelling():
            return
        self.fetching[symbol] = asyncio.create_task(self._snapshot(symbol, reason))

    async def _snapshot(self, symbol: str, reason: str) -> None:
        """GET the depth snapshot, retrying with backoff; write it and hand it to the chain."""
        url = f"{self.api.rest}{self.api.depth_path}"
        params = {"symbol": symbol.upper(), "limit": "1000"}
        attempt = 0
        while True:
            try:
                async with self.session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    body = await resp.read()
                    received = time.time_ns()
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                          message=body[:200].decode(errors="replace"))
                snapshot = orjson.loads(body)
                last_update_id = int(snapshot["lastUpdateId"])
                break
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
                self.stats.snapshot_errors += 1
                self.event("snapshot_error", symbol=symbol, attempt=attempt, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
        self._write(symbol, f"{received} {orjson.dumps(snapshot).decode()}\n")  # compact: one line
        self.stats.snapshots += 1
        self.event("snapshot", symbol=symbol, reason=reason, last_update_id=last_update_id)
        if not self.chains[symbol].snapshot(last_update_id):
            self.stats.stale_snapshots += 1
            first, last, prev = self.chains[symbol].buffer[0]
            self.event("stale_snapshot", symbol=symbol, last_u=last_update_id, U=first, u=last, pu=prev)
            self.fetching[symbol] = asyncio.create_task(self._snapshot(symbol, "stale_snapshot"))

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (a retry storm of many recorders spreads out)."""
        return random.uniform(0, min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt))

    # --- the stream ---------------------------------------------------------------------------
    def _on_message(self, received: int, text: str) -> None:
        if not text.startswith(_STREAM):
            stream = orjson.loads(text).get("stream", "") if text.startswith("{") else ""
        else:
            stream = text[11 : text.index('"', 11)]
        symbol, _, kind = stream.partition("@")
        if symbol not in self.sinks:
            self.stats.messages["other"] += 1
            self.event("unexpected_message", text=text[:200])
            return
        self._write(symbol, f"{received} {text}\n")
        if kind.startswith("depth"):
            kind = "depth"
            found = _IDS.search(text)
            if found:
                first, last, prev = int(found[1]), int(found[2]), int(found[3] or -1)
            else:  # another field order: parse it all
                data = orjson.loads(text)["data"]
                first, last, prev = data["U"], data["u"], data.get("pu", -1)
            chain = self.chains[symbol]
            last_u, awaiting = chain.cur, chain.awaiting
            if not chain.diff(first, last, prev):
                what = "stale_snapshot" if awaiting else "gap"  # the first diff after a snapshot must straddle it
                self.stats.stale_snapshots += awaiting
                self.stats.gaps += not awaiting
                self.event(what, symbol=symbol, last_u=last_u, U=first, u=last, pu=prev)
                self._resync(symbol, what)
        self.stats.messages[kind] += 1

    async def _connection(self) -> None:
        url = f"{self.api.ws}/stream?streams={'/'.join(self.streams)}"
        async with self.session.ws_connect(url, heartbeat=20, max_msg_size=0) as ws:
            self.stats.connections += 1
            self.event("connected", url=url)
            for symbol in self.symbols:
                self.chains[symbol].reset()
                self._resync(symbol, "connect")
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._on_message(time.time_ns(), msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self._on_message(time.time_ns(), msg.data.decode())
            reason = f"closed by the server (code {ws.close_code})" if ws.exception() is None else str(ws.exception())
        self.stats.disconnects += 1
        self.event("disconnected", reason=reason)

    async def _stream(self) -> None:
        """Connect, record, reconnect: at once after a connection that worked, with backoff after failures."""
        attempt = 0
        while True:
            received = sum(self.stats.messages.values())
            try:
                await self._connection()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.event("connect_error", attempt=attempt, error=f"{type(exc).__name__}: {exc}")
            for task in self.fetching.values():  # the snapshots belonged to the lost connection
                task.cancel()
            attempt = 0 if sum(self.stats.messages.values()) > received else attempt + 1
            if self.stats.connections == 0 and attempt >= self.config.connect_attempts:
                raise ConnectionError(f"cannot connect to {self.api.ws} after {attempt} attempts; "
                                      "check --ws-url and the network")
            if attempt:
                await asyncio.sleep(self._backoff(attempt - 1))

    async def _ticker(self) -> None:
        """Every flush_s: write the buffered lines, rotate on UTC period boundaries, report."""
        period = self.config.rotate_s
        boundary = (time.time() // period + 1) * period
        while True:
            await asyncio.sleep(self.config.flush_s)
            if time.time() >= boundary:
                boundary = (time.time() // period + 1) * period
                self._rotate()
            for sink in self.sinks.values():
                sink.flush()
            if self.on_status:
                self.on_status(self)

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> dict:
        """Record until stop() (SIGINT, SIGTERM) or duration_s; then close every file. Returns the summary."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (RuntimeError, ValueError):  # not the main thread: the caller stops us
                pass
        self.event("start", market=self.config.market, symbols=self.symbols, streams=self.streams)
        try:
            async with aiohttp.ClientSession() as self.session:
                stream = asyncio.create_task(self._stream())
                tasks = [stream, asyncio.create_task(self._ticker()), asyncio.create_task(self.stopping.wait())]
                await asyncio.wait(tasks, timeout=self.config.duration_s, return_when=asyncio.FIRST_COMPLETED)
                for task in [*tasks, *self.fetching.values()]:
                    task.cancel()
                await asyncio.gather(*tasks, *self.fetching.values(), return_exceptions=True)
                if not stream.cancelled() and stream.exception() is not None:
                    raise stream.exception()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (RuntimeError, ValueError):
                    pass
            self._close_files()
            self.event("stop", **self.summary())
            self._events.close()
        return self.summary()

    def summary(self) -> dict:
        s = self.stats
        seconds = time.monotonic() - s.started
        cpu = time.process_time() - s.cpu_started
        return {
            "market": self.config.market, "symbols": len(self.symbols), "messages": sum(s.messages.values()),
            "messages_by_kind": dict(s.messages), "snapshots": s.snapshots, "gaps": s.gaps,
            "stale_snapshots": s.stale_snapshots, "connections": s.connections, "disconnects": s.disconnects,
            "snapshot_errors": s.snapshot_errors, "files": sum(len(k.files) for k in self.sinks.values()),
            "bytes": sum(k.bytes for k in self.sinks.values()), "seconds": round(seconds, 3),
            "cpu_share": round(cpu / seconds, 4) if seconds > 0 else 0.0, "out": str(self.config.out),
        }  # fmt: skip
