"""PostgreSQL 15 on loopback for `dbbench servers` (with TimescaleDB and pg_stat_statements preloaded
when installed): initdb in a scratch directory, trust authentication, database `dbbench`."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from dbbench.servers import (
    DOCKER_HINT,
    Server,
    ServerError,
    free_port,
    machine_memory,
    scratch_dir,
    spawn,
    stop_pid,
    wait_ready,
)

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


PG_DOCS = "PostgreSQL 15 docs, 20.4 Resource Consumption"
TUNE = "timescaledb-tune's rule (github.com/timescale/timescaledb-tune)"


def profile_settings(profile: str) -> dict[str, dict[str, str]]:
    """What `profile` sets beyond PostgreSQL's defaults (shared_buffers 128MB, work_mem 4MB,
    effective_cache_size 4GB, maintenance_work_mem 64MB, 2 parallel workers per gather), each with
    its source; sized from this machine's memory and cores."""
    if profile == "default":
        return {}
    mb, cores = machine_memory() // 2**20, os.cpu_count() or 1
    shared = mb // 4
    return {
        "shared_buffers": {"value": f"{shared}MB", "source": f"{PG_DOCS}: 25% of the memory is a reasonable start"},
        "effective_cache_size": {"value": f"{mb * 3 // 4}MB", "source": f"{TUNE}: 75% of the memory"},
        "work_mem": {"value": f"{max(4, (mb - shared) // 300)}MB",
                     "source": f"{TUNE}: (memory - shared_buffers) / (100 connections x 3)"},
        "maintenance_work_mem": {"value": f"{min(2048, mb // 16)}MB", "source": f"{TUNE}: memory / 16, at most 2GB"},
        "max_parallel_workers_per_gather": {"value": str(cores),
                                            "source": f"{PG_DOCS}: one query of a single-client benchmark may use "
                                                      "every core (default 2)"},
        "max_parallel_workers": {"value": str(cores), "source": f"{PG_DOCS}: every core (default 8, capped by them)"},
    }


def start(directory: Path, profile: str = "default") -> Server:
    """PostgreSQL 15: initdb (trust auth, loopback only) in a scratch dir, then database `dbbench`,
    with `profile`'s settings (profile_settings) in postgresql.conf."""
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
    settings = profile_settings(profile)
    conf += [f"{name} = '{setting['value']}'" for name, setting in settings.items()]
    with open(data / "postgresql.conf", "a") as f:
        f.write("\n# dbbench servers up\n" + "\n".join(conf) + "\n")
    proc = spawn([str(bin_dir / "postgres"), "-D", str(data)], log, scratch, user=owner)
    server = Server("timescaledb", proc.pid, port, f"postgresql://postgres@127.0.0.1:{port}/dbbench", str(scratch),
                    str(log), str(bin_dir / "postgres"), profile, settings)
    wait_ready("timescaledb", proc, log, f"postgresql://postgres@127.0.0.1:{port}/postgres")  # before createdb
    create = subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "dbbench"],
        capture_output=True, text=True, check=False,
    )
    if create.returncode != 0:
        stop_pid(proc.pid, STOP_SIGNAL)
        raise ServerError(f"timescaledb: createdb dbbench failed: {create.stderr.strip()}")
    return server
