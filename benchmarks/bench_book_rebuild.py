"""Book rebuild speed, end to end: gzip recording -> parse -> sync -> kernel -> Parquet.

    python benchmarks/bench_book_rebuild.py [--repeat 11]     # prints msgs/s per recording
    python -m pytest benchmarks/bench_book_rebuild.py         # the same under pytest-benchmark

Messages are recording lines (every stream, not only depth diffs). The first call in a process
loads numba's cached machine code; it is reported apart ("cold") from the steady state.
Each figure is shown for wall-clock time and for the process's CPU time: on a shared machine
(run it under `taskset -c N` for one core) the CPU figure is the one other load disturbs least.
`--repeat N` also times one recording made of the USD-M file N times over (11 copies: about 1M
lines), each copy's update ids moved past the previous copy's, so every copy is a real rebuild:
its diffs arrive after a gap and its own snapshot re-syncs the book (receive and exchange times
repeat; the book does not depend on them). The marginal rate, (messages of N copies - messages of
one) / (time of N copies - time of one), is the speed once fixed costs are paid.
"""

from __future__ import annotations

import argparse
import gzip
import re
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


def _report(name: str, files: list[Path], out: Path, runs: int = 7) -> tuple[int, float, float]:
    """Print and return (messages, median wall seconds, median CPU seconds) of `runs` rebuilds."""
    timings = [rebuild_to_parquet(files, out) for _ in range(runs)]
    messages = timings[0][0]
    best = min(wall for _, wall, _ in timings)
    median = statistics.median(wall for _, wall, _ in timings)
    cpu = statistics.median(cpu for _, _, cpu in timings)
    print(
        f"{name:>22}: {messages:>10,} msgs  best {messages / best:>11,.0f} msgs/s  "
        f"median {messages / median:>11,.0f} msgs/s  CPU median {messages / cpu:>11,.0f} msgs/s"
    )
    return messages, median, cpu


UPDATE_IDS = re.compile(rb'"(U|u|pu|lastUpdateId)":(\d+)')


def shifted_copies(text: bytes, copies: int) -> bytes:
    """`copies` copies of a recording's lines, each copy's update ids past every id of the one
    before, so that each copy is synced from its own snapshot instead of dropped as duplicates."""
    ids = [int(found.group(2)) for found in UPDATE_IDS.finditer(text)]
    span = max(ids) - min(ids) + 1
    return b"".join(
        UPDATE_IDS.sub(lambda m, k=k: b'"%s":%d' % (m.group(1), int(m.group(2)) + k * span), text)
        for k in range(copies)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeat", type=int, default=0, help="also time the USD-M file N times over, and the marginal rate"
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
        if args.repeat > 1 and "usdm" in groups:
            text = b"".join(gzip.decompress(f.read_bytes()) for f in groups["usdm"])
            one, many = Path(tmp) / "usdm_x1.gz", Path(tmp) / f"usdm_x{args.repeat}.gz"
            one.write_bytes(gzip.compress(text, 1))
            many.write_bytes(gzip.compress(shifted_copies(text, args.repeat), 1))
            m1, wall1, cpu1 = _report("usdm x1", [one], out)
            mn, walln, cpun = _report(f"usdm x{args.repeat}", [many], out, runs=3)
            print(
                f"{'marginal':>22}: {mn - m1:>10,} msgs  median {(mn - m1) / (walln - wall1):>11,.0f} msgs/s  "
                f"CPU median {(mn - m1) / (cpun - cpu1):>11,.0f} msgs/s"
            )


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
