"""The recorder's CPU share: `ticks record` keeping up with many symbols replayed faster than real time.

    python benchmarks/bench_recorder.py [--symbols 10] [--speed 10] [--seconds 30] [--recording spot]

The loopback replay server (data_loaders/replay.py) runs in its own process and sends one shared
recording under N symbol names at `--speed` times real time; the recorder runs in this process,
writing its files to a temporary folder. Reported: the recorder's CPU time over wall time (its
share of one core), the messages per second it recorded, and the rate the server achieved as a
multiple of real time (a server that cannot keep up sends less than asked: read the figure with it).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_loaders.paths import binance_recordings
from data_loaders.record import RecordConfig, Recorder
from data_loaders.replay import Replay

NAMES = ["btcusdt", "ethusdt", "bnbusdt", "solusdt", "xrpusdt", "dogeusdt", "adausdt", "trxusdt", "linkusdt",
         "avaxusdt", "dotusdt", "ltcusdt", "bchusdt", "nearusdt", "aptusdt", "arbusdt"]  # fmt: skip


def serve(files: list[Path], symbols: list[str], speed: float, urls: mp.Queue, stop: mp.Event) -> None:
    async def main() -> None:
        server = Replay({s: files for s in symbols}, speed=speed, heartbeat_s=20)
        await server.start()
        urls.put((server.ws_url, server.rest_url))
        while not stop.is_set():
            await asyncio.sleep(0.1)
        first, last = server.timeline[0].ts, server.timeline[max(server.position - 1, 0)].ts
        urls.put((last - first) / 1e9)
        await server.stop()

    asyncio.run(main())


def bench(recording: str, n_symbols: int, speed: float, seconds: float) -> dict:
    files = binance_recordings()[recording][:1]
    symbols = NAMES[:n_symbols]
    urls, stop = mp.Queue(), mp.Event()
    server = mp.Process(target=serve, args=(files, symbols, speed, urls, stop))
    server.start()
    ws_url, rest_url = urls.get(timeout=120)
    with tempfile.TemporaryDirectory() as out:
        config = RecordConfig(recording, symbols, Path(out), ws_url=ws_url, rest_url=rest_url, duration_s=seconds)
        summary = asyncio.run(Recorder(config).run())
    stop.set()
    replayed_s = urls.get(timeout=60)
    server.join(30)
    return {
        "recording": recording, "symbols": n_symbols, "speed_asked": speed,
        "speed_achieved": round(replayed_s / summary["seconds"], 2), "messages": summary["messages"],
        "msgs_per_s": round(summary["messages"] / summary["seconds"]), "cpu_share": summary["cpu_share"],
        "gaps": summary["gaps"], "seconds": summary["seconds"], "bytes": summary["bytes"],
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--recording", default="spot", choices=["spot", "usdm"])
    args = parser.parse_args()
    print(bench(args.recording, args.symbols, args.speed, args.seconds))
