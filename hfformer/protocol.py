"""The test split is read once, at the end, and the run records it.

Training and every choice it makes (epochs, penalties, grids) see the train and validation windows
only. `train` writes RUN/splits.json, a fingerprint of each part's windows (count, first and last
end time, sha256 of their end times and targets): every later model of the run, and every reading
of the test split, must find the same windows, or it is refused. Computing the models' forecasts
on the test windows (`hfformer evaluate`, or `hfformer backtest` when forecasts are missing) is a
read: RUN/test_reads.json records each one (UTC time, user and host, command, data, each model's
checkpoint sha256). A second read of a model's test split prints a loud warning on stderr (a score
seen twice is no longer untouched, all the more when the model was retrained in between) unless
the reader passes `again` (`--again`), which says it knows; the read is recorded either way.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console

from data_loaders.atomic import checked, sha256, write_bytes
from hfformer.data import Data, Prepared, data_label

SPLITS = "splits.json"
READS = "test_reads.json"
PARTS = ("train", "val", "test")


def fingerprint(prep: Prepared, part: str) -> dict[str, Any]:
    """What identifies a part's windows: their number, first and last end time, and a sha256 of the
    end times and realised targets (other data, or other prices in it, give another digest)."""
    ends = prep.ends[part]
    digest = hashlib.sha256(prep.features.ts[ends].tobytes())
    digest.update(np.ascontiguousarray(prep.y[ends]).tobytes())
    ts = prep.features.ts[ends]
    return {"windows": int(ends.size), "first_ts": int(ts[0]) if ends.size else None,
            "last_ts": int(ts[-1]) if ends.size else None, "sha256": digest.hexdigest()}


def _read(path: Path) -> Any:
    try:
        return orjson.loads(checked(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc}); it records the run's protocol: restore it") from None


def _describe(fp: dict[str, Any]) -> str:
    if not fp["windows"]:
        return "no windows"
    first, last = (datetime.fromtimestamp(fp[k] / 1e9, UTC).isoformat() for k in ("first_ts", "last_ts"))
    return f"{fp['windows']} windows ending {first} .. {last}, sha256 {fp['sha256'][:12]}"


def check_splits(run_dir: Path, prep: Prepared) -> None:
    """Write RUN/splits.json for the run's first model; refuse a later one trained on other windows."""
    path = Path(run_dir) / SPLITS
    now = {part: fingerprint(prep, part) for part in PARTS}
    if path.exists():
        before = _read(path)
        changed = [part for part in PARTS if before.get(part) != now[part]]
        if changed:
            raise ValueError(f"{path}: the {', '.join(changed)} windows of this data differ from those the run's "
                             f"models were trained on ({_describe(before[changed[0]])}; now "
                             f"{_describe(now[changed[0]])}): train on the same data, or use another --out")
        return
    write_bytes(path, orjson.dumps(now, option=orjson.OPT_INDENT_2), checksum=True)


def holds_test_split(run_dir: Path, prep: Prepared) -> bool:
    """Does `prep` hold the run's test windows (the data it was trained on)? Forecasts over them are a read
    of its test split; other data is not."""
    path = Path(run_dir) / SPLITS
    return path.exists() and _read(path)["test"] == fingerprint(prep, "test")


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's uid) and no USER variable
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def record_test_read(run_dir: Path, prep: Prepared, data: Data, command: str, models: list[str],
                     again: bool = False) -> list[str]:
    """Check the test windows against the run's, record this read in RUN/test_reads.json and return
    the warnings of a second read (also printed, loudly, on stderr unless `again`)."""
    run_dir = Path(run_dir)
    now = fingerprint(prep, "test")
    splits = run_dir / SPLITS
    path = run_dir / READS
    record = _read(path) if path.exists() else {"test": now, "reads": []}
    expected = _read(splits)["test"] if splits.exists() else record["test"]
    if expected != now:
        raise ValueError(f"{data_label(data)}: its test split ({_describe(now)}) is not the run's "
                         f"({_describe(expected)}, "
                         f"in {splits if splits.exists() else path}): read the test split of the data {run_dir} "
                         "was trained on")
    digests = {m: sha256(run_dir / m / "checkpoint.pt") if (run_dir / m / "checkpoint.pt").exists() else None
               for m in models}
    warnings = []
    for name, digest in digests.items():
        earlier = [r for r in record["reads"] if name in r["models"]]
        if not earlier:
            continue
        last = earlier[-1]
        seen = f"{len(earlier)} time(s), last at {last['time']} by {last['who']} ({last['command']})"
        if digest != last["models"][name]:
            warnings.append(f"{name}: retrained after its test split was read {seen}: its test score is not "
                            "an untouched one")
        else:
            warnings.append(f"{name}: test split already read {seen}")
    record["reads"].append({"time": datetime.now(UTC).isoformat(timespec="seconds"), "who": who(),
                            "command": command, "argv": sys.argv, "data": data_label(data), "again": again,
                            "models": digests})
    write_bytes(path, orjson.dumps(record, option=orjson.OPT_INDENT_2), checksum=True)
    if warnings and not again:
        console = Console(stderr=True)
        for line in warnings:
            console.print(f"WARNING: second read of the test split of {run_dir}: {line}; recorded in {path} "
                          "(--again: read it knowingly)", style="bold red", markup=False, soft_wrap=True)
    return warnings
