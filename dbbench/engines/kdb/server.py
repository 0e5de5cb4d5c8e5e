"""kdb+ on loopback for `dbbench servers`: `q -p PORT` in a scratch directory, only with a licensed q."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from dbbench.servers import Server, ServerError, free_port, scratch_dir, spawn, wait_ready

STOP_SIGNAL = signal.SIGTERM


def binary() -> Path:
    """A q executable with a kdb+ license next to it (QHOME/QLIC); kdb+ is not packaged by Debian."""
    qhome = Path(os.environ.get("QHOME", Path.home() / "q"))
    found = shutil.which("q") or next((str(p) for p in (qhome / "l64" / "q", qhome / "l64arm" / "q") if p.exists()),
                                      None)
    if not found:
        raise ServerError(
            "kdb: no q executable on PATH or in $QHOME/l64: kdb+ is not a Debian package; install it from KX "
            "(https://kx.com) with a license, point KDB_HOST/KDB_PORT at a running q, "
            "or with Docker: docker compose -f docker/compose.yml --profile kdb up -d kdb"
        )
    lic_dirs = [Path(os.environ["QLIC"])] if "QLIC" in os.environ else []
    lic_dirs += [qhome, Path(found).resolve().parent.parent]
    if not any((d / name).exists() for d in lic_dirs for name in ("kc.lic", "k4.lic", "kx.lic")):
        raise ServerError(f"kdb: {found} found but no license (kc.lic/k4.lic/kx.lic) in QLIC or QHOME ({qhome})")
    return Path(found)


def start(directory: Path, profile: str = "default") -> Server:
    """kdb+: `q -p PORT` in the scratch dir (where the engine saves its splayed tables); q has no
    tuned profile (its memory is the process's), so both profiles start it the same."""
    q = binary()
    scratch = scratch_dir(directory, "kdb", None)
    port, log = free_port(), scratch / "q.log"
    proc = spawn([str(q), "-p", f"127.0.0.1:{port}"], log, scratch)
    server = Server("kdb", proc.pid, port, f"kdb://127.0.0.1:{port}", str(scratch), str(log), str(q), profile)
    wait_ready("kdb", proc, log, server.dsn)
    return server
