"""InfluxDB 1.x on loopback for `dbbench servers`: influxd with the config beside this file
(influxdb.conf: meta, data and WAL in a scratch directory, HTTP on loopback, compaction within seconds)."""

from __future__ import annotations

import shutil
import signal
from importlib.resources import files
from pathlib import Path

from dbbench.engines.dialect import fill
from dbbench.servers import DOCKER_HINT, Server, ServerError, free_port, scratch_dir, spawn, wait_ready

STOP_SIGNAL = signal.SIGTERM


def binary() -> Path:
    found = shutil.which("influxd")
    if not found:
        raise ServerError(f"influxdb: influxd not found on PATH: install the Debian package influxdb "
                          f"(apt-get install influxdb), or {DOCKER_HINT} influxdb")
    return Path(found)


def start(directory: Path) -> Server:
    """InfluxDB 1.x with influxdb.conf filled in (meta, data, wal in the scratch dir), waited for until it answers."""
    influxd = binary()
    scratch = scratch_dir(directory, "influxdb", None)
    port, rpc_port = free_port(), free_port()
    config, log = scratch / "influxdb.conf", scratch / "influxd.log"
    template = (files(__package__) / "influxdb.conf").read_text()
    config.write_text(fill(template, {"scratch": scratch, "port": port, "rpc_port": rpc_port}))
    proc = spawn([str(influxd), "-config", str(config)], log, scratch)
    server = Server("influxdb", proc.pid, port, f"influxdb://127.0.0.1:{port}/dbbench", str(scratch), str(log),
                    str(influxd))
    wait_ready("influxdb", proc, log, server.dsn)
    return server
