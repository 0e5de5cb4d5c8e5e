"""The benchmark dataset: a directory of trades.parquet and quotes.parquet, built once, loaded many times.

Generating is a separate step from loading (TSBS style), so load timings never include it.
Both files follow the engine tables' Arrow schemas (`dbbench.engines.base.TRADES` / `QUOTES`),
and dataset.json records what was written (rows, time range, symbols, venues, source, and the
size of each table written as CSV: the raw size storage is compared with, counted once here as
the batches stream by rather than at every run).

Sources:
- `binance`: the real recordings, spot and USD-M as two venues of BTCUSDT. `ts` is the local
  receive time: the one clock both venues were recorded with (spot bookTicker carries no exchange time).
- `synth`: the synthetic market of `data_loaders.synth`, several symbols x venues (venues of one
  symbol share its price path), generated chunk by chunk so 100 million rows never sit in memory.

Quotes are unique per (symbol, venue, ts), which makes "the prevailing quote" of the query suite
one row; a source that breaks this is an error, not silently fixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data_loaders.atomic import IntegrityError, partial_path, publish, sha256, write_bytes
from dbbench.engines.base import TABLES

SYNTH_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
SYNTH_VENUES = ("venue_a", "venue_b")
SYNTH_STEP_NS = 100_000_000  # one quote per market per step
SYNTH_ROWS_PER_STEP = 2.81  # one quote + 1.81 trades (measured: Poisson(trades_per_step * volatility) averages that)
BINANCE_VENUES = {"spot": "binance_spot", "usdm": "binance_usdm"}
DICTIONARY_COLUMNS = ("symbol", "venue")  # read as Arrow dictionaries (see iter_batches)


def csv_size(rows: pa.Table | pa.RecordBatch, header: bool) -> int:
    """Bytes of the rows written as CSV (Arrow's writer into a counting sink: nothing is kept)."""
    sink = pa.MockOutputStream()
    pacsv.write_csv(rows, sink, pacsv.WriteOptions(include_header=header))
    return sink.size()


class _Writer:
    """Streams batches into DIR/{trades,quotes}.parquet and keeps the manifest's running totals.

    The tables are written beside their final names and published by `close`, dataset.json last,
    with each file's sha256: a build that fails or is killed leaves the previous dataset (or none),
    and a file changed afterwards no longer matches its manifest."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.paths = {t: out / f"{t}.parquet" for t in TABLES}
        self.writers = {t: pq.ParquetWriter(partial_path(self.paths[t]), s, compression="zstd")
                        for t, s in TABLES.items()}
        self.rows = dict.fromkeys(TABLES, 0)
        self.csv_bytes = dict.fromkeys(TABLES, 0)
        self.min_ts, self.max_ts = None, None
        self.symbols: set[str] = set()
        self.venues: set[str] = set()

    def write(self, table: str, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        if table == "quotes" and frame.select(pl.struct("symbol", "venue", "ts").is_duplicated().any()).item():
            raise ValueError("quotes repeat a (symbol, venue, ts): the prevailing quote would be ambiguous")
        arrow = frame.select(TABLES[table].names).to_arrow().cast(TABLES[table])
        self.writers[table].write_table(arrow)
        self.csv_bytes[table] += csv_size(arrow, header=self.rows[table] == 0)
        self.rows[table] += frame.height
        lo, hi = frame["ts"].dt.epoch("ns").min(), frame["ts"].dt.epoch("ns").max()
        self.min_ts = lo if self.min_ts is None else min(self.min_ts, lo)
        self.max_ts = hi if self.max_ts is None else max(self.max_ts, hi)
        self.symbols.update(frame["symbol"].unique().to_list())
        self.venues.update(frame["venue"].unique().to_list())

    def discard(self) -> None:
        for table, writer in self.writers.items():
            writer.close()
            partial_path(self.paths[table]).unlink(missing_ok=True)

    def close(self, source: dict[str, Any]) -> dict[str, Any]:
        for writer in self.writers.values():
            writer.close()
        digests = {t: publish(partial_path(path), path, checksum=True) for t, path in self.paths.items()}
        manifest = {
            "source": source,
            "rows": self.rows,
            "min_ts": self.min_ts,
            "max_ts": self.max_ts,
            "symbols": sorted(self.symbols),
            "venues": sorted(self.venues),
            "bytes": {t: (self.out / f"{t}.parquet").stat().st_size for t in TABLES},
            "csv_bytes": self.csv_bytes,
            "sha256": digests,
        }
        write_bytes(self.out / "dataset.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        return manifest


def _bench_frame(columns: dict[str, Any] | pl.DataFrame, symbol: str, venue: str, table: str,
                 ts: str = "ts") -> pl.DataFrame:
    """A ticks-contract frame (Int64 ns times) -> the engine table's columns, symbol and venue added."""
    frame = pl.DataFrame(columns) if isinstance(columns, dict) else columns
    return frame.with_columns(
        pl.col(ts).cast(pl.Datetime("ns", "UTC")).alias("ts"),
        pl.lit(symbol).alias("symbol"),
        pl.lit(venue).alias("venue"),
    ).select(TABLES[table].names)


def build_synth(out: Path, rows: int, seed: int = 0, *, symbols: tuple[str, ...] = SYNTH_SYMBOLS,
                venues: tuple[str, ...] = SYNTH_VENUES, chunk_steps: int = 100_000,
                progress: Any = None) -> dict[str, Any]:
    """About `rows` trades+quotes over len(symbols) x len(venues) markets on one time grid."""
    from data_loaders.synth import PARAMS, START_NS, Market

    if rows < 1 or not symbols or not venues:
        raise ValueError("need rows >= 1 and at least one symbol and venue")
    if len(set(symbols)) < len(symbols) or len(set(venues)) < len(venues):
        raise ValueError(f"symbols and venues must be distinct, got {symbols} x {venues}")
    markets = [(s, v) for s in symbols for v in venues]
    steps = max(1, round(rows / SYNTH_ROWS_PER_STEP / len(markets)))
    # Venues of one symbol share its latent price path (same seed); each symbol has its own, a decade lower.
    gens = [Market(seed + symbols.index(s), s, v, 1, SYNTH_STEP_NS,
                   replace(PARAMS, price0=PARAMS.price0 / 10 ** symbols.index(s)))
            for s, v in markets]
    writer = _Writer(Path(out))
    try:
        for first in range(0, steps, chunk_steps):
            ts = START_NS + np.arange(first, min(first + chunk_steps, steps), dtype=np.int64) * SYNTH_STEP_NS
            for (symbol, venue), market in zip(markets, gens):
                chunk = market.chunk(ts)
                for table in TABLES:
                    writer.write(table, _bench_frame(chunk[table], symbol, venue, table))
            if progress is not None:
                progress(ts.shape[0] * len(markets))
    except BaseException:
        writer.discard()
        raise
    return writer.close({"kind": "synth", "seed": seed, "steps": steps, "step_ns": SYNTH_STEP_NS,
                         "markets": len(markets), "generator": "data_loaders.synth"})


def build_binance(out: Path, recordings: dict[str, list[Path]] | None = None) -> dict[str, Any]:
    """The real recordings (spot and USD-M BTCUSDT), ts = local receive time, as two venues.

    Lines the reader rejects are counted in the manifest and written to DIR/binance.quarantine.jsonl."""
    from data_loaders import binance_ws
    from data_loaders.paths import binance_recordings
    from data_loaders.quarantine import Quarantine

    recordings = binance_recordings() if recordings is None else recordings
    if not recordings:
        raise FileNotFoundError("no Binance recordings found (see data_loaders.paths.shared_data_dir)")
    writer = _Writer(Path(out))
    try:
        with Quarantine(Path(out) / "binance.quarantine.jsonl") as quarantine:
            for market, files in recordings.items():
                venue = BINANCE_VENUES.get(market, f"binance_{market}")
                parsed = binance_ws.parse_recording(files, quarantine)
                trades, _ = binance_ws.trades_frame(parsed, quarantine)
                quotes, _ = binance_ws.quotes_frame(parsed, quarantine)
                writer.write("trades", _bench_frame(trades, "BTCUSDT", venue, "trades", ts="local_ts"))
                writer.write("quotes", _bench_frame(quotes, "BTCUSDT", venue, "quotes", ts="local_ts"))
    except BaseException:
        writer.discard()
        raise
    return writer.close({"kind": "binance", "files": {m: [f.name for f in fs] for m, fs in recordings.items()},
                         "ts": "local receive time", "quarantined": dict(quarantine.counts)})


def read_manifest(data: Path) -> dict[str, Any]:
    path = Path(data) / "dataset.json"
    if not path.exists():
        raise FileNotFoundError(f"{data} is not a dbbench dataset (no dataset.json); build one with `dbbench dataset`")
    return orjson.loads(path.read_bytes())


def verify_table(data: Path, table: str) -> None:
    """The table file is the one its dataset.json recorded (a folder without one, or a dataset from
    before checksums were recorded, has nothing to compare)."""
    path, manifest = Path(data) / f"{table}.parquet", Path(data) / "dataset.json"
    recorded = read_manifest(data).get("sha256", {}).get(table) if manifest.exists() else None
    if recorded is not None and recorded != sha256(path):
        raise IntegrityError(f"{path} is not the file {Path(data) / 'dataset.json'} records (sha256 differs): "
                             "it changed after the dataset was built; build the dataset again")


def iter_batches(data: Path, table: str, batch_rows: int = 1_000_000) -> Iterator[pa.RecordBatch]:
    """Stream one table of a dataset as Arrow batches in the engine table's schema, `DICTIONARY_COLUMNS`
    as Arrow dictionaries of strings: they hold a few values, and decoding them to plain strings was a
    third of pyarrow's read (every engine takes either). A batch has at most `batch_rows` rows, and ends
    early where the Parquet's dictionary changes (a row group per market in the synthetic data)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    path = Path(data) / f"{table}.parquet"
    verify_table(data, table)
    schema = pq.read_schema(path)
    if schema.remove_metadata() != TABLES[table]:
        raise ValueError(f"{data}/{table}.parquet does not have the {table} schema: {schema}")
    yield from pq.ParquetFile(path, read_dictionary=DICTIONARY_COLUMNS).iter_batches(batch_size=batch_rows)


EDGE_T0 = 1_723_161_600_000_000_000  # 2024-08-09 00:00:00 UTC: minute 0 of the edge-case dataset
_S, _M = 1_000_000_000, 60_000_000_000
EDGE_TRADES = [  # (ts, symbol, venue, trade_id, price, qty, side), in the order they are written
    # BTC@a: two trades at the first ns of minute 0, written out of trade_id order: open is id 10's 100.6, the larger
    (0, "BTC", "a", 11, 100.4, 0.3, -1),
    (0, "BTC", "a", 10, 100.6, 0.2, 1),
    (_S, "BTC", "a", 12, 100.5, 0.5, 1),  # same ns as quotes of a and b and as b's trade 500
    (_M - 1, "BTC", "a", 20, 100.1, 1.0, 1),  # last ns of minute 0, two trades: close is id 21's 100.0, the smaller
    (_M - 1, "BTC", "a", 21, 100.0, 2.0, -1),
    (_M, "BTC", "a", 23, 100.3, 1.5, 1),  # exactly on minute 1's first ns: open is id 22's 100.2, the smaller
    (_M, "BTC", "a", 22, 100.2, 0.5, -1),
    (_M + 30 * _S, "BTC", "a", 24, 100.5, 1.0, 1),  # close of minute 1: id 25's 100.6, the larger
    (_M + 30 * _S, "BTC", "a", 25, 100.6, 1.0, 1),
    (3 * _M + 5 * _S, "BTC", "a", 30, 100.7, 0.1, 1),
    # BTC@b: a trade before b's first quote (no as-of row), one tied with a's trade and both venues' quotes
    (_S // 2, "BTC", "b", 499, 100.0, 1.0, 1),
    (_S, "BTC", "b", 500, 100.6, 0.4, -1),
    (2 * _M, "BTC", "b", 501, 100.4, 0.7, 1),
    # BTC@c, stale from 0 to 4 minutes: trade 900 takes c's quote of 2.5 minutes before; 901 the new one at its ns
    (2 * _M + 30 * _S, "BTC", "c", 900, 100.2, 3.0, -1),
    (4 * _M + _S // 2, "BTC", "c", 901, 99.2, 1.0, -1),
    # eth@a: the symbol's single trade, between its two quotes (lower case: by bytes it sorts after PEPE, by a
    # locale's collation before it)
    (15 * _S, "eth", "a", 1, 2000.2, 0.01, 1),
    # DOGE@b: trades, and no quote at all in any venue
    (5 * _S, "DOGE", "b", 1, 0.1, 1000.0, -1),
    (_M + 5 * _S, "DOGE", "b", 2, 0.11, 2000.0, 1),
    # PEPE@a: tiny prices, huge sizes
    (2 * _S, "PEPE", "a", 1, 1.0e-8, 1.0e9, 1),
    (2 * _S + _S // 2, "PEPE", "a", 2, 1.2e-8, 5.0e8, -1),
    # BTC1@b: huge prices, tiny sizes, trade_ids beyond 2**53 (a float64 cannot hold them: exact integers or wrong);
    # its name extends BTC's: by (symbol, venue) it sorts after BTC, as the text "BTC1@b" before "BTC@a"
    (2 * _S, "BTC1", "b", 2**62 + 1, 1.0e9, 1.0e-8, 1),
    (3 * _S, "BTC1", "b", 2**62 + 2, 1.00000005e9, 3.0e-8, -1),
]
EDGE_QUOTES = [  # (ts, symbol, venue, bid_px, bid_qty, ask_px, ask_qty)
    (0, "BTC", "c", 100.2, 1.0, 100.9, 1.0),  # c's only quote for 4 minutes: the best bid all along
    (_S, "BTC", "a", 100.0, 1.0, 100.5, 2.0),  # a and b quote at the same ns: both prevail at it
    (_S, "BTC", "b", 100.1, 1.0, 100.6, 1.0),
    (_S + 1, "BTC", "a", 99.9, 1.0, 100.4, 1.0),  # one ns later: the last quote of a's second 1
    (30 * _S, "BTC", "b", 100.3, 2.0, 100.7, 2.0),
    (_M - 1, "BTC", "a", 100.0, 1.0, 100.3, 1.0),  # last ns of minute 0
    (_M, "BTC", "b", 100.1, 1.0, 100.2, 1.0),  # first ns of minute 1, locked against c's stale bid
    (2 * _M + 10 * _S, "BTC", "a", 100.1, 1.0, 100.8, 1.0),
    (3 * _M, "BTC", "b", 100.0, 1.0, 100.6, 1.0),
    (4 * _M + _S // 2, "BTC", "c", 99.0, 1.0, 99.5, 1.0),  # c again, 4 minutes later, at trade 901's ns
    (10 * _S, "eth", "a", 2000.0, 0.5, 2000.5, 0.5),
    (20 * _S, "eth", "a", 2000.1, 0.5, 2000.6, 0.5),
    (2 * _S, "PEPE", "a", 1.0e-8, 1.0e9, 1.1e-8, 2.0e9),
    (3 * _S, "PEPE", "a", 1.1e-8, 3.0e9, 1.2e-8, 1.0e9),
    (2 * _S, "BTC1", "b", 1.0e9, 1.0e-8, 1.0000001e9, 2.0e-8),
    (4 * _S, "BTC1", "b", 1.00000002e9, 1.0e-8, 1.00000004e9, 1.0e-8),
]


def build_edge_cases(out: Path) -> dict[str, Any]:
    """A small hand-built dataset where wrong answers show (tables above, times from EDGE_T0), written
    with the same writer as the others (dataset.json with each table's sha256).

    - ties at one ns: trades of two venues and quotes of two venues at the same ts; trades of one
      venue sharing a ts, written out of trade_id order, opening and closing bars (the smaller
      trade_id opens, the larger closes: a tie broken by value or by arrival order gets some bar wrong);
    - a stale venue: BTC@c quotes at 0 and not again until 4 minutes later, holding the best bid
      meanwhile (nbbo carries it; its trade at 2.5 minutes joins that quote);
    - minute boundaries exactly at trades and quotes (the first and last ns of minutes 0 and 1);
    - a trade before its venue's first quote (no as-of row);
    - a symbol with a single trade (eth, lower case: answers sort by bytes, not by a locale), a symbol
      with trades and no quotes (DOGE);
    - extreme prices and sizes (PEPE at 1e-8 with sizes of 1e9, BTC1 at 1e9 with sizes of 1e-8) and
      trade_ids above 2**53;
    - a gap: no row after 4 minutes + 0.5 s, so a range there is empty inside the data's span.
    """
    def frame(rows: list[tuple], table: str) -> pl.DataFrame:
        data = pl.DataFrame(rows, schema=TABLES[table].names, orient="row")
        return data.with_columns((pl.col("ts") + EDGE_T0).cast(pl.Datetime("ns", "UTC")))

    writer = _Writer(Path(out))
    try:
        writer.write("trades", frame(EDGE_TRADES, "trades"))
        writer.write("quotes", frame(EDGE_QUOTES, "quotes"))
    except BaseException:
        writer.discard()
        raise
    return writer.close({"kind": "edge_cases", "generator": "dbbench.dataset.build_edge_cases"})
