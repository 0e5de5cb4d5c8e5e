"""Book rebuild speed, end to end: gzip recording -> parse -> sync -> kernel -> Parquet.

    python benchmarks/bench_book_rebuild.py [--repeat 20]     # prints msgs/s per recording
    python -m pytest benchmarks/bench_book_rebuild.py         # the same under pytest-benchmark

Messages are recording lines (every stream, not only depth diffs). The first call in a process
loads numba's cached machine code; it is reported apart ("cold") from the steady state.
Each figure is shown for wall-clock time and for the process's CPU time: on a shared machine
(run it under `taskset -c N` for one core) the CPU figure is the one other load disturbs least.
`--repeat N` also times one recording made of the USD-M file N times over (a few million lines):
the copies after the first repeat old update ids, so they exercise parsing and the duplicate
path rather than the book, which makes that figure an upper bound for the book part.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_loaders.binance_ws import read
from data_loaders.paths import binance_recordings
from data_loaders.quarantine import Quarantine


def rebuild_to_parquet(files: list[Path], out: Path, levels: int = 10) -> tuple[int, float, float]:
    """(messages, wall seconds, CPU seconds) for one full rebuild written to `out`."""
    wall, cpu = time.perf_counter(), time.process_time()
    book, stats = read("book", files, quarantine=Quarantine(None), levels=levels)
    book.write_parquet(out)
    return stats["messages"], time.perf_counter() - wall, time.process_time() - cpu


def _report(name: str, files: list[Path], out: Path, runs: int = 7) -> None:
    timings = [rebuild_to_parquet(files, out) for _ in range(runs)]
    messages = timings[0][0]
    best = min(wall for _, wall, _ in timings)
    median = statistics.median(wall for _, wall, _ in timings)
    cpu = statistics.median(cpu for _, _, cpu in timings)
    print(
        f"{name:>22}: {messages:>10,} msgs  best {messages / best:>11,.0f} msgs/s  "
        f"median {messages / median:>11,.0f} msgs/s  CPU median {messages / cpu:>11,.0f} msgs/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeat", type=int, default=0, help="also time the USD-M file repeated N times"
    )
    args = parser.parse_args()
    groups = binance_recordings()
    if not groups:
        sys.exit("no recordings under ../shared/data/binance (set HFT_SHARED_DATA)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "book.parquet"
        first = next(iter(groups.values()))
        messages, seconds, _ = rebuild_to_parquet(first, out)
        print(
            f"{'cold':>22}: {messages:>10,} msgs  {messages / seconds:,.0f} msgs/s (includes loading compiled code)"
        )
        for name, files in groups.items():
            _report(name, files, out)
        for files in groups.values():
            for f in files:
                _report(f.name.removesuffix(".gz"), [f], out)
        if args.repeat and "usdm" in groups:
            big = Path(tmp) / "usdm_repeated.gz"
            big.write_bytes(
                gzip.compress(gzip.decompress(groups["usdm"][0].read_bytes()) * args.repeat, 1)
            )
            _report(f"usdm x{args.repeat}", [big], out, runs=3)


@pytest.mark.parametrize("name", ["spot", "usdm"])
def test_book_rebuild(benchmark, tmp_path, name):
    files = binance_recordings().get(name)
    if not files:
        pytest.skip("real Binance recordings not found under ../shared/data/binance")
    messages, _, _ = rebuild_to_parquet(
        files, tmp_path / "warm.parquet"
    )  # load compiled code first
    benchmark.extra_info["messages"] = messages
    benchmark(rebuild_to_parquet, files, tmp_path / "book.parquet")
    benchmark.extra_info["msgs_per_s"] = messages / benchmark.stats.stats.median


if __name__ == "__main__":
    main()
