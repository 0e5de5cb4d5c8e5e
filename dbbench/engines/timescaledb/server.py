"""PostgreSQL 15 on loopback for `dbbench servers` (with TimescaleDB and pg_stat_statements preloaded
when installed): initdb in a scratch directory, trust authentication, database `dbbench`."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from dbbench.servers import DOCKER_HINT, Server, ServerError, free_port, scratch_dir, spawn, stop_pid, wait_ready

PG_BIN = Path(os.environ.get("DBBENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_EXTENSIONS = Path("/usr/share/postgresql/15/extension")  # control files of the extensions to preload
STOP_SIGNAL = signal.SIGINT  # PostgreSQL's fast shutdown


def binary() -> Path:
    """The directory of PostgreSQL's tools (initdb, postgres, createdb)."""
    for tool in ("initdb", "postgres"):
        if not (PG_BIN / tool).exists():
            raise ServerError(
                f"timescaledb: {PG_BIN / tool} not found: install the Debian package postgresql-15 "
                f"(apt-get install postgresql), set DBBENCH_PG_BIN, or {DOCKER_HINT} timescaledb"
            )
    return PG_BIN


def start(directory: Path) -> Server:
    """PostgreSQL 15: initdb (trust auth, loopback only) in a scratch dir, then database `dbbench`."""
    bin_dir = binary()
    owner = None
    if os.geteuid() == 0:  # postgres refuses to run as root: run as the postgres system user
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServerError("timescaledb: running as root and no `postgres` user exists "
                              "(it comes with the Debian package postgresql-common)") from exc
        owner = "postgres"
    scratch = scratch_dir(directory, "timescaledb", owner)
    data, log, port = scratch / "data", scratch / "postgres.log", free_port()
    init = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"],
        capture_output=True, text=True, user=owner, cwd=scratch, check=False,
    )
    if init.returncode != 0:
        raise ServerError(f"timescaledb: initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
    conf = [
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{scratch}'",
    ]
    preload = [name for name in ("timescaledb", "pg_stat_statements") if (PG_EXTENSIONS / f"{name}.control").exists()]
    if preload:
        conf.append(f"shared_preload_libraries = '{','.join(preload)}'")
    if "timescaledb" in preload:
        conf.append("timescaledb.telemetry_level = off")
    if "pg_stat_statements" in preload:  # server time of each timed COPY ... TO STDOUT (the adapter's server_seconds)
        conf.append("pg_stat_statements.track_utility = on")
    with open(data / "postgresql.conf", "a") as f:
        f.write("\n# dbbench servers up\n" + "\n".join(conf) + "\n")
    proc = spawn([str(bin_dir / "postgres"), "-D", str(data)], log, scratch, user=owner)
    server = Server("timescaledb", proc.pid, port, f"postgresql://postgres@127.0.0.1:{port}/dbbench", str(scratch),
                    str(log), str(bin_dir / "postgres"))
    wait_ready("timescaledb", proc, log, f"postgresql://postgres@127.0.0.1:{port}/postgres")  # before createdb
    create = subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "dbbench"],
        capture_output=True, text=True, check=False,
    )
    if create.returncode != 0:
        stop_pid(proc.pid, STOP_SIGNAL)
        raise ServerError(f"timescaledb: createdb dbbench failed: {create.stderr.strip()}")
    return server
