"""The workload: the parameters every run of every query gets, drawn from a seeded generator (TSBS style).

A benchmark that asks the same question ten times measures a cache of that question; TSBS instead
generates its queries with random parameters from a seed, and every database runs the same file.
Here each run of a query gets its own parameters, drawn from the dataset's manifest
(dataset.json: symbols, min_ts, max_ts, rows):

- `symbol`: one of the dataset's symbols (range_scan asks about it);
- `start`/`end` (whole minutes): aggregates over a range of half the dataset's minutes (at least one),
  the per-row queries (`queries.ROW_QUERIES`) over their window of about `queries.WINDOW_ROWS` rows;
  both at a random start, so every run reads as much data as the others but not the same rows;
- `scan_start`/`scan_end`: range_scan's 5 minutes at a random start.

A draw depends only on (seed, query, phase, client, index), never on the engine or on what ran
before: every engine gets the same sequence, and concurrent clients get different parameters.
Phases: `hot` (index = warm-up and timed runs in order), `cold` (the run after a restart),
`concurrent` (index 0 for each client's one set per query: a client that runs for a set time
repeats its list, as TSBS's runner replays a finite query file).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dbbench.dataset import describe
from dbbench.engines.base import QUERY_NAMES
from dbbench.queries import MINUTE_NS, ROW_QUERIES, SCAN_NS, default_params

PHASES = ("hot", "cold", "concurrent")
DEFAULT_SEED = 42
RANGE_FRACTION = 0.5  # of the dataset's minutes, for the aggregates


@dataclass(frozen=True)
class Workload:
    seed: int
    start: int  # the dataset's range in whole minutes, ns
    end: int
    symbols: tuple[str, ...]
    range_minutes: int  # aggregates
    window_minutes: int  # per-row queries
    scan_minutes: int  # range_scan

    @classmethod
    def of(cls, data: Path, seed: int = DEFAULT_SEED) -> Workload:
        """The workload over a dataset, from its manifest (the per-row window as `default_params` sizes it)."""
        manifest, p = describe(data), default_params(data)
        minutes = (p["end"] - p["start"]) // MINUTE_NS
        return cls(seed=seed, start=p["start"], end=p["end"], symbols=tuple(sorted(manifest["symbols"])),
                   range_minutes=max(1, int(minutes * RANGE_FRACTION)),
                   window_minutes=(p["window_end"] - p["window_start"]) // MINUTE_NS,
                   scan_minutes=SCAN_NS // MINUTE_NS)

    def params(self, query: str, phase: str, index: int, client: int = 0) -> dict[str, Any]:
        """The parameters of one run: `start`/`end` already the ones this query reads (no `params_for` needed)."""
        rng = np.random.default_rng([self.seed, QUERY_NAMES.index(query), PHASES.index(phase), client, index])
        minutes = (self.end - self.start) // MINUTE_NS
        length = self.window_minutes if query in ROW_QUERIES else self.range_minutes
        start = self.start + int(rng.integers(0, max(0, minutes - length) + 1)) * MINUTE_NS
        scan = self.start + int(rng.integers(0, max(0, minutes - self.scan_minutes) + 1)) * MINUTE_NS
        return {"start": start, "end": start + length * MINUTE_NS,
                "symbol": self.symbols[int(rng.integers(0, len(self.symbols)))],
                "scan_start": scan, "scan_end": scan + self.scan_minutes * MINUTE_NS}

    def hot(self, query: str, runs: int) -> list[dict[str, Any]]:
        """Warm-up and timed runs of one query, in order."""
        return [self.params(query, "hot", i) for i in range(runs)]

    def client(self, queries: list[str], k: int) -> list[tuple[str, dict[str, Any]]]:
        """Client k's list: every query once, starting at a different one for each client, each with k's parameters."""
        order = [queries[(k + i) % len(queries)] for i in range(len(queries))]
        return [(q, self.params(q, "concurrent", 0, client=k)) for q in order]

    def describe(self) -> dict[str, Any]:
        """What the results record: enough to draw the same parameters again."""
        return {**asdict(self), "symbols": list(self.symbols), "generator": "numpy default_rng("
                "[seed, query index, phase index, client, run index]); dbbench.workload", "phases": list(PHASES)}
