"""One benchmark per engine's load of the whole dataset (schema recreated before each round)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.conftest import load_all, name_measured
from dbbench.dataset import read_manifest
from dbbench.engines.base import TABLES, Engine


def test_load(benchmark: Any, engine_name: str, db_engine: Engine, db_data: Path, db_dataset_info: dict[str, Any],
              pytestconfig: pytest.Config) -> None:
    """Leaves the tables loaded again, so query benchmarks after it still see the whole dataset."""
    manifest = read_manifest(db_data)
    benchmark.group = "load"
    name_measured(benchmark, engine_name, db_engine)
    batch_rows = pytestconfig.getoption("--db-batch-rows")
    rows = benchmark.pedantic(load_all, args=(db_engine, db_data, batch_rows), rounds=1, iterations=1)
    assert rows == manifest["rows"]
    seconds = benchmark.stats.stats.max if benchmark.stats else None
    benchmark.extra_info.update(engine=db_engine.name, version=db_engine.version(), settings=db_engine.settings(),
                                **db_dataset_info, rows=sum(rows.values()), batch_rows=batch_rows,
                                bytes_on_disk={t: db_engine.storage(t).bytes for t in TABLES},
                                rows_per_s=sum(rows.values()) / seconds if seconds else None)
