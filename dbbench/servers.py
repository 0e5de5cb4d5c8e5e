"""Start and stop native database servers on loopback, with scratch data directories (no Docker needed).

`dbbench servers up|down|status` starts PostgreSQL 15 (`initdb` in a scratch directory, with
pg_stat_statements and, when installed, timescaledb preloaded), InfluxDB 1.x
(`influxd` with a generated config) and kdb+ (`q -p PORT`, only when licensed), each on a free
127.0.0.1 port. A state file in the run directory ($DBBENCH_SERVERS_DIR, default
~/.cache/dbbench/servers) records pids, ports and DSNs, so that `status` and `down` work from
another process and `up` reuses servers that are already running.

What is particular to an engine lives in its folder, `dbbench/engines/<engine>/server.py` (see
`lifecycle`; InfluxDB's config template beside it): this module has no per-engine branches. Ready means
the engine's own check passes (`Engine.ready`: a real query answered on a fresh connection).
"""

from __future__ import annotations

import importlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType

import orjson
import typer

from data_loaders.atomic import write_bytes
from data_loaders.errors import ENGINE, USAGE, fail
from data_loaders.summary import print_summary
from dbbench.engines import adapter

SERVER_ENGINES = ("timescaledb", "influxdb", "kdb")
EMBEDDED = {"clickhouse": "through chDB, DSN chdb:///path", "duckdb": "in this process, DSN duckdb:///path/to/file.duckdb",
            "arcticdb": "on LMDB, DSN lmdb:///path"}  # engines that run inside the benchmark's process
# What each engine exports for the tests and benchmarks (`up --export`).
DSN_ENV = {"timescaledb": "DBBENCH_TIMESCALEDB_DSN", "influxdb": "DBBENCH_INFLUXDB_DSN", "kdb": "DBBENCH_KDB_DSN"}
DOCKER_HINT = "with Docker: docker compose -f docker/compose.yml up -d"  # + the compose service
PROFILES = ("default", "tuned")  # each server's own defaults, or the settings its server.py documents as tuned


def machine_memory() -> int:
    """Physical memory in bytes: what the tuned profiles size their caches from."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ServerError(RuntimeError):
    """A server that cannot be started, with the reason (missing binary and its Debian package, log tail)."""


@dataclass
class Server:
    engine: str
    pid: int
    port: int
    dsn: str
    data_dir: str  # scratch directory, removed by `down`
    log: str
    binary: str
    profile: str = "default"
    settings: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {value, source}: set beyond defaults


def run_dir() -> Path:
    return Path(os.environ.get("DBBENCH_SERVERS_DIR", Path.home() / ".cache" / "dbbench" / "servers"))


def _state_path(directory: Path) -> Path:
    return directory / "state.json"


def read_state(directory: Path | None = None) -> dict[str, Server]:
    path = _state_path(directory or run_dir())
    if not path.exists():
        return {}
    return {engine: Server(**fields) for engine, fields in orjson.loads(path.read_bytes()).items()}


def _write_state(directory: Path, servers: dict[str, Server]) -> None:
    write_bytes(_state_path(directory), orjson.dumps({e: asdict(s) for e, s in servers.items()},
                                                      option=orjson.OPT_INDENT_2))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(server: Server) -> bool:
    """The recorded pid still runs the recorded binary (not a zombie, not a reused pid)."""
    proc = Path(f"/proc/{server.pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X") and Path(cmdline).name == Path(server.binary).name


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def lifecycle(engine: str) -> ModuleType:
    """The engine's server module (`dbbench/engines/<engine>/server.py`): `binary()` finds what it runs (or raises
    ServerError with how to install it), `start(directory)` starts it and waits until it answers, `STOP_SIGNAL`
    shuts it down cleanly."""
    return importlib.import_module(f"dbbench.engines.{engine}.server")


def available() -> dict[str, str | None]:
    """Engine -> None when it can be started here, else the reason it cannot."""
    reasons: dict[str, str | None] = {}
    for engine in SERVER_ENGINES:
        try:
            lifecycle(engine).binary()
            reasons[engine] = None
        except ServerError as exc:
            reasons[engine] = str(exc)
    return reasons


# --- what every engine's server module uses ----------------------------------------------------


def spawn(argv: list[str], log: Path, cwd: Path, user: str | None = None) -> subprocess.Popen:
    """Detached from our session and our stdout, so it outlives `eval "$(dbbench servers up --export)"`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
            user=user,
        )


