"""dbbench run on chDB with a tiny synthetic dataset: results JSON, verdicts, failures, skips."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from dbbench import results
from dbbench.cli import app
from dbbench.dataset import build_synth
from dbbench.engines.base import QUERY_NAMES
from dbbench.measure import stats
from dbbench.runner import RunConfig, run

NO_SERVER = "postgresql://postgres@127.0.0.1:1/nothing"  # port 1: nothing listens


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("tiny")
    build_synth(data, 3000)
    return data


@pytest.fixture(scope="module")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "chdb://" + str(tmp_path_factory.mktemp("chdb"))


@pytest.fixture(scope="module")
def full_run(tiny: Path, chdb_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("results") / "run.json"
    config = RunConfig(data=tiny, engines=["clickhouse", "timescaledb"],
                       dsns={"clickhouse": chdb_dsn, "timescaledb": NO_SERVER}, repeat=2, warmup=1, clients=(1, 3),
                       cold=True, drop_caches=False, batch_rows=(700, 100_000), out=out)
    return run(config), out


def test_chdb_run_writes_valid_results_with_verdicts(full_run: tuple[dict, Path]) -> None:
    res, out = full_run
    on_disk = results.read(out)
    assert on_disk["finished"] and on_disk["engines"].keys() == res["engines"].keys()
    ch = on_disk["engines"]["clickhouse"]
    assert ch["status"] == "ok" and ch["version"].startswith("ClickHouse") and not ch["failures"]
    assert set(ch["queries"]) == set(QUERY_NAMES)
    for name, q in ch["queries"].items():
        assert q["status"] == "ok" and q["valid"], (name, q)
        assert q["verdict"].startswith("correct") and q["rows"] == q["expected_rows"]
        hot = q["hot"]
        assert len(hot["client_s"]) == 2 and len(hot["server_s"]) == 2  # chDB reports its own elapsed time
        assert hot["client"]["min"] <= hot["client"]["median"] <= hot["client"]["p95"] <= hot["client"]["max"]
        assert q["cold"]["client"]["n"] == 1
    assert [load["batch_rows"] for load in ch["load"]] == [700, 100_000] and all(load["valid"] for load in ch["load"])
    dataset = on_disk["dataset"]
    for table, s in ch["storage"].items():
        assert s["rows"] == dataset["rows"][table] and s["bytes_on_disk"] > 0
        assert "MergeTree parts" in s["includes"] and s["compact_seconds"] >= 0
        assert s["compression_vs_csv"] == pytest.approx(dataset["csv_bytes"][table] / s["bytes_on_disk"])
        assert ch["load"][-1]["tables"][table]["rows"] == dataset["rows"][table]
    assert [c["clients"] for c in ch["concurrency"]] == [1, 3]
    for c in ch["concurrency"]:
        assert c["valid"] and c["errors"] == 0 and c["wrong"] == 0 and c["queries"] == 10 * c["clients"]
    assert ch["server_time"].startswith("chDB") and ch["compaction"]
    assert "reopened" in ch["cold_method"] and "disabled" in on_disk["caches"]["os_page_cache"]
    assert on_disk["machine"]["cores"] >= 1 and on_disk["machine"]["cpu"]


def test_unreachable_engine_is_skipped_with_its_reason(full_run: tuple[dict, Path]) -> None:
    skipped = full_run[0]["engines"]["timescaledb"]
    assert skipped["status"] == "skipped"
    assert skipped["reason"].startswith("cannot connect to postgresql://postgres@127.0.0.1:1/nothing")
    assert not skipped["queries"] and not skipped["load"]


def test_wrong_answer_is_a_failure_not_a_timing(tiny: Path, chdb_dsn: str, tmp_path: Path) -> None:
    from dbbench.queries import reference
    from dbbench.workload import Workload

    workload = Workload.of(tiny)  # the first run's parameters: the answer differs from this reference in values only
    vwap = reference("vwap", tiny, workload.params("vwap", "hot", 0)).with_columns(pl.col("vwap") * 1.001)
    last = reference("last_quote", tiny, workload.params("last_quote", "hot", 0)).head(-1)
    run(RunConfig(data=tiny, engines=["clickhouse"], dsns={"clickhouse": chdb_dsn},
                  queries=["vwap", "last_quote", "spread"], repeat=3, out=tmp_path / "r.json"),
        references={"vwap": vwap, "last_quote": last})
    queries = results.read(tmp_path / "r.json")["engines"]["clickhouse"]["queries"]
    assert queries["spread"]["valid"]
    for name, detail in (("vwap", "column vwap"), ("last_quote", "rows, expected")):
        q = queries[name]
        assert q["status"] == "wrong" and not q["valid"], q
        assert q["verdict"].startswith("run 1: WRONG") and detail in q["verdict"]
        assert q["hot"]["client_s"] == [] and q["hot"]["client"] is None  # never timed as a success


def test_per_row_queries_run_over_their_window(chdb_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window smaller than the data (as at 100 million rows): engine and reference both ask about it."""
    from dbbench import queries

    data = tmp_path / "minutes"
    build_synth(data, 20_000, symbols=("BTCUSDT",))  # two venues, about 6 minutes
    whole = {q: queries.reference(q, data, queries.default_params(data)).height for q in queries.ROW_QUERIES}
    monkeypatch.setattr(queries, "WINDOW_ROWS", 2_000)  # a 1-minute window
    res = run(RunConfig(data=data, engines=["clickhouse"], dsns={"clickhouse": chdb_dsn}, queries=queries.ROW_QUERIES,
                        repeat=1, clients=(2,)))
    ch, workload = res["engines"]["clickhouse"], res["config"]["workload"]
    assert workload["window_minutes"] == 1
    for name in queries.ROW_QUERIES:
        q = ch["queries"][name]
        (params,) = q["params"]
        assert workload["start"] <= params["start"] < params["end"] == params["start"] + 60e9 <= workload["end"]
        assert q["valid"] and 0 < q["rows"] < whole[name] / 2, (name, q["rows"], whole[name])
    assert ch["concurrency"][0]["valid"]


