"""Native servers: up/status/down round trip from separate processes, idempotent up, clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import psycopg
import pytest
import requests

from dbbench import servers
from dbbench.engines.base import EngineError

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
        servers.lifecycle("influxdb").binary()
    with pytest.raises(servers.ServerError, match="kdb\\+ is not a Debian package"):
        servers.lifecycle("kdb").binary()
    monkeypatch.setattr(servers.lifecycle("timescaledb"), "PG_BIN", tmp_path)
    with pytest.raises(servers.ServerError, match="postgresql-15"):
        servers.lifecycle("timescaledb").binary()
    result = _cli(["up", "--engines", "kdb"], tmp_path)
    assert result.returncode == 4 and "kdb:" in result.stderr and "Traceback" not in result.stderr


def test_q_without_a_license_is_refused(tmp_path: Path, monkeypatch):
    q = tmp_path / "l64" / "q"
    q.parent.mkdir()
    q.write_text("#!/bin/sh\n")
    q.chmod(0o755)
    monkeypatch.setenv("QHOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("QLIC", raising=False)
    with pytest.raises(servers.ServerError, match="no license"):
        servers.lifecycle("kdb").binary()
    (tmp_path / "kc.lic").write_text("x")
    assert servers.lifecycle("kdb").binary() == q


@pytest.mark.server
def _broken_postgres(directory: Path) -> Path:
    """PostgreSQL's tools, installed but failing: initdb exits 1 with a message."""
    directory.mkdir(exist_ok=True)
    for tool in ("initdb", "postgres"):
        (directory / tool).write_text("#!/bin/sh\necho 'this installation is broken' >&2\nexit 1\n")
        (directory / tool).chmod(0o755)
    directory.chmod(0o755)
    return directory


@pytest.mark.server
def test_up_without_engines_starts_what_it_can_and_skips_the_rest_with_install_hints(tmp_path: Path):
    _need("influxdb")
    reachable = _broken_postgres(Path(tempfile.mkdtemp(prefix="dbbench-broken-postgres-")))
    # As root, PostgreSQL's tools run as the postgres user, who cannot enter pytest's tmp_path.
    unreachable = _broken_postgres(tmp_path / "unreachable")
    cases = {tmp_path / "missing": ("apt-get install postgresql", "docker compose -f docker/compose.yml"),
             reachable: ("initdb failed", "this installation is broken"),
             unreachable: ("cannot start", "Permission denied") if os.geteuid() == 0 else ("initdb failed",)}
    try:
        for pg_bin, expected in cases.items():
            env = {**os.environ, "DBBENCH_SERVERS_DIR": str(tmp_path / "run"), "DBBENCH_PG_BIN": str(pg_bin)}
            up = subprocess.run(CLI + ["up", "--json"], capture_output=True, text=True, env=env,
                                cwd=Path(__file__).parents[1], timeout=120, check=False)
            try:
                assert up.returncode == 0, up.stderr
                summary = orjson.loads(up.stdout)
                assert "influxdb" in summary["servers"]
                reason = summary["skipped"]["timescaledb"]
                assert all(text in reason for text in expected), reason
                assert "skipped timescaledb" in up.stderr
            finally:
                assert _cli(["down"], tmp_path / "run").returncode == 0
            assert servers.read_state(tmp_path / "run") == {}
    finally:
        shutil.rmtree(reachable)


@pytest.mark.server
def test_restart_returns_only_when_the_server_answers_a_real_query(tmp_path: Path, monkeypatch):
    _need("timescaledb")
    _need("influxdb")
    monkeypatch.setenv("DBBENCH_SERVERS_DIR", str(tmp_path))
    started = servers.up(["timescaledb", "influxdb"])
    try:
        for _ in range(3):  # straight after each restart, no retry: a query must succeed
            pg = servers.restart(servers.read_state()["timescaledb"])
            with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            influx = servers.restart(servers.read_state()["influxdb"])
            answer = requests.get(f"http://127.0.0.1:{influx.port}/query", params={"q": "SHOW DATABASES"}, timeout=5)
            assert answer.status_code == 200
        assert servers.read_state()["timescaledb"].pid != started["timescaledb"].pid
    finally:
        servers.down()


