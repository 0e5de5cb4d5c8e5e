"""The dbbench command line end to end, in subprocesses (chDB allows one database path per process)."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import polars as pl
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
    assert summary["trades"]["compact_seconds"] >= 0 and "MergeTree parts" in summary["trades"]["storage_includes"]
    assert summary["compaction"].startswith("OPTIMIZE TABLE")
    done = dbbench("query", "--engine", "clickhouse", "--dsn", dsn, "--query", "ohlcv_1m", "--format", "csv",
                   cwd=workdir)
    assert done.returncode == 0, done.stderr
    answer = pl.read_csv(io.StringIO(done.stdout))  # stdout is the answer alone: valid CSV to the end
    assert answer.columns == ["symbol", "venue", "minute", "open", "high", "low", "close", "volume", "trades"]
    assert answer.height > 0 and answer["close"].is_not_null().all()
    assert "verdict=correct" in done.stderr.splitlines()[-1]
    done = dbbench("query", "--engine", "clickhouse", "--dsn", dsn, "--query", "last_quote", "--format", "json",
                   "--json", cwd=workdir)
    assert orjson.loads(done.stderr.splitlines()[-1])["correct"] is True
    assert len(orjson.loads(done.stdout)) == 6


def test_query_checks_against_the_dataset_loaded_into_that_database(workdir, tmp_path):
    """Two databases of one engine hold two datasets: each query is checked against its own, and
    the time column prints as UTC datetimes (the engine stores nanosecond integers or naive times)."""
    other = dbbench("dataset", "--source", "synth", "--rows", "1000", "--seed", "3", "--out", str(tmp_path / "ds2"),
                    cwd=workdir)
    assert other.returncode == 0, other.stderr
    dsns = {"ds": f"duckdb:///{tmp_path}/a.duckdb", str(tmp_path / "ds2"): f"duckdb:///{tmp_path}/b.duckdb"}
    for data, dsn in dsns.items():
        assert dbbench("load", "--engine", "duckdb", "--data", data, "--dsn", dsn, cwd=workdir).returncode == 0
    for dsn in dsns.values():
        done = dbbench("query", "--engine", "duckdb", "--dsn", dsn, "--query", "ohlcv_1m", "--format", "csv",
                       cwd=workdir)
        assert done.returncode == 0 and "verdict=correct" in done.stderr.splitlines()[-1], done.stderr
        minute = pl.read_csv(io.StringIO(done.stdout), try_parse_dates=True)["minute"]
        assert minute.dtype == pl.Datetime("us", "UTC") or minute.dtype.time_zone == "UTC"
    done = dbbench("query", "--engine", "duckdb", "--dsn", f"duckdb:///{tmp_path}/never.duckdb", "--query", "vwap",
                   cwd=workdir)
    assert done.returncode == 2 and "no --data given" in done.stderr


def test_errors_are_clear_and_never_show_passwords(workdir):
    done = dbbench("load", "--engine", "timescaledb", "--data", "ds", "--dsn",
                   "postgresql://bench:hunter2@127.0.0.1:1/db", cwd=workdir)
    assert done.returncode == 4
    assert "hunter2" not in done.stdout + done.stderr and "bench:***@" in done.stderr
    done = dbbench("query", "--engine", "clickhouse", "--query", "nope", cwd=workdir)
    assert done.returncode == 2 and "unknown query" in done.stderr
    done = dbbench("load", "--engine", "oracle", "--data", "ds", cwd=workdir)
    assert done.returncode == 2 and "unknown engine" in done.stderr
    done = dbbench("load", "--engine", "clickhouse", "--data", "missing", cwd=workdir)
    assert done.returncode == 3 and "dataset.json" in done.stderr


def test_help_lists_the_commands(workdir):
    done = dbbench("--help", cwd=workdir)
    assert done.returncode == 0
    for command in ("dataset", "load", "query", "servers"):
        assert command in done.stdout


SECRETS = ["hunter2", "p/ss", "p@ss", "p:ss", "p%2Fss", "it's", 'say"hi"', "a/b@c:d%e'f"]


@pytest.mark.parametrize("secret", SECRETS)
def test_redact_hides_passwords_with_any_character(secret):
    from data_loaders.redact import redact

    for text in (f"postgresql://bench:{secret}@127.0.0.1:5432/db?sslmode=disable",
                 f"influxdb2://127.0.0.1:8086/bucket?org=o&token={secret}",
                 f"host=127.0.0.1 password='{secret.replace(chr(39), chr(92) + chr(39))}' user=bench"):
        shown = redact(text)
        assert secret not in shown and "***" in shown, shown


def test_run_writes_no_password_given_on_the_command_line(workdir):
    secret = "a/b@c:d%e'f"
    done = dbbench("run", "--engines", "timescaledb", "--data", "ds", "--dsn",
                   f"timescaledb=postgresql://bench:{secret}@127.0.0.1:1/db", "--out", "secret.json", cwd=workdir)
    assert done.returncode == 0, done.stderr  # the engine is skipped (nothing listens on port 1), with the reason
    results = (workdir / "secret.json").read_text()
    assert "skipped" in results and "bench:***@" in results
    assert secret not in results + done.stdout + done.stderr


def test_run_refuses_an_unwritable_results_file_before_any_work(workdir):
    blocker = workdir / "not-a-dir"
    blocker.write_text("a file where the results folder should be")
    started = time.monotonic()
    done = dbbench("run", "--engines", "clickhouse", "--data", "ds", "--out", str(blocker / "r.json"), cwd=workdir)
    assert done.returncode == 2 and "cannot write the results file" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 60  # it stopped before loading or querying anything


def test_run_names_an_unknown_query_as_a_usage_error(workdir):
    done = dbbench("run", "--engines", "clickhouse", "--data", "ds", "--queries", "vwap,foo", cwd=workdir)
    assert done.returncode == 2 and "unknown queries ['foo']" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("secret", ["a/b@c:d%e'f", 'say"hi"'])
def test_no_password_from_the_environment_reaches_errors_results_or_reports(workdir, secret):
    dsn = f"postgresql://bench:{secret}@127.0.0.1:1/db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "DBBENCH_TIMESCALEDB_DSN": dsn}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "dbbench.cli", *args], cwd=workdir, env=env,
                              capture_output=True, text=True, check=False)

    done = run("load", "--engine", "timescaledb", "--data", "ds", "--debug")  # tracebacks too
    assert done.returncode == 4 and secret not in done.stdout + done.stderr and "bench:***@" in done.stderr
    done = run("run", "--engines", "timescaledb", "--data", "ds", "--out", "env.json")
    assert done.returncode == 0 and secret not in done.stdout + done.stderr
    done = run("report", "env.json", "--out", "env-report")
    assert done.returncode == 0, done.stderr
    written = [p.read_text() for p in [workdir / "env.json", *(workdir / "env-report").iterdir()]]
    assert not [text for text in written if secret in text]


# --- bring your own data: each format -> dbbench dataset --from -> dbbench load (embedded DuckDB) ---------
def _write_ticks(frame: pl.DataFrame, path: Path, kind: str, stats: dict) -> Path:
    """A ticks Parquet file as `ticks trades|quotes` writes it (the instrument in its metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, metadata={"kind": kind, "symbol": stats["symbol"], "market": stats["market"]})
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, binance) -> dict[str, tuple[list[str], dict[str, int]]]:
    """Each format's input (command-line arguments) and the rows its trades and quotes must give."""
    from data_loaders import formats

    root = tmp_path_factory.mktemp("inputs")
    spot = binance["spot"][0]
    trades, stats = formats.read("trades", [spot])
    quotes, _ = formats.read("quotes", [spot])
    usdm_trades, usdm = formats.read("trades", binance["usdm"])
    usdm_quotes, _ = formats.read("quotes", binance["usdm"])
    ticks = root / "ticks"
    _write_ticks(usdm_trades, ticks / "trades.parquet", "trades", usdm)
    _write_ticks(usdm_quotes, ticks / "quotes.parquet", "quotes", usdm)
    head = trades.head(500)  # the CSV formats, written from the recording's first trades
    csv = root / "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("".join(f"{t},{p!r},{q!r},{p * q:.8f},{ts // 1_000_000},{s < 0},True\n"
                           for ts, _, t, p, q, s in head.iter_rows()))
    tardis = root / "binance_trades_2024-08-08_BTCUSDT.csv"
    tardis.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n" + "".join(
        f"binance,BTCUSDT,{ts // 1000},{local // 1000},{t},{'buy' if s > 0 else 'sell'},{p!r},{q!r}\n"
        for ts, local, t, p, q, s in head.iter_rows()))
    assert stats["market"] == "spot" and usdm["market"] == "usdm"
    return {
        "recording": ([str(spot)], {"trades": trades.height, "quotes": quotes.height}),
        "parquet": ([str(ticks)], {"trades": usdm_trades.height, "quotes": usdm_quotes.height}),
        "binance-csv": ([str(csv), "--format", "binance-csv"], {"trades": 500, "quotes": 0}),
        "tardis": ([str(tardis)], {"trades": 500, "quotes": 0}),
    }


