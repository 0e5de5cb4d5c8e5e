"""kill -9 in the middle of `ticks book`, `hfformer train` and `dbbench load`: afterwards there is
the previous complete output or none, never a part, and the next run starts clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from data_loaders.atomic import checksum_path, partial_path, verify
from data_loaders.paths import shared_data_dir

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def start(module: str, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})


def finish(module: str, *args: str, cwd: Path) -> str:
    proc = start(module, *args, cwd=cwd)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `ready()`; the test fails if the process ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "never reached the point to kill at"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_ticks_book_killed_while_writing_leaves_the_previous_book(tmp_path):
    files = sorted((shared_data_dir() / "binance").glob("spot_nexousdt_*.gz"))  # 34 hours, one recording
    if not files:
        pytest.skip(f"no NEXOUSDT recording in {shared_data_dir() / 'binance'}")
    out = tmp_path / "book.parquet"
    args = ("book", *files, "--every", "100ms", "--out", out)
    finish("data_loaders.cli", *args, cwd=tmp_path)
    before = out.read_bytes()
    kill_when(start("data_loaders.cli", *args, cwd=tmp_path), partial_path(out).exists)
    assert out.read_bytes() == before
    verify(out)
    finish("data_loaders.cli", *args, cwd=tmp_path)  # the next run starts clean
    assert not partial_path(out).exists() and out.read_bytes() == before
    verify(out)


def test_hfformer_train_killed_mid_run_leaves_a_whole_checkpoint(tmp_path):
    data = tmp_path / "synth"
    finish("data_loaders.cli", "synth", "--minutes", "20", "--seed", "1", "--out", data, cwd=tmp_path)
    tiny = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25", "model.d_model=12", "model.n_heads=2",
            "model.d_ff=16", "batch_size=32", "max_train_windows=2048", "max_val_windows=128", "progress=false",
            "device=cpu", "val_every_steps=8"]
    sets = [arg for s in tiny for arg in ("--set", s)]
    run = tmp_path / "run"
    args = ("train", "--data", data, "--out", run, "--model", "lstm", *sets)
    finish("hfformer.cli", *args, "--set", "max_epochs=1", cwd=tmp_path)
    checkpoint, metrics = run / "lstm" / "checkpoint.pt", run / "lstm" / "metrics.csv"

    def training() -> bool:  # past the first validation of the second run, while it keeps saving
        return metrics.exists() and len(metrics.read_text().splitlines()) >= 3

    metrics.unlink()
    kill_when(start("hfformer.cli", *args, "--set", "max_epochs=50", cwd=tmp_path), training)
    from hfformer.checkpoint import load_checkpoint

    assert load_checkpoint(checkpoint)["kind"] == "lstm" and checksum_path(checkpoint).exists()
    summary = finish("hfformer.cli", *args, "--set", "max_epochs=1", "--json", cwd=tmp_path)
    assert orjson.loads(summary.splitlines()[-1])["model"] == "lstm"
    assert not partial_path(checkpoint).exists()
    load_checkpoint(checkpoint)


def test_dbbench_load_killed_mid_load_is_never_queried_until_loaded_again(tmp_path):
    finish("dbbench.cli", "dataset", "--source", "synth", "--rows", "3000000", "--out", "ds", cwd=tmp_path)
    dsn = f"chdb:///{tmp_path}/ch"
    load = ("load", "--engine", "clickhouse", "--data", "ds", "--dsn", dsn, "--batch-rows", "100000")
    query = ("query", "--engine", "clickhouse", "--data", "ds", "--dsn", dsn, "--query", "vwap")
    finish("dbbench.cli", *load, cwd=tmp_path)
    finish("dbbench.cli", *query, cwd=tmp_path)
    started = time.time()
    store = tmp_path / "ch"

    def loading() -> bool:  # rows are arriving: megabytes of new parts (merges of the small tables write less)
        new = 0
        for folder, _, names in os.walk(store):  # walks past parts renamed or removed as it looks
            for name in names:
                try:
                    info = os.stat(os.path.join(folder, name))
                except FileNotFoundError:
                    continue
                new += info.st_size if info.st_mtime > started else 0
        return new > 2**20

    kill_when(start("dbbench.cli", *load, cwd=tmp_path), loading)
    proc = start("dbbench.cli", *query, cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 4 and "not (completely) loaded" in err.decode() and not out
    finish("dbbench.cli", *load, cwd=tmp_path)  # the next load starts clean
    finish("dbbench.cli", *query, cwd=tmp_path)  # exit 0: the answer matches the reference again
