"""Every engine answers the hand-built edge-case dataset (`dbbench.dataset.build_edge_cases`) exactly as the
Polars reference does, under `compare`'s strict rules; the reference itself is checked by hand first.

Each query runs over several ranges: the whole dataset; an inner range whose bounds fall exactly on
trades (the one at `start` counts, the one at `end` does not, and nothing before `start` prevails);
and three empty ones (after the data, a gap inside its span, and start == end), which answer no rows
with the reference's columns and types. An unsupported query must say so (NotImplementedError), and
only where the engine's module declares it `Unsupported`: it is never computed in its place.
"""

from __future__ import annotations

import importlib
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dbbench import servers
from dbbench.dataset import EDGE_T0, build_edge_cases, iter_batches
from dbbench.engines import connect
from dbbench.engines.base import QUERY_NAMES, TABLES, Unsupported
from dbbench.queries import compare, default_params, reference

S, M = 1_000_000_000, 60_000_000_000


def _params(start: int, end: int, symbol: str = "BTC", scan: tuple[int, int] | None = None) -> dict[str, Any]:
    scan_start, scan_end = scan or (start, end)
    return {"start": EDGE_T0 + start, "end": EDGE_T0 + end, "symbol": symbol,
            "scan_start": EDGE_T0 + scan_start, "scan_end": EDGE_T0 + scan_end}


