"""The seeded workload: each run its own parameters, the same sequence for every engine, clients apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbbench.dataset import build_synth, read_manifest
from dbbench.engines.base import QUERY_NAMES
from dbbench.queries import MINUTE_NS, ROW_QUERIES
from dbbench.runner import RunConfig, run
from dbbench.workload import Workload


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("workload")
    build_synth(out, 50_000, symbols=("BTCUSDT", "ETHUSDT"))  # 10 minutes (synth gives exactly the rows asked)
    return out


def test_draws_are_seeded_and_stay_in_the_dataset(data: Path) -> None:
    workload, manifest = Workload.of(data, seed=7), read_manifest(data)
    assert Workload.of(data, seed=7).hot("vwap", 20) == workload.hot("vwap", 20)  # a new generator, same draws
    assert Workload.of(data, seed=8).hot("vwap", 20) != workload.hot("vwap", 20)
    assert workload.hot("vwap", 20) != workload.hot("spread", 20)  # each query its own sequence
    for q in QUERY_NAMES:
        draws = workload.hot(q, 20)
        assert len({tuple(sorted(p.items())) for p in draws}) >= 5  # runs differ, not one fixed set
        assert {p["symbol"] for p in draws} == set(manifest["symbols"])
        length = workload.window_minutes if q in ROW_QUERIES else workload.range_minutes
        for p in draws:
            assert workload.start <= p["start"] < p["end"] == p["start"] + length * MINUTE_NS <= workload.end
            assert workload.start <= p["scan_start"] and p["scan_end"] == p["scan_start"] + 5 * MINUTE_NS
            assert p["start"] % MINUTE_NS == 0 and p["scan_start"] % MINUTE_NS == 0


def test_clients_get_their_own_parameters_and_the_same_mix(data: Path) -> None:
    workload = Workload.of(data)
    lists = [workload.client(list(QUERY_NAMES), k) for k in range(3)]
    for work in lists:
        assert sorted(q for q, _ in work) == sorted(QUERY_NAMES)  # every client: the whole suite once
    assert [work[0][0] for work in lists] == list(QUERY_NAMES[:3])  # each starting at its own query
    per_client = [dict(work) for work in lists]
    assert all(per_client[0][q] != per_client[1][q] != per_client[2][q] for q in QUERY_NAMES)
    assert lists == [Workload.of(data).client(list(QUERY_NAMES), k) for k in range(3)]


def test_every_engine_gets_the_same_sequence(data: Path, tmp_path: Path) -> None:
    """chDB and DuckDB in one run: the same parameters per run and per cold run, every answer checked."""
    res = run(RunConfig(data=data, engines=["clickhouse", "duckdb"], repeat=3, warmup=1, clients=(2,), cold=True,
                        drop_caches=False, seed=11,
                        dsns={"clickhouse": f"chdb://{tmp_path / 'ch'}", "duckdb": f"duckdb://{tmp_path / 'd.db'}"}))
    workload = Workload.of(data, seed=11)
    assert res["config"]["workload"]["seed"] == 11
    ch, duck = res["engines"]["clickhouse"], res["engines"]["duckdb"]
    for q in QUERY_NAMES:
        assert ch["queries"][q]["valid"] and duck["queries"][q]["valid"], q
        assert ch["queries"][q]["params"] == duck["queries"][q]["params"] == workload.hot(q, 4)[1:]
        assert ch["queries"][q]["cold_params"] == duck["queries"][q]["cold_params"] == workload.params(q, "cold", 0)
    (c_ch,), (c_duck,) = ch["concurrency"], duck["concurrency"]
    assert c_ch["valid"] and c_duck["valid"] and c_ch["mix"] == c_duck["mix"] == list(QUERY_NAMES)
    assert c_ch["queries"] == c_duck["queries"] == 2 * len(QUERY_NAMES) and not c_ch["left_out"]


def test_concurrency_runs_the_same_mix_on_every_engine(data: Path, tmp_path: Path) -> None:
    """ArcticDB cannot express some queries: concurrency leaves those out for DuckDB too, saying why, so both
    engines' queries per second are over the same mix."""
    pytest.importorskip("arcticdb")
    res = run(RunConfig(data=data, engines=["duckdb", "arcticdb"], repeat=1, warmup=0, clients=(2,), seed=5,
                        dsns={"duckdb": f"duckdb://{tmp_path / 'd.db'}", "arcticdb": f"lmdb://{tmp_path / 'arctic'}"}))
    duck, arctic = res["engines"]["duckdb"], res["engines"]["arcticdb"]
    answered = [q for q in QUERY_NAMES if arctic["queries"][q]["valid"]]
    assert 0 < len(answered) < len(QUERY_NAMES) and all(duck["queries"][q]["valid"] for q in QUERY_NAMES)
    (c_duck,), (c_arctic,) = duck["concurrency"], arctic["concurrency"]
    assert c_duck["mix"] == c_arctic["mix"] == answered and c_duck["valid"] and c_arctic["valid"]
    assert duck["profile"] == arctic["profile"] == "embedded"
    assert c_duck["queries"] == c_arctic["queries"] == 2 * len(answered)
    left = [q for q in QUERY_NAMES if q not in answered]
    assert list(c_duck["left_out"]) == left and all(v.startswith("arcticdb: unsupported")
                                                    for v in c_duck["left_out"].values())
