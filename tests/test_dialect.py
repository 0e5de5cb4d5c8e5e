"""The dialect files beside each adapter: every engine's queries load from them, named as the suite,
and pyproject.toml ships them as package data."""

import fnmatch
import tomllib
from pathlib import Path

import pytest

from dbbench.engines import ENGINES
from dbbench.engines.base import QUERY_NAMES, Unsupported
from dbbench.engines.dialect import COMMENT, fill, read_blocks, read_queries

ENGINES_DIR = Path(__file__).resolve().parents[1] / "dbbench" / "engines"
QUERY_FILES = {"clickhouse": ["queries.sql"], "duckdb": ["queries.sql"], "timescaledb": ["queries.sql"],
               "influxdb": ["queries.influxql", "queries.flux"], "kdb": ["queries.q"]}
DDL_FILES = {"clickhouse": "create.sql", "duckdb": "create.sql", "timescaledb": "create.sql",
             "influxdb": "create.influxql", "kdb": "create.q"}


@pytest.mark.parametrize("engine,filename", [(e, f) for e, files in QUERY_FILES.items() for f in files])
def test_every_query_file_names_the_suite_in_order_with_text_or_a_reason(engine, filename):
    queries = read_queries(f"dbbench.engines.{engine}", filename)
    assert tuple(queries) == QUERY_NAMES
    for name, text in queries.items():
        if isinstance(text, Unsupported):
            assert len(text.reason) > 20, (engine, name)
        else:  # comments document the file; the engine gets the code alone
            comment = COMMENT[Path(filename).suffix]
            assert text.strip() and not any(line.strip().startswith(comment) for line in text.splitlines())


@pytest.mark.parametrize("engine", DDL_FILES)
def test_every_ddl_file_creates_both_tables(engine):
    blocks = read_blocks(f"dbbench.engines.{engine}", DDL_FILES[engine])
    if engine == "influxdb":  # measurements come with their points; the file makes their retention policies
        assert {"database", "policy"} <= set(blocks)
    else:
        assert {"trades", "quotes"} <= set(blocks)
        assert "price" in blocks["trades"] and "bid_px" in blocks["quotes"]


def test_every_engine_has_its_folder_and_the_files_are_package_data():
    assert sorted(p.name for p in ENGINES_DIR.iterdir() if (p / "adapter.py").exists()) == sorted(ENGINES)
    globs = tomllib.loads((ENGINES_DIR.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["dbbench.engines"]
    files = [p.relative_to(ENGINES_DIR).as_posix() for p in ENGINES_DIR.glob("*/*")
             if p.suffix in COMMENT or p.suffix == ".conf"]
    assert len(files) == 12  # 11 dialect files and InfluxDB's server config
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), files


def test_fill_replaces_named_placeholders_only_and_refuses_a_missing_value():
    flux = 'map(fn: (r) => ({r with mid: r._value})) |> range(start: time(v: {start}))'
    assert fill(flux, {"start": 5}) == 'map(fn: (r) => ({r with mid: r._value})) |> range(start: time(v: 5))'
    assert fill("{a} {b}", {"a": "{b}", "b": 1}) == "{b} 1"  # a value is never filled in turn
    with pytest.raises(KeyError, match="start"):
        fill("ts >= {start}", {})


def test_a_block_of_comments_only_is_unsupported_with_its_reason(tmp_path, monkeypatch):
    package = tmp_path / "fake_dialect"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "q.sql").write_text("-- header\n-- name: a\n-- unsupported: no joins\n-- at all\n\n"
                                   "-- name: b\n-- why\nSELECT 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    blocks = read_blocks("fake_dialect", "q.sql")
    assert blocks == {"a": Unsupported("no joins at all"), "b": "SELECT 1"}
    with pytest.raises(ValueError, match="not the suite's"):
        read_queries("fake_dialect", "q.sql")