RANGES = {
    "whole": _params(0, 5 * M),
    # start on trades 22/23 (in), end on c's quote and trade 901 (out); scan ends on trade 30 (out)
    "inner": _params(M, 4 * M + S // 2, scan=(M, 3 * M + 5 * S)),
    "after": _params(10 * M, 11 * M),
    "gap": _params(4 * M + S, 5 * M, symbol="NOPE"),  # inside the data's minute 4, after its last row
    "point": _params(M, M),  # start == end
}
EMPTY = ("after", "gap", "point")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edge-cases")
    build_edge_cases(out)
    return out


def answer(data: Path, name: str, case: str) -> pl.DataFrame:
    return reference(name, data, RANGES[case])


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(EDGE_T0 / S + seconds, tz=UTC)


# --- the reference, by hand -----------------------------------------------------------------------


def test_default_params_span_the_edge_dataset(data):
    p = default_params(data)
    assert (p["start"], p["end"], p["symbol"]) == (EDGE_T0, EDGE_T0 + 5 * M, "BTC")


def test_ohlcv_ties_break_on_trade_id_not_on_value_or_arrival(data):
    bars = answer(data, "ohlcv_1m", "whole").filter(pl.col("symbol") == "BTC", pl.col("venue") == "a")
    assert bars.select("minute", "open", "high", "low", "close", "trades").rows() == [
        (at(0), 100.6, 100.6, 100.0, 100.0, 5),  # open: id 10 (the larger price), close: id 21 (the smaller)
        (at(60), 100.2, 100.6, 100.2, 100.6, 4),  # open: id 22 (the smaller), close: id 25 (the larger)
        (at(180), 100.7, 100.7, 100.7, 100.7, 1),
    ]
    single = answer(data, "ohlcv_1m", "whole").filter(pl.col("symbol") == "eth").row(0, named=True)
    assert (single["open"], single["high"], single["low"], single["close"], single["trades"]) == (2000.2,) * 4 + (1,)


def test_nbbo_carries_the_stale_venue_for_minutes(data):
    n = answer(data, "nbbo", "whole").filter(pl.col("symbol") == "BTC").with_columns(pl.col("ts").dt.epoch("ns"))
    rows = {(ts - EDGE_T0, venue): (bid, ask) for _, ts, venue, bid, ask in n.iter_rows()}
    assert rows[(S, "a")] == rows[(S, "b")] == (100.2, 100.5)  # c's bid of 0 s; a's ask, both at 1 s
    assert rows[(S + 1, "a")] == (100.2, 100.4)  # one ns later: a's new ask
    assert rows[(3 * M, "b")] == (100.2, 100.6)  # c's bid, 3 minutes stale, is still the best
    assert rows[(4 * M + S // 2, "c")] == (100.1, 99.5)  # c's new quote: a's bid of 130 s is now the best
    inner = answer(data, "nbbo", "inner").filter(pl.col("symbol") == "BTC")
    assert inner.row(0) == ("BTC", at(60), "b", 100.1, 100.2)  # c's quote of 0 s is before the range: not carried in
    assert answer(data, "nbbo", "whole").filter(pl.col("symbol") == "DOGE").height == 0


def test_asof_joins_the_stale_quote_and_drops_trades_without_one(data):
    j = answer(data, "asof_trades_quotes", "whole")
    by_id = {r["trade_id"]: r for r in j.iter_rows(named=True)}
    assert {10, 11, 499} & set(by_id) == set()  # before their venue's first quote
    assert (by_id[12]["bid_px"], by_id[12]["ask_px"]) == (100.0, 100.5)  # the quote at the trade's own ns
    assert (by_id[900]["bid_px"], by_id[900]["ask_px"]) == (100.2, 100.9)  # c's quote of 2.5 minutes before
    assert (by_id[901]["bid_px"], by_id[901]["ask_px"]) == (99.0, 99.5)
    assert by_id[2**62 + 1]["trade_id"] == 2**62 + 1 and "DOGE" not in j["symbol"].to_list()
    assert 900 not in answer(data, "asof_trades_quotes", "inner")["trade_id"].to_list()


def test_returns_vwap_and_scans_on_extreme_and_boundary_values(data):
    r = answer(data, "mid_returns", "whole").filter(pl.col("symbol") == "PEPE")
    assert r["ret"].to_list() == pytest.approx([math.log(1.15 / 1.05)], rel=1e-12)
    v = answer(data, "vwap", "whole").filter(pl.col("symbol") == "BTC1").row(0, named=True)
    assert v["vwap"] == pytest.approx((10 + 30.0000015) / 4e-8, rel=1e-12)
    scan = answer(data, "range_scan", "inner")
    assert scan["trade_id"].to_list() == [22, 23, 24, 25, 501, 900]  # 22/23 at scan_start in, 30 at scan_end out
    assert answer(data, "avg_trade_volume", "inner")["minute"].min() == at(60)


@pytest.mark.parametrize("name", QUERY_NAMES)
@pytest.mark.parametrize("case", EMPTY)
def test_empty_ranges_answer_no_rows_with_the_columns(data, case, name):
    empty, whole = answer(data, name, case), answer(data, name, "whole")
    assert empty.height == 0 and empty.schema == whole.schema


# --- every engine -------------------------------------------------------------------------------


def _server_dsn(request, fixture: str, db: str) -> str:
    """The server's DSN with its own database name, so other modules' tables are left alone."""
    dsn = request.getfixturevalue(fixture)
    return dsn if fixture == "timescaledb_dsn" else dsn.rsplit("/", 1)[0] + "/" + db


def clickhouse_server_dsn() -> str:
    """A running ClickHouse server (DBBENCH_CLICKHOUSE_DSN=http://...); none can start here, so without one a skip,
    even in CI."""
    dsn = os.environ.get("DBBENCH_CLICKHOUSE_DSN", "")
    if not dsn.startswith(("http://", "https://")):
        pytest.skip("ClickHouse server: set DBBENCH_CLICKHOUSE_DSN=http://user:password@host:8123/db (e.g. `docker "
                    "compose -f docker/compose.yml up -d clickhouse`); none can start here: no Docker engine, and "
                    "Debian's clickhouse-server 18.16 is older than the 22+ the queries need")
    return dsn


# id -> (engine, its DSN for this module)
ENGINE_DSNS = {
    "clickhouse": ("clickhouse", lambda request: "chdb://memory"),  # chDB: one path per process, shared by every module
    "clickhouse-server": ("clickhouse", lambda request: clickhouse_server_dsn()),
    "duckdb": ("duckdb",
               lambda request: f"duckdb://{request.getfixturevalue('tmp_path_factory').mktemp('duckdb')}/edge.duckdb"),
    "arcticdb": ("arcticdb", lambda request: f"lmdb://{request.getfixturevalue('tmp_path_factory').mktemp('arcticdb')}"),
    "timescaledb": ("timescaledb", lambda request: _server_dsn(request, "timescaledb_dsn", "")),
    "influxdb": ("influxdb", lambda request: _server_dsn(request, "influxdb_dsn", "dbbench_edge")),
    "kdb": ("kdb", lambda request: _kdb_dsn()),
}


def _kdb_dsn() -> str:
    """A running q (DBBENCH_KDB_DSN or KDB_HOST/KDB_PORT); kdb+ needs a licence, so without one: a skip, even in CI."""
    if os.environ.get("DBBENCH_KDB_DSN"):
        return os.environ["DBBENCH_KDB_DSN"]
    if os.environ.get("KDB_HOST") and os.environ.get("KDB_PORT"):
        return f"kdb://{os.environ['KDB_HOST']}:{os.environ['KDB_PORT']}"
    reason = servers.available()["kdb"] or "none started"
    pytest.skip(f"kdb+: no running q (DBBENCH_KDB_DSN or KDB_HOST/KDB_PORT): {reason}")


@pytest.fixture(scope="module", params=list(ENGINE_DSNS))
def loaded(request, data):
    """(the engine's module, the engine) with the edge cases loaded, in batches of 7 rows: ties cross batch ends."""
    name, dsn = ENGINE_DSNS[request.param]
    engine = connect(name, dsn(request))
    engine.create_schema()
    for table in TABLES:
        engine.load(table, iter_batches(data, table, 7))
    yield importlib.import_module(f"dbbench.engines.{name}.adapter"), engine
    engine.drop()
    engine.close()


@pytest.mark.server
@pytest.mark.parametrize("case", list(RANGES))
@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_engine_answers_the_edge_cases_exactly(loaded, data, name, case):
    module, engine = loaded
    if isinstance(module.QUERIES[name], Unsupported):  # declared so: it must refuse, never answer
        with pytest.raises(NotImplementedError, match=f"{name} unsupported: "):
            engine.query(name, RANGES[case])
        return
    verdict = compare(engine.query(name, RANGES[case]), answer(data, name, case), name)
    assert verdict.ok, verdict.detail
    assert (verdict.rows == 0) == (case in EMPTY)
