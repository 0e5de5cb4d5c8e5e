"""`dbbench dataset --source synth --scale ROWS`: peak RSS, time and size of the streamed build.

    python benchmarks/bench_dataset_scale.py --scale 10000000 [--symbols 3] [--days 1] [--dir DIR]

The build runs as its own process (the command line, as a user runs it), measured with wait4: the
peak RSS of that process. The generator streams chunks of grid steps to Parquet, so the peak should
not grow with ROWS (target: under 4 GB at 100 million rows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_scale import GB, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10_000_000)
    parser.add_argument("--symbols", type=int, default=3)
    parser.add_argument("--days", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temporary one)")
    args = parser.parse_args()
    out = (args.dir or Path(tempfile.mkdtemp(prefix="dbbench-dataset-"))) / f"synth-{args.scale}"
    argv = [sys.executable, "-m", "dbbench.cli", "dataset", "--source", "synth", "--scale", str(args.scale),
            "--symbols", str(args.symbols), "--seed", str(args.seed), "--out", str(out), "--json"]
    if args.days is not None:
        argv += ["--days", str(args.days)]
    rc, seconds, rss = measured(argv)
    manifest = orjson.loads((out / "dataset.json").read_bytes()) if rc == 0 else {}
    rows = sum(manifest.get("rows", {}).values())
    print(orjson.dumps({"scale": args.scale, "rc": rc, "rows": rows, "seconds": round(seconds, 1),
                        "rows_per_s": round(rows / seconds) if seconds else 0, "peak_rss_gb": round(rss / GB, 3),
                        "parquet_mb": round(sum(manifest.get("bytes", {}).values()) / 1e6, 1),
                        "out": str(out)}).decode())


if __name__ == "__main__":
    main()
