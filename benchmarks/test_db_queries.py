"""One benchmark per (engine, query), grouped by query; every benchmark checks its answer against Polars."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from benchmarks.conftest import name_measured
from dbbench.engines.base import Engine
from dbbench.queries import compare, params_for


def test_query(benchmark: Any, engine_name: str, db_engine: Engine, query: str, db_params: dict[str, Any],
               db_reference: Callable[[str], pl.DataFrame], db_dataset_info: dict[str, Any],
               pytestconfig: pytest.Config) -> None:
    """The answer is checked first (it is also the warm-up): a wrong answer records no timing."""
    benchmark.group = query
    name_measured(benchmark, engine_name, db_engine)
    benchmark.extra_info.update(engine=db_engine.name, version=db_engine.version(),
                                settings=db_engine.settings(), query=query, **db_dataset_info)
    params = params_for(query, db_params)
    try:
        answer = db_engine.query(query, params)
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    verdict = compare(answer, db_reference(query), query)
    benchmark.extra_info["verdict"] = str(verdict)
    assert verdict.ok, f"{db_engine.name} {query}: {verdict}"
    benchmark.pedantic(db_engine.query, args=(query, params), iterations=1,
                       rounds=pytestconfig.getoption("--db-rounds"))