def wait_ready(engine: str, proc: subprocess.Popen, log: Path, dsn: str) -> None:
    """Until the engine's own ready check passes: a real query answered on a fresh connection to `dsn`, not
    just a listening port (PostgreSQL listens while it still refuses connections, starting or recovering)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    check, last = adapter(engine).ready, ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{engine}: server exited with code {proc.returncode} while starting; "
                              f"log {log}:\n{_log_tail(log)}")
        try:
            check(dsn)
            return
        except Exception as exc:  # noqa: BLE001 - every driver raises its own while the server starts
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    stop_pid(proc.pid, lifecycle(engine).STOP_SIGNAL)
    raise ServerError(f"{engine}: not ready after {START_TIMEOUT_S:.0f} s (last: {last}); log {log}:\n"
                      f"{_log_tail(log)}")


def scratch_dir(directory: Path, engine: str, owner: str | None) -> Path:
    """Under the run dir, except when a root-run server drops to `owner`, who cannot enter /root."""
    if owner is None:
        path = directory / engine
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path
    path = Path(tempfile.mkdtemp(prefix=f"dbbench-{engine}-"))
    entry = pwd.getpwnam(owner)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def restart(server: Server) -> Server:
    """Clean shutdown, then the same command line on the same data, waited for as after `up`
    (cold runs: the server's own caches start empty)."""
    proc = Path(f"/proc/{server.pid}")
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    cwd, uid = Path(os.readlink(proc / "cwd")), proc.stat().st_uid
    user = pwd.getpwuid(uid).pw_name if uid != os.geteuid() else None
    stop_pid(server.pid, lifecycle(server.engine).STOP_SIGNAL)
    started = spawn(argv, Path(server.log), cwd, user)
    wait_ready(server.engine, started, Path(server.log), server.dsn)
    restarted = replace(server, pid=started.pid)
    state = read_state()
    state[server.engine] = restarted
    _write_state(run_dir(), state)
    return restarted


# --- up / down / status ------------------------------------------------------------------------


def _check_engines(engines: Sequence[str]) -> None:
    unknown = [e for e in engines if e not in SERVER_ENGINES]
    if unknown:
        embedded = [e for e in unknown if e in EMBEDDED]
        hint = f" ({'; '.join(f'{e} runs embedded {EMBEDDED[e]}, and needs no server' for e in embedded)})"
        hint = hint if embedded else ""
        raise ServerError(f"no native server for {', '.join(unknown)}; choose from {', '.join(SERVER_ENGINES)}{hint}")


def up(engines: Sequence[str], directory: Path | None = None, profile: str = "default") -> dict[str, Server]:
    """Start each engine's server with `profile`'s settings unless the state file shows it already running
    (then reuse it; one running with another profile is an error: stop it first)."""
    _check_engines(engines)
    if profile not in PROFILES:
        raise ServerError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    directory = directory or run_dir()
    state = read_state(directory)
    started: dict[str, Server] = {}
    for engine in engines:
        current = state.get(engine)
        if current and alive(current) and _port_open(current.port):
            if current.profile != profile:
                raise ServerError(f"{engine} runs with profile {current.profile!r}, not {profile!r}: "
                                  f"`dbbench servers down --engines {engine}` first")
            started[engine] = current
            continue
        if current:  # stale entry: the server died; its scratch dir is garbage
            _remove_scratch(current)
        try:
            state[engine] = started[engine] = lifecycle(engine).start(directory, profile)
        except OSError as exc:  # e.g. a binary its server user may not run, a full disk
            raise ServerError(f"{engine}: cannot start: {exc}") from exc
        _write_state(directory, state)
    return started


def stop_pid(pid: int, sig: int) -> bool:
    """Signal, wait for exit (reaping it if it is our child), SIGKILL after STOP_TIMEOUT_S. True if it was running."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:  # not our child: poll until it is gone
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def _remove_scratch(server: Server) -> None:
    shutil.rmtree(server.data_dir, ignore_errors=True)


def stop(server: Server) -> bool:
    """Stop one server cleanly and remove its scratch directory; True if it was running."""
    was_running = alive(server) and stop_pid(server.pid, lifecycle(server.engine).STOP_SIGNAL)
    _remove_scratch(server)
    return was_running


def down(engines: Sequence[str] | None = None, directory: Path | None = None) -> dict[str, bool]:
    """Stop the recorded servers (all, or those named): engine -> whether it was running."""
    directory = directory or run_dir()
    state = read_state(directory)
    if engines is not None:
        _check_engines(engines)
    stopped = {}
    for engine in [e for e in (engines or list(state)) if e in state]:
        stopped[engine] = stop(state.pop(engine))
        _write_state(directory, state)
    return stopped


def status(directory: Path | None = None) -> dict[str, dict]:
    """Each recorded server with whether it is alive and listening."""
    return {
        engine: {**asdict(s), "running": alive(s) and _port_open(s.port)}
        for engine, s in read_state(directory or run_dir()).items()
    }


def export_lines(servers: dict[str, Server]) -> list[str]:
    """Shell lines for `eval`: the DSN of each server (plus KDB_HOST/KDB_PORT for kdb)."""
    lines = [f"export {DSN_ENV[e]}={shlex.quote(s.dsn)}" for e, s in servers.items()]
    if "kdb" in servers:
        lines.append(f"export KDB_HOST=127.0.0.1 KDB_PORT={servers['kdb'].port}")
    return lines


# --- CLI (mounted by dbbench.cli as `dbbench servers`) -----------------------------------------

servers_app = typer.Typer(help="Start, stop and list native database servers on loopback (no Docker).",
                          no_args_is_help=True)


def _parse_engines(engines: str | None) -> list[str] | None:
    return [e.strip() for e in engines.split(",") if e.strip()] if engines else None


@servers_app.command("up")
def up_cmd(
    engines: str = typer.Option(None,
                                help="Comma-separated: timescaledb,influxdb,kdb (default: every one installed here)."),
    export: bool = typer.Option(False, "--export",
                                help="Print `export DBBENCH_..._DSN=...` lines for eval in a shell."),
    profile: str = typer.Option("default", help="default (each server's own settings) or tuned (the settings "
                                "documented in each engine's server.py, each with its source)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Start the servers (reusing running ones) and print their DSNs."""
    if profile not in PROFILES:
        fail(f"dbbench servers up: unknown --profile {profile!r}; choose from {', '.join(PROFILES)}", USAGE)
    chosen = _parse_engines(engines)
    skipped: dict[str, str] = {}
    servers: dict[str, Server] = {}
    if chosen is None:  # every engine installed here; one that cannot start is skipped with the reason
        for engine, reason in available().items():
            try:
                if reason:
                    raise ServerError(reason)
                servers.update(up([engine], profile=profile))
            except ServerError as exc:
                skipped[engine] = str(exc)
    else:
        try:
            servers = up(chosen, profile=profile)
        except ServerError as exc:
            fail(f"dbbench servers up: {exc}", ENGINE)
    for engine, reason in skipped.items():
        typer.echo(f"dbbench servers up: skipped {engine}: {reason}", err=True)
    if export:
        typer.echo("\n".join(export_lines(servers)))
        return
    print_summary(
        "servers up",
        {"servers": {e: s.dsn for e, s in servers.items()}, "profile": profile,
         "settings": {e: {k: v["value"] for k, v in s.settings.items()} for e, s in servers.items() if s.settings},
         "skipped": {e: r for e, r in skipped.items()}, "run_dir": str(run_dir())},
        as_json,
    )


@servers_app.command("down")
def down_cmd(
    engines: str = typer.Option(None, help="Comma-separated engines to stop (default: all recorded)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Stop the servers cleanly and remove their scratch data directories."""
    try:
        stopped = down(_parse_engines(engines))
    except ServerError as exc:
        fail(f"dbbench servers down: {exc}", ENGINE)
    print_summary("servers down",
                  {"stopped": {e: ("stopped" if was else "was-not-running") for e, was in stopped.items()}}, as_json)


@servers_app.command("status")
def status_cmd(as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")) -> None:
    """List the recorded servers, their DSNs and whether they are running."""
    current = status()
    if as_json:
        print_summary("servers status", {"servers": current, "run_dir": str(run_dir())}, True)
        return
    print_summary(
        "servers status",
        {"servers": {e: f"{s['dsn']} ({'running' if s['running'] else 'stopped'}, pid {s['pid']})"
                     for e, s in current.items()},
         "run_dir": str(run_dir())},
    )
