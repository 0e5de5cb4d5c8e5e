"""Native servers: up/status/down round trip from separate processes, idempotent up, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import requests

from dbbench import servers

CLI = [sys.executable, "-c", "from dbbench.servers import servers_app; servers_app()"]


def _cli(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DBBENCH_SERVERS_DIR": str(run_dir)}
    return subprocess.run(CLI + args, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1],
                          timeout=120, check=False)


def _need(engine: str) -> None:
    reason = servers.available()[engine]
    if reason:
        pytest.skip(reason)


@pytest.mark.server
def test_up_export_status_down_round_trip_from_other_processes(tmp_path: Path):
    _need("timescaledb")
    _need("influxdb")
    up = _cli(["up", "--engines", "timescaledb,influxdb", "--export"], tmp_path)
    assert up.returncode == 0, up.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
    assert set(exports) == {"DBBENCH_TIMESCALEDB_DSN", "DBBENCH_INFLUXDB_DSN"}
    state = servers.read_state(tmp_path)
    try:
        with psycopg.connect(exports["DBBENCH_TIMESCALEDB_DSN"]) as conn:
            assert (conn.execute("SELECT current_database(), inet_server_addr()::text").fetchone()
                    == ("dbbench", "127.0.0.1/32"))
            assert "pg_stat_statements" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        influx = exports["DBBENCH_INFLUXDB_DSN"].replace("influxdb://", "http://").rsplit("/", 1)[0]
        assert requests.get(f"{influx}/ping", timeout=5).status_code == 204

        again = _cli(["up", "--engines", "influxdb,timescaledb", "--json"], tmp_path)  # idempotent: same servers
        assert again.returncode == 0, again.stderr
        assert {e: s.pid for e, s in servers.read_state(tmp_path).items()} == {e: s.pid for e, s in state.items()}

        status = _cli(["status"], tmp_path)
        assert status.returncode == 0 and status.stdout.count("running") == 2, status.stdout
    finally:
        down = _cli(["down"], tmp_path)
    assert down.returncode == 0 and "timescaledb=stopped" in down.stdout and "influxdb=stopped" in down.stdout
    assert servers.read_state(tmp_path) == {}
    for server in state.values():
        assert not servers.alive(server) and not Path(server.data_dir).exists()
    assert "servers=0" in _cli(["status"], tmp_path).stdout


@pytest.mark.server
def test_up_replaces_a_server_that_died(tmp_path: Path):
    _need("influxdb")
    first = servers.up(["influxdb"], tmp_path)["influxdb"]
    os.kill(first.pid, 9)
    os.waitpid(first.pid, 0)  # started by this process: reap it
    second = servers.up(["influxdb"], tmp_path)["influxdb"]
    try:
        assert second.pid != first.pid and servers.status(tmp_path)["influxdb"]["running"]
    finally:
        assert servers.down(["influxdb"], tmp_path) == {"influxdb": True}


def test_unknown_engine_and_missing_binaries_are_clear_errors(tmp_path: Path, monkeypatch):
    with pytest.raises(servers.ServerError, match="clickhouse runs embedded through chDB"):
        servers.up(["clickhouse"], tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("QHOME", str(tmp_path))
    with pytest.raises(servers.ServerError, match="Debian package influxdb"):
        servers.influxd_binary()
    with pytest.raises(servers.ServerError, match="kdb\\+ is not a Debian package"):
        servers.q_binary()
    monkeypatch.setattr(servers, "PG_BIN", tmp_path)
    with pytest.raises(servers.ServerError, match="postgresql-15"):
        servers.postgres_binaries()
    result = _cli(["up", "--engines", "kdb"], tmp_path)
    assert result.returncode == 1 and "kdb:" in result.stderr and "Traceback" not in result.stderr


def test_q_without_a_license_is_refused(tmp_path: Path, monkeypatch):
    q = tmp_path / "l64" / "q"
    q.parent.mkdir()
    q.write_text("#!/bin/sh\n")
    q.chmod(0o755)
    monkeypatch.setenv("QHOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("QLIC", raising=False)
    with pytest.raises(servers.ServerError, match="no license"):
        servers.q_binary()
    (tmp_path / "kc.lic").write_text("x")
    assert servers.q_binary() == q
