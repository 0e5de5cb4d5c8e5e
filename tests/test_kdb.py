"""kdb+ engine: the generated q text always; a real q process only when one is reachable or licensed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dbbench import dataset, queries, servers
from dbbench.engines.base import QUERY_NAMES, TABLES, EngineError
from dbbench.engines.kdb.adapter import (
    DDL,
    QUERIES,
    Kdb,
    disk_bytes,
    q_symbol,
    q_timestamp,
    render,
    save_splayed,
)

PARAMS = {"start": 1_723_161_600_000_000_000, "end": 1_723_161_660_000_000_000, "symbol": "BTCUSDT",
          "scan_start": 1_723_161_600_000_000_000, "scan_end": 1_723_161_630_500_000_001}


def _balanced(text: str) -> bool:
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)  # string literals may hold any bracket
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


def test_every_query_has_a_q_lambda_of_the_five_parameters():
    assert tuple(QUERIES) == QUERY_NAMES
    for name, text in QUERIES.items():
        assert text.startswith("{[S;E;SYM;SS;SE]") and _balanced(text), name
        assert all(line.startswith("  ") for line in text.splitlines()[1:]), \
            f"{name}: q continuation lines must be indented"


def test_query_texts_use_the_native_q_idioms():
    assert "0D00:01 xbar ts" in QUERIES["ohlcv_1m"] and "`ts`trade_id xasc" in QUERIES["ohlcv_1m"]
    assert "qty wavg price" in QUERIES["vwap"]
    assert "aj[`symbol`venue`ts; t;" in QUERIES["asof_trades_quotes"]
    assert "aj[`symbol`ts; q;" in QUERIES["nbbo"]
    assert "log mid % prev mid by symbol, venue" in QUERIES["mid_returns"]
    assert "sqrt sum ret*ret" in QUERIES["exec_volatility"]


def test_render_applies_the_lambda_to_q_literals():
    text = render("range_scan", PARAMS)
    assert text.endswith('[2024.08.09D00:00:00.000000000;2024.08.09D00:01:00.000000000;`$"BTCUSDT";'
                         "2024.08.09D00:00:00.000000000;2024.08.09D00:00:30.500000001]")
    assert _balanced(text)
    assert q_timestamp(0) == "1970.01.01D00:00:00.000000000"
    assert q_symbol('a"b\\c') == '`$"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        render("vwap", {**PARAMS, "end": "0]; exit 0; ["})


def test_schema_and_storage_text():
    assert set(DDL) == set(TABLES)
    for table, schema in DDL.items():
        assert re.findall(r"(\w+):`", schema) == TABLES[table].names
    assert save_splayed("trades", "db") == '(hsym `$"db/trades/") set .Q.en[hsym `$"db"] trades'
    assert '["db";"quotes"]' in disk_bytes("quotes", "db")
    with pytest.raises(ValueError):
        save_splayed("trades;exit 0", "db")


def test_dsn_errors_are_clear(monkeypatch):
    monkeypatch.delenv("KDB_HOST", raising=False)
    monkeypatch.delenv("KDB_PORT", raising=False)
    with pytest.raises(ValueError, match="KDB_HOST"):
        Kdb("kdb://")
    with pytest.raises(ValueError, match="must be kdb://"):
        Kdb("q://127.0.0.1:5000")
    with pytest.raises(EngineError, match="kdb: connect failed: 127.0.0.1:1:"):
        Kdb("kdb://127.0.0.1:1")


# --- a real q process (KDB_HOST/KDB_PORT, or a licensed q started here) -------------------------


@pytest.fixture(scope="module")
def kdb_dsn(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("KDB_HOST") and os.environ.get("KDB_PORT"):
        yield f"kdb://{os.environ['KDB_HOST']}:{os.environ['KDB_PORT']}"
        return
    reason = servers.available()["kdb"]
    if reason:
        pytest.skip(f"KDB_HOST/KDB_PORT not set and no licensed q here: {reason}")
    directory = tmp_path_factory.mktemp("servers-kdb")
    yield servers.up(["kdb"], directory)["kdb"].dsn
    servers.down(["kdb"], directory)


@pytest.fixture(scope="module")
def loaded(kdb_dsn: str, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("synth")
    dataset.build_synth(data, 20_000)
    engine = Kdb(kdb_dsn)
    engine.create_schema()
    results = {t: engine.load(t, dataset.iter_batches(data, t, 7_000)) for t in TABLES}
    yield engine, data, results
    engine.drop()
    engine.close()


@pytest.mark.server
def test_load_verifies_and_saves_splayed(loaded):
    engine, _, results = loaded
    assert engine.version().startswith("kdb+ ")
    assert engine.loaded_rows() == {t: r.rows for t, r in results.items()}
    assert all(engine.storage(t).bytes > 0 for t in TABLES)


@pytest.mark.server
@pytest.mark.parametrize("name", QUERY_NAMES)
def test_query_matches_the_polars_reference(loaded, name: str):
    engine, data, _ = loaded
    params = queries.default_params(Path(data))
    verdict = queries.compare(engine.query(name, params), queries.reference(name, Path(data), params), name)
    assert verdict.ok, str(verdict)
