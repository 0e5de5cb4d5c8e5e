"""InfluxDB 1.x on loopback for `dbbench servers`: influxd with the config beside this file
(influxdb.conf: meta, data and WAL in a scratch directory, HTTP on loopback, compaction within seconds)."""

from __future__ import annotations

import shutil
import signal
from importlib.resources import files
from pathlib import Path

from dbbench.engines.dialect import fill
from dbbench.servers import DOCKER_HINT, Server, ServerError, free_port, machine_memory, scratch_dir, spawn, wait_ready

STOP_SIGNAL = signal.SIGTERM


def binary() -> Path:
    found = shutil.which("influxd")
    if not found:
        raise ServerError(f"influxdb: influxd not found on PATH: install the Debian package influxdb "
                          f"(apt-get install influxdb), or {DOCKER_HINT} influxdb")
    return Path(found)


DOCS = "InfluxDB 1.x configuration docs, [data]"
DEFAULTS = {"cache_max_memory_size": "1g", "cache_snapshot_memory_size": "25m"}  # influxd's own


def profile_settings(profile: str) -> dict[str, dict[str, str]]:
    """What `profile` sets beyond influxd's defaults (the cache: 1g per shard before writes are
    refused, snapshots to TSM every 25m), each with its source; sized from this machine's memory."""
    if profile == "default":
        return {}
    return {
        "cache_max_memory_size": {"value": f"{machine_memory() // 4 // 2**20}m",
                                  "source": f"{DOCS} cache-max-memory-size: a bulk load must not hit the 1g cap; "
                                            "25% of the memory, as for PostgreSQL's shared_buffers"},
        "cache_snapshot_memory_size": {"value": "256m",
                                       "source": f"{DOCS} cache-snapshot-memory-size: fewer, larger TSM files "
                                                 "written during a bulk load"},
    }


def start(directory: Path, profile: str = "default") -> Server:
    """InfluxDB 1.x with influxdb.conf filled in (meta, data, wal in the scratch dir; the cache of
    `profile`), waited for until it answers."""
    influxd = binary()
    scratch = scratch_dir(directory, "influxdb", None)
    port, rpc_port = free_port(), free_port()
    config, log = scratch / "influxdb.conf", scratch / "influxd.log"
    template = (files(__package__) / "influxdb.conf").read_text()
    settings = profile_settings(profile)
    cache = {**DEFAULTS, **{name: setting["value"] for name, setting in settings.items()}}
    config.write_text(fill(template, {"scratch": scratch, "port": port, "rpc_port": rpc_port, **cache}))
    proc = spawn([str(influxd), "-config", str(config)], log, scratch)
    server = Server("influxdb", proc.pid, port, f"influxdb://127.0.0.1:{port}/dbbench", str(scratch), str(log),
                    str(influxd), profile, settings)
    wait_ready("influxdb", proc, log, server.dsn)
    return server