def test_failed_load_is_reported_and_nothing_partial_is_valid(tiny: Path, chdb_dsn: str, tmp_path: Path) -> None:
    """quotes.parquet with a column too many: the references read it, the load refuses it."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "trades.parquet").write_bytes((tiny / "trades.parquet").read_bytes())
    manifest = orjson.loads((tiny / "dataset.json").read_bytes())
    del manifest["sha256"]["quotes"]  # a file this manifest does not vouch for: its schema is checked
    (broken / "dataset.json").write_bytes(orjson.dumps(manifest))
    quotes = pl.read_parquet(tiny / "quotes.parquet").with_columns(pl.lit("x").alias("extra"))
    quotes.write_parquet(broken / "quotes.parquet")
    res = run(RunConfig(data=broken, engines=["clickhouse"], dsns={"clickhouse": chdb_dsn}, repeat=1))
    ch = res["engines"]["clickhouse"]
    assert ch["status"] == "failed" and ch["failures"][0]["step"] == "load quotes (batch_rows=1000000)"
    assert "does not have the quotes schema" in ch["reason"]
    assert not ch["load"][0]["valid"] and "trades" in ch["load"][0]["tables"]  # trades kept for the record
    assert all(q["status"] == "not_run" and not q["valid"] for q in ch["queries"].values())


def test_results_refuse_a_wrong_answer_marked_valid(full_run: tuple[dict, Path]) -> None:
    res = orjson.loads(orjson.dumps(full_run[0]))
    res["engines"]["clickhouse"]["queries"]["vwap"]["status"] = "wrong"
    with pytest.raises(results.ResultsError, match="marked valid"):
        results.validate(res)


def test_timed_answers_stay_right_after_later_queries(tiny: Path, chdb_dsn: str) -> None:
    """chDB answers are read in place from its result buffer: they must outlive later queries (and GC)."""
    import gc

    from dbbench.dataset import iter_batches
    from dbbench.engines import connect
    from dbbench.engines.base import TABLES
    from dbbench.queries import compare, default_params, params_for, reference

    params, engine = default_params(tiny), connect("clickhouse", chdb_dsn)
    try:
        engine.create_schema()
        for table in TABLES:
            engine.load(table, iter_batches(tiny, table))
        kept = [(q, engine.timed_query(q, params_for(q, params)).frame) for _ in range(3) for q in QUERY_NAMES]
    finally:
        engine.close()
    gc.collect()
    for q, frame in kept:
        assert compare(frame, reference(q, tiny, params_for(q, params)), q).ok, q


def test_stats() -> None:
    s = stats([0.4, 0.1, 0.3, 0.2])
    assert s == {"n": 4, "min": 0.1, "median": pytest.approx(0.25), "mean": pytest.approx(0.25),
                 "p95": pytest.approx(0.385), "max": 0.4}
    assert stats([]) is None


def test_cli_run_json(tiny: Path, chdb_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "cli.json"
    result = CliRunner().invoke(app, ["run", "--engines", "clickhouse", "--data", str(tiny),
                                      "--dsn", f"clickhouse={chdb_dsn}", "--queries", "spread,range_scan",
                                      "--repeat", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["clickhouse"].startswith("ok:2ok/0wrong") and summary["out"] == str(out)
    assert results.read(out)["engines"]["clickhouse"]["queries"]["range_scan"]["valid"]


@pytest.mark.server
def test_postgresql_run_with_server_time(tiny: Path, timescaledb_dsn: str, tmp_path: Path) -> None:
    res = run(RunConfig(data=tiny, engines=["timescaledb"], dsns={"timescaledb": timescaledb_dsn},
                        queries=["spread", "asof_trades_quotes"], repeat=2, clients=(2,)))
    (entry,) = res["engines"].values()
    assert entry["status"] == "ok" and entry["server_time"].startswith(("pg_stat_statements", "EXPLAIN"))
    for q in entry["queries"].values():
        assert q["valid"] and all(0 < s for s in q["hot"]["server_s"])
    assert entry["concurrency"][0]["valid"]
