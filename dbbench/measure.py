"""Timing statistics: the summary of a query's samples, and the harness overhead.

A sample (`Engine.timed_query`) has the client time, the wall time of the adapter call with the
answer as a Polars frame (what a user of the engine waits for), and the server time, what the
engine says it spent, where it says it (each adapter's `server_time_method` says how, and the
results record it). Client minus server time is the harness overhead (driver, transfer, conversion).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def stats(samples: Sequence[float]) -> dict[str, float] | None:
    """min, median, mean, p95 (linear interpolation), max and n of seconds; None when empty."""
    if not samples:
        return None
    a = np.asarray(samples, dtype=np.float64)
    return {
        "n": int(a.size),
        "min": float(a.min()),
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


def timings(client: list[float], server: list[float | None]) -> dict[str, Any]:
    """Samples, their statistics, and the harness overhead (median client minus median server time)."""
    server_s = None if not server or any(s is None for s in server) else server
    out: dict[str, Any] = {"client_s": client, "server_s": server_s, "client": stats(client),
                           "server": stats(server_s or [])}
    if out["client"] and out["server"]:
        overhead = out["client"]["median"] - out["server"]["median"]
        out["overhead_s"] = overhead
        out["overhead_pct"] = 100 * overhead / out["client"]["median"]
    else:
        out["overhead_s"] = out["overhead_pct"] = None
    return out
