"""The error boundary every CLI shares: one line, a documented exit code, a traceback only with --debug."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from data_loaders.errors import BAD_INPUT, ENGINE, INTERNAL, USAGE, ErrorBoundary, fail

app = typer.Typer(cls=ErrorBoundary)


@app.command()
def crash(kind: str) -> None:
    """Raise what a command could let escape."""
    if kind == "bug":
        raise ZeroDivisionError("division by zero at postgresql://bench:s3cr/et@host/db")
    if kind == "os":
        raise PermissionError(13, "Permission denied", "/read-only/out.parquet")
    if kind == "eof":
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    if kind == "engine":
        try:
            raise ConnectionError("server closed the connection")
        except ConnectionError as exc:
            fail(f"timescaledb: query vwap failed: {exc}", ENGINE)


@app.command()
def other() -> None:
    """A second command, so the app is a group as the real CLIs are."""


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["crash", "bug"], INTERNAL, "internal error (ZeroDivisionError: division by zero"),
        (["crash", "os"], BAD_INPUT, "/read-only/out.parquet: Permission denied"),
        (["crash", "eof"], BAD_INPUT, "an input ended early, truncated or corrupt"),
        (["crash", "engine"], ENGINE, "timescaledb: query vwap failed: server closed the connection"),
        (["crash"], USAGE, "Missing argument"),
        (["crash", "bug", "--bogus"], USAGE, "No such option: --bogus"),
    ],
)
def test_every_escape_is_one_line_and_a_documented_code(args, code, says):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code
    assert says in result.output
    assert "Traceback" not in result.output and "s3cr/et" not in result.output


def test_debug_anywhere_on_the_line_adds_the_traceback():
    result = CliRunner().invoke(app, ["crash", "--debug", "bug"])
    assert result.exit_code == INTERNAL
    assert "Traceback" in result.output and "ZeroDivisionError" in result.output
    assert "run again with --debug" not in result.output
    result = CliRunner().invoke(app, ["crash", "engine", "--debug"])
    assert result.exit_code == ENGINE and "ConnectionError: server closed the connection" in result.output


def test_a_real_cli_on_a_truncated_recording(tmp_path):
    whole = gzip.compress(b"1723161253000000000 {\"lastUpdateId\": 1, \"bids\": [], \"asks\": []}\n" * 200)
    truncated = tmp_path / "spot_btcusdt_20240808.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    args = [sys.executable, "-m", "data_loaders.cli", "book", str(truncated), "--out", str(tmp_path / "b.parquet")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == BAD_INPUT, done.stderr
    message = done.stderr.strip()
    assert "\n" not in message and message.startswith("error: ") and "Traceback" not in message
    assert not (tmp_path / "b.parquet").exists()
    done = subprocess.run([*args, "--debug"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == BAD_INPUT and "Traceback" in done.stderr and "EOFError" in done.stderr


@pytest.mark.parametrize("cli", ["data_loaders.cli", "hfformer.cli", "dbbench.cli"])
def test_help_documents_the_exit_codes(cli):
    done = subprocess.run([sys.executable, "-m", cli, "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0
    assert "3 bad input" in done.stdout and "--debug" in done.stdout
