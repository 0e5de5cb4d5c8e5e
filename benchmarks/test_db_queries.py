"""One benchmark per (engine, query), grouped by query; every benchmark checks its answer against Polars."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from dbbench.engines.base import Engine
from dbbench.queries import compare, params_for


def test_query(benchmark: Any, db_engine: Engine, query: str, db_params: dict[str, Any],
               db_reference: Callable[[str], pl.DataFrame], pytestconfig: pytest.Config) -> None:
    benchmark.group = query
    benchmark.extra_info.update(engine=db_engine.name, version=db_engine.version(), query=query)
    try:
        answer = benchmark.pedantic(db_engine.query, args=(query, params_for(query, db_params)), warmup_rounds=1,
                                    iterations=1, rounds=pytestconfig.getoption("--db-rounds"))
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    verdict = compare(answer, db_reference(query), query)
    benchmark.extra_info["verdict"] = str(verdict)
    assert verdict.ok, f"{db_engine.name} {query}: {verdict}"
