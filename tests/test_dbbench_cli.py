"""The dbbench command line end to end, in subprocesses (chDB allows one database path per process)."""

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest


def dbbench(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dbbench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}, check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    done = dbbench("dataset", "--source", "synth", "--rows", "3000", "--out", "ds", "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout.splitlines()[-1])
    assert summary["command"] == "dbbench dataset" and summary["symbols"] == 3
    return cwd


def test_load_then_query_prints_answer_and_verdict(workdir):
    dsn = f"chdb:///{workdir}/ch"
    done = dbbench("load", "--engine", "clickhouse", "--data", "ds", "--dsn", dsn, "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout.splitlines()[-1])
    assert summary["trades"]["rows"] > 0 and summary["quotes"]["bytes_on_disk"] > 0
    assert summary["trades"]["rows_per_s"] > 0 and summary["trades"]["MB_per_s"] > 0
    done = dbbench("query", "--engine", "clickhouse", "--dsn", dsn, "--query", "ohlcv_1m", "--format", "csv",
                   cwd=workdir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "symbol,venue,minute,open,high,low,close,volume,trades"
    assert "verdict=correct" in lines[-1]
    done = dbbench("query", "--engine", "clickhouse", "--dsn", dsn, "--query", "last_quote", "--format", "json",
                   "--json", cwd=workdir)
    assert orjson.loads(done.stdout.splitlines()[-1])["correct"] is True
    assert len(orjson.loads(done.stdout.splitlines()[0])) == 6


def test_errors_are_clear_and_never_show_passwords(workdir):
    done = dbbench("load", "--engine", "timescaledb", "--data", "ds", "--dsn",
                   "postgresql://bench:hunter2@127.0.0.1:1/db", cwd=workdir)
    assert done.returncode == 1
    assert "hunter2" not in done.stdout + done.stderr and "bench:***@" in done.stderr
    done = dbbench("query", "--engine", "clickhouse", "--query", "nope", cwd=workdir)
    assert done.returncode == 1 and "unknown query" in done.stderr
    done = dbbench("load", "--engine", "oracle", "--data", "ds", cwd=workdir)
    assert done.returncode == 1 and "unknown engine" in done.stderr
    done = dbbench("load", "--engine", "clickhouse", "--data", "missing", cwd=workdir)
    assert done.returncode == 1 and "dataset.json" in done.stderr


def test_help_lists_the_commands(workdir):
    done = dbbench("--help", cwd=workdir)
    assert done.returncode == 0
    for command in ("dataset", "load", "query", "servers"):
        assert command in done.stdout