@pytest.mark.parametrize("engine,dsn,error", [
    ("timescaledb", "postgresql://postgres@127.0.0.1:{port}/postgres", psycopg.OperationalError),
    ("influxdb", "influxdb://127.0.0.1:{port}/dbbench", EngineError)])
def test_ready_needs_a_query_answered_not_an_open_port(engine: str, dsn: str, error: type):
    """A port that accepts connections and then says nothing (as PostgreSQL's does while it starts) is not ready."""
    import socket
    import threading

    from dbbench.engines import adapter

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hang_up() -> None:
            for _ in range(4):  # every attempt of the driver: accepted, then closed unanswered
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        with pytest.raises(error):
            adapter(engine).ready(dsn.format(port=port))


@pytest.mark.server
def test_tuned_profile_sets_documented_settings_the_server_then_reports(tmp_path: Path, monkeypatch):
    _need("timescaledb")
    _need("influxdb")
    up = _cli(["up", "--engines", "timescaledb,influxdb", "--profile", "tuned", "--json"], tmp_path)
    assert up.returncode == 0, up.stderr
    summary = orjson.loads(up.stdout.strip().splitlines()[-1])
    state = servers.read_state(tmp_path)
    try:
        pg, influx = state["timescaledb"], state["influxdb"]
        assert summary["profile"] == "tuned" and pg.profile == influx.profile == "tuned"
        assert all(s["source"] for s in {**pg.settings, **influx.settings}.values())  # each setting says why
        expected_mb = servers.machine_memory() // 2**20 // 4
        with psycopg.connect(pg.dsn) as conn:
            shared = conn.execute("SELECT setting::bigint * 8192 / 1048576 FROM pg_settings "
                                  "WHERE name = 'shared_buffers'").fetchone()[0]
            shown = conn.execute("SHOW shared_buffers").fetchone()[0]  # e.g. 6GB
        assert shared == expected_mb  # the server runs with what the profile set, not 128MB
        from dbbench.engines import connect

        engine = connect("timescaledb", pg.dsn)  # and the results record it
        try:
            assert engine.settings()["server"]["shared_buffers"] == f"{shown} (configuration file)"  # its unit too
        finally:
            engine.close()
        config = (Path(influx.data_dir) / "influxdb.conf").read_text()
        assert f'cache-max-memory-size = "{influx.settings["cache_max_memory_size"]["value"]}"' in config
        engine = connect("influxdb", influx.dsn)  # the server reports the cache it runs with, recorded in results
        try:
            reported = engine.settings()["server"]
        finally:
            engine.close()
        assert reported["cache-snapshot-memory-size"] == 256 * 2**20
        assert reported["cache-max-memory-size"] == int(influx.settings["cache_max_memory_size"]["value"][:-1]) * 2**20
        host = influx.dsn.replace("influxdb://", "http://").rsplit("/", 1)[0]
        assert requests.get(f"{host}/ping", timeout=5).status_code == 204
        # a run's results name the profile its server ran with
        from dbbench.dataset import build_synth
        from dbbench.runner import RunConfig, run

        monkeypatch.setenv("DBBENCH_SERVERS_DIR", str(tmp_path))
        build_synth(tmp_path / "ds", 3_000)
        res = run(RunConfig(data=tmp_path / "ds", engines=["influxdb"], dsns={"influxdb": influx.dsn},
                            queries=("vwap",), repeat=1, warmup=0, clients=()))
        assert res["engines"]["influxdb"]["profile"] == "tuned (dbbench servers up --profile tuned)"
        # a running server is not silently reused under another profile
        other = _cli(["up", "--engines", "influxdb", "--profile", "default"], tmp_path)
        assert other.returncode == 4 and "runs with profile 'tuned'" in other.stderr
    finally:
        _cli(["down"], tmp_path)
    bad = _cli(["up", "--engines", "influxdb", "--profile", "fast"], tmp_path)
    assert bad.returncode == 2 and "unknown --profile 'fast'" in bad.stderr


def test_default_profile_sets_nothing_beyond_the_servers_own_defaults():
    assert servers.lifecycle("timescaledb").profile_settings("default") == {}
    assert servers.lifecycle("influxdb").profile_settings("default") == {}