def _duckdb_rows(path: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as db:
        return {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("trades", "quotes")}


@pytest.mark.parametrize("fmt", ["recording", "parquet", "binance-csv", "tardis"])
def test_each_format_becomes_a_dataset_that_loads_with_every_row(inputs, fmt, tmp_path):
    args, rows = inputs[fmt]
    done = dbbench("dataset", "--from", *args, "--out", "ds", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = orjson.loads((tmp_path / "ds" / "dataset.json").read_bytes())
    assert manifest["rows"] == rows and manifest["symbols"] == ["BTCUSDT"]
    assert manifest["venues"] == ["binance_usdm" if fmt == "parquet" else "binance_spot"]
    assert manifest["min_ts"] < manifest["max_ts"] and set(manifest["sha256"]) == {"trades", "quotes"}
    done = dbbench("load", "--engine", "duckdb", "--data", "ds", "--dsn", f"duckdb:///{tmp_path}/db.duckdb",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _duckdb_rows(tmp_path / "db.duckdb") == rows


def test_a_folder_of_ticks_parquet_loads_as_it_is(inputs, tmp_path):
    args, rows = inputs["parquet"]
    done = dbbench("load", "--engine", "duckdb", "--data", args[0], "--dsn", f"duckdb:///{tmp_path}/db.duckdb",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _duckdb_rows(tmp_path / "db.duckdb") == rows
    done = dbbench("query", "--engine", "duckdb", "--dsn", f"duckdb:///{tmp_path}/db.duckdb", "--query", "vwap",
                   "--format", "csv", cwd=tmp_path)  # the folder `load` recorded; its answer checked against its files
    assert done.returncode == 0, done.stderr
    assert pl.read_csv(io.StringIO(done.stdout)).height > 0 and "verdict=correct" in done.stderr.splitlines()[-1]
    done = dbbench("run", "--engines", "duckdb", "--data", args[0], "--queries", "ohlcv_1m,asof_trades_quotes",
                   "--repeat", "2", "--batch-rows", "20000", "--out", "r.json", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = orjson.loads((tmp_path / "r.json").read_bytes())
    identity = result["dataset"]["identity"]
    assert identity["source"] == "ticks folder" and identity["rows"] == rows and identity["digest"]
    assert set(identity["sha256"]) == {"trades.parquet", "quotes.parquet"}
    assert all(q["verdict"].startswith("correct") for q in result["engines"]["duckdb"]["queries"].values())


def test_load_refuses_a_dataset_file_changed_after_the_build(inputs, tmp_path):
    args, _ = inputs["tardis"]
    assert dbbench("dataset", "--from", *args, "--out", "ds", cwd=tmp_path).returncode == 0
    trades = pl.read_parquet(tmp_path / "ds" / "trades.parquet")
    trades.head(10).write_parquet(tmp_path / "ds" / "trades.parquet")
    done = dbbench("load", "--engine", "duckdb", "--data", "ds", "--dsn", f"duckdb:///{tmp_path}/db.duckdb",
                   cwd=tmp_path)
    assert done.returncode == 3 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "trades.parquet" in done.stderr and "sha256" in done.stderr and "build the dataset again" in done.stderr
    assert not (tmp_path / "db.duckdb").exists()  # refused before anything was loaded


def test_dataset_from_usage_errors(tmp_path):
    done = dbbench("dataset", "--out", "ds", cwd=tmp_path)
    assert done.returncode == 2 and "--from" in done.stderr
    (tmp_path / "notes.txt").write_text("hello\n")
    done = dbbench("dataset", "--from", "notes.txt", "--out", "ds", cwd=tmp_path)
    assert done.returncode == 3 and "notes.txt" in done.stderr and not (tmp_path / "ds" / "dataset.json").exists()
