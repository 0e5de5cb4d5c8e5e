"""A local Binance on loopback: recorded messages over a combined-stream websocket, depth snapshots
over REST, at a chosen speed, with injected faults (dropped messages, disconnects, stale snapshots).

Why: a recorder (ours, in the tests and benchmarks/bench_recorder.py, or anyone's) can be tested
end to end without Binance, and its output compared with what was sent. A recording is served
under any symbol name (its own is renamed in each message), so one recording can stand in for
many symbols. The REST snapshot is the exchange's book at the current replay position: the
recording's own snapshot with every diff up to that point applied, dropped ones included, as
Binance's book would be.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web

from data_loaders.csv_lines import read_bytes


@dataclass
class Faults:
    drop: set[int] = field(default_factory=set)  # timeline indices never sent
    disconnect_after: set[int] = field(default_factory=set)  # close the connection after this index
    lost_on_disconnect: int = 0  # messages skipped after each injected disconnect (sent while away)
    stale_snapshots: set[int] = field(default_factory=set)  # n-th snapshot requests (0-based) answered with
    #                                                          the recording's first, long outdated snapshot
    max_age_s: float | None = None  # close every connection this old (Binance: 24 h)


@dataclass
class Message:
    ts: int  # recorded receive time, ns
    symbol: str
    stream: str  # e.g. depth, trade, bookTicker
    text: str


def load(path_groups: dict[str, list[Path]]) -> tuple[list[Message], dict[str, dict]]:
    """{symbol: files of one recording} -> the merged timeline and each symbol's first REST snapshot."""
    timeline: list[Message] = []
    snapshots: dict[str, dict] = {}
    for symbol, files in path_groups.items():
        for path in files:
            lines = read_bytes(path).decode().splitlines()
            scale = 1 if int(lines[0].partition(" ")[0]) >= 10**17 else 1000  # ns, else us
            for line in lines:
                stamp, _, text = line.partition(" ")
                if text.startswith('{"lastUpdateId"'):
                    snapshots.setdefault(symbol, orjson.loads(text))
                    continue
                stream = text[11 : text.index('"', 11)]
                own, _, kind = stream.partition("@")
                text = text.replace(f'"{own}@', f'"{symbol}@', 1)
                text = text.replace(f'"s":"{own.upper()}"', f'"s":"{symbol.upper()}"', 1)
                timeline.append(Message(int(stamp) * scale, symbol, kind.split("@")[0], text))
    timeline.sort(key=lambda m: m.ts)
    return timeline, snapshots


class Replay:
    """The server: `await start()`, then point a recorder at `ws_url` and `rest_url`."""

    def __init__(self, path_groups: dict[str, list[Path]], speed: float = 1.0, faults: Faults | None = None,
                 heartbeat_s: float | None = 5.0, limit: int | None = None) -> None:
        self.timeline, self.first_snapshots = load(path_groups)
        self.timeline = self.timeline[:limit]
        self.speed = speed
        self.faults = faults or Faults()
        self.heartbeat_s = heartbeat_s
        self.position = 0  # next timeline index: the replay clock, shared by every connection
        self.sent: list[int] = []  # timeline indices delivered
        self.lost: list[int] = []  # indices dropped or skipped during disconnects
        self.snapshot_requests = 0
        self.served_snapshots: list[tuple[str, int, bool, str]] = []  # (symbol, lastUpdateId, stale, URL path)
        self.connections = 0
        self.done = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/stream", self._stream)
        for path in ("/api/v3/depth", "/fapi/v1/depth", "/dapi/v1/depth"):
            app.router.add_get(path, self._depth)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = self._runner.addresses[0][:2]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def book(self, symbol: str, position: int) -> dict:
        """The exchange's book for `symbol` before timeline index `position` (REST snapshot shape)."""
        first = self.first_snapshots[symbol]
        last_id = first["lastUpdateId"]
        sides = {side: dict(first[side]) for side in ("bids", "asks")}
        for message in self.timeline[:position]:
            if message.symbol != symbol or message.stream != "depth":
                continue
            diff = orjson.loads(message.text)["data"]
            if diff["u"] <= last_id:
                continue
            for side, key in (("bids", "b"), ("asks", "a")):
                for price, qty in diff[key]:
                    if float(qty) == 0:
                        sides[side].pop(price, None)
                    else:
                        sides[side][price] = qty
            last_id = diff["u"]
        return {
            "lastUpdateId": last_id,
            "bids": sorted(sides["bids"].items(), key=lambda pq: -float(pq[0]))[:1000],
            "asks": sorted(sides["asks"].items(), key=lambda pq: float(pq[0]))[:1000],
        }

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "").lower()
        if symbol not in self.first_snapshots:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        stale = self.snapshot_requests in self.faults.stale_snapshots
        self.snapshot_requests += 1
        book = self.first_snapshots[symbol] if stale else self.book(symbol, self.position)
        self.served_snapshots.append((symbol, book["lastUpdateId"], stale, request.path))
        return web.Response(body=orjson.dumps(book), content_type="application/json")

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        wanted = {(s.split("@")[0], s.split("@")[1]) for s in request.query.get("streams", "").split("/") if "@" in s}
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s)  # pings the client; no pong closes it
        await ws.prepare(request)
        self.connections += 1
        opened = time.monotonic()
        start = self.timeline[self.position].ts if self.position < len(self.timeline) else 0
        faults = self.faults
        while self.position < len(self.timeline) and not ws.closed:
            i = self.position
            message = self.timeline[i]
            ahead = (message.ts - start) / 1e9 / self.speed - (time.monotonic() - opened)
            if ahead > 0:
                await asyncio.sleep(ahead)
            if ws.closed:
                break
            self.position += 1
            if i in faults.drop:
                self.lost.append(i)
                continue
            if (message.symbol, message.stream) in wanted:
                try:
                    await ws.send_str(message.text)
                except ConnectionResetError:  # the client left: the message counts as lost
                    self.lost.append(i)
                    break
                self.sent.append(i)
            age = time.monotonic() - opened
            if i in faults.disconnect_after or (faults.max_age_s is not None and age > faults.max_age_s):
                if i in faults.disconnect_after:
                    skipped = range(self.position, min(self.position + faults.lost_on_disconnect, len(self.timeline)))
                    self.lost.extend(skipped)
                    self.position += len(skipped)
                await ws.close()
                return ws
        if self.position >= len(self.timeline):
            self.done.set()
            async for _ in ws:  # stay connected, idle, until the client leaves
                pass
        return ws
