"""A database server whose disk fills up during the load (its data directory on a small tmpfs): the
run names the engine and the step, reports nothing partial as valid, and the next run, once there
is room again, starts clean and answers correctly."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from dbbench import servers
from dbbench.dataset import build_synth
from dbbench.runner import RunConfig, run

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture
def small_disk(monkeypatch: pytest.MonkeyPatch):
    """A 160 MB tmpfs where the scratch servers put their data (initdb alone takes about 40 MB); a
    test asks for tmp_path before this, so its own files stay on the real disk."""
    disk = Path(tempfile.mkdtemp(prefix="dbbench-disk-"))  # not under tmp_path: the postgres user must enter it
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m,mode=1777", "tmpfs", str(disk)],
                           capture_output=True, text=True, check=False)
    if mount.returncode:
        reason = f"cannot mount a small tmpfs here ({mount.stderr.strip()}): needs root"
        disk.rmdir()
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    monkeypatch.setattr(tempfile, "tempdir", str(disk))  # root-run servers make their scratch dirs there
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
        disk.rmdir()


def test_postgresql_out_of_disk_mid_load_is_a_named_failure_and_the_next_run_starts_clean(tmp_path, small_disk):
    reason = servers.available()["timescaledb"]
    if reason:
        pytest.skip(f"no scratch PostgreSQL can start: {reason}")
    data = tmp_path / "ds"
    build_synth(data, 1_500_000, seed=5)
    server = servers.lifecycle("timescaledb").start(tmp_path / "pg")
    try:
        assert Path(server.data_dir).is_relative_to(small_disk)
        config = RunConfig(data=data, engines=["timescaledb"], dsns={"timescaledb": server.dsn},
                           queries=["vwap", "last_quote"], repeat=1, warmup=0)
        res = run(config)["engines"]["timescaledb"]
        assert res["status"] == "failed"
        failure = res["failures"][0]
        assert failure["step"].startswith("load ") and "Check free disk space" in failure["error"]
        assert not any(load["valid"] for load in res["load"])
        assert all(not q["valid"] for q in res["queries"].values())

        subprocess.run(["mount", "-o", "remount,size=2g", str(small_disk)], check=True)
        if not servers.alive(server):  # a PANIC on a full WAL ends the server: start it on the same data
            server = servers.restart(server)
        res = run(config)["engines"]["timescaledb"]
        assert res["status"] == "ok", res.get("reason")
        assert all(q["valid"] and q["verdict"].startswith("correct") for q in res["queries"].values()), res["queries"]
    finally:
        servers.stop(server)


def test_influxdb_out_of_disk_mid_load_is_a_named_failure_and_the_next_run_starts_clean(tmp_path, small_disk):
    reason = servers.available()["influxdb"]
    if reason:
        pytest.skip(f"no scratch InfluxDB can start: {reason}")
    data = tmp_path / "ds"
    build_synth(data, 1_500_000, seed=5)
    server = servers.up(["influxdb"], small_disk / "run")["influxdb"]
    try:
        assert Path(server.data_dir).is_relative_to(small_disk)
        free = os.statvfs(small_disk)
        filler = small_disk / "filler"  # InfluxDB's compressed load would fit in 160 MB: leave it 16 MB
        filler.write_bytes(bytes(free.f_bavail * free.f_frsize - 16 * 2**20))
        config = RunConfig(data=data, engines=["influxdb"], dsns={"influxdb": server.dsn},
                           queries=["vwap", "last_quote"], repeat=1, warmup=0)
        res = run(config)["engines"]["influxdb"]
        assert res["status"] == "failed"
        failure = res["failures"][0]
        assert failure["step"].startswith("load ") and "no space left on device" in failure["error"].lower()
        assert not any(load["valid"] for load in res["load"])
        assert all(not q["valid"] for q in res["queries"].values())

        filler.unlink()
        res = run(config)["engines"]["influxdb"]
        assert res["status"] == "ok", res.get("reason")
        assert all(q["valid"] and q["verdict"].startswith("correct") for q in res["queries"].values()), res["queries"]
    finally:
        servers.down(["influxdb"], small_disk / "run")
