"""The benchmark dataset: a directory of trades.parquet and quotes.parquet, built once, loaded many times.

Generating is a separate step from loading (TSBS style), so load timings never include it.
Both files follow the engine tables' Arrow schemas (`dbbench.engines.base.TRADES` / `QUOTES`),
and dataset.json records what was written (rows, time range, symbols, venues, source, each
table's sha256, and the size of each table written as CSV: the raw size storage is compared with,
counted once here as the batches stream by rather than at every run).

Sources:
- files (`build_from`): ticks Parquet, Binance recordings, Binance CSV or Tardis CSV, read into
  ticks frames by the reader registry (data_loaders.formats); each instrument becomes a (symbol,
  venue), on its receive clock where every row has one, else its exchange clock.
- `binance`: the shared real recordings through the same path (spot and USD-M BTCUSDT as two
  venues on the receive clock: spot bookTicker carries no exchange time).
- `synth`: the synthetic market of `data_loaders.synth`, several symbols x venues (venues of one
  symbol share its price path), streamed chunk by chunk so 100 million rows never sit in memory.

Quotes are unique per (symbol, venue, ts), which makes "the prevailing quote" of the query suite
one row: quotes from files that share a time keep the last received (counted in dataset.json);
the writer refuses any other repeat.
"""

from __future__ import annotations

import functools
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
CHUNK_ROWS = 2_000_000  # synth rows held at once, whatever the scale and the number of markets
SYNTH_ROWS_PER_STEP = 2.81  # rows per market and step, about (a quote + Poisson trades; by seed): sizes chunks
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


def synth_symbols(k: int) -> tuple[str, ...]:
    """The first k synthetic symbols: BTCUSDT, ETHUSDT, SOLUSDT, then SYN003USDT, SYN004USDT, ..."""
    return SYNTH_SYMBOLS[:k] + tuple(f"SYN{i:03d}USDT" for i in range(len(SYNTH_SYMBOLS), k))


def _first_rows(parts: dict[str, list[pl.DataFrame]], k: int) -> dict[str, list[pl.DataFrame]]:
    """The first k rows of one chunk in (ts, table, symbol, venue, row) order: the same rows however the
    market was cut into chunks, since every earlier chunk's rows come before them in that order."""
    keys = pl.concat([f.select("ts", "symbol", "venue").with_columns(
        table=pl.lit(ti), part=pl.lit(pi), row=pl.int_range(pl.len()))
        for ti, frames in enumerate(parts.values()) for pi, f in enumerate(frames)])
    kept = keys.sort("ts", "table", "symbol", "venue", "row").head(k)
    return {table: [f.filter(pl.int_range(pl.len()).is_in(
                kept.filter((pl.col("table") == ti) & (pl.col("part") == pi))["row"].implode()))
                    for pi, f in enumerate(frames)]
            for ti, (table, frames) in enumerate(parts.items())}


def _steps_taken(markets: list[Any], rows: int, chunk_steps: int = 100_000) -> int:
    """The grid steps after which fresh `markets` have given `rows` rows (a quote per market per step, and
    its trades): only the latent paths and trade counts are drawn, the same draws the full build makes, so
    `--days` spans its days whatever the seed's volatility."""
    steps, total = 0, 0
    while True:
        per_step = sum(1 + m.trade_counts(m.advance(chunk_steps)[2]) for m in markets)
        reached = total + np.cumsum(per_step)
        if reached[-1] >= rows:
            return steps + int(np.searchsorted(reached, rows)) + 1
        steps, total = steps + chunk_steps, int(reached[-1])


def build_synth(out: Path, rows: int, seed: int = 0, *, symbols: tuple[str, ...] = SYNTH_SYMBOLS,
                venues: tuple[str, ...] = SYNTH_VENUES, days: float | None = None, chunk_steps: int = 100_000,
                progress: Any = None) -> dict[str, Any]:
    """Exactly `rows` trades+quotes over len(symbols) x len(venues) markets on one time grid, streamed to
    Parquet chunk by chunk (at most `chunk_steps` grid steps and about CHUNK_ROWS rows in memory,
    whatever `rows`).

    The grid has one quote per market per step, 100 ms apart, or spread over `days` when given. Each
    market's rows are in time order across chunks; the last chunk is cut at exactly `rows`."""
    from data_loaders.synth import PARAMS, START_NS, Market

    if rows < 1 or not symbols or not venues or (days is not None and days <= 0):
        raise ValueError("need rows >= 1, days > 0 and at least one symbol and venue")
    if len(set(symbols)) < len(symbols) or len(set(venues)) < len(venues):
        raise ValueError(f"symbols and venues must be distinct, got {symbols} x {venues}")
    markets = [(s, v) for s in symbols for v in venues]
    per_step = SYNTH_ROWS_PER_STEP * len(markets)

    def generators(step_ns: int) -> list[Market]:
        # Venues of one symbol share its latent price path (same seed); each symbol has its own price level.
        return [Market(seed + symbols.index(s), s, v, 1, step_ns,
                       replace(PARAMS, price0=PARAMS.price0 / 10 ** (symbols.index(s) % 4)))
                for s, v in markets]

    step_ns = SYNTH_STEP_NS if days is None else max(1, round(days * 86_400e9 / _steps_taken(generators(1), rows)))
    gens = generators(step_ns)
    writer = _Writer(Path(out))
    written, first = 0, 0
    try:
        while written < rows:
            n_steps = min(chunk_steps, max(1, int(CHUNK_ROWS / per_step)), int((rows - written) / per_step * 1.1) + 1)
            ts = START_NS + np.arange(first, first + n_steps, dtype=np.int64) * step_ns
            first += n_steps
            parts: dict[str, list[pl.DataFrame]] = {table: [] for table in TABLES}
            for (symbol, venue), market in zip(markets, gens):
                chunk = market.chunk(ts)
                for table in TABLES:
                    parts[table].append(_bench_frame(chunk[table], symbol, venue, table))
            n = sum(f.height for frames in parts.values() for f in frames)
            if written + n > rows:
                parts, n = _first_rows(parts, rows - written), rows - written
            for table, frames in parts.items():
                for frame in frames:
                    writer.write(table, frame)
            written += n
            if progress is not None:
                progress(n)
    except BaseException:
        writer.discard()
        raise
    return writer.close({"kind": "synth", "seed": seed, "steps": first, "step_ns": step_ns,
                         "markets": len(markets), "generator": "data_loaders.synth"})


VENUES = {"spot": "binance_spot", "usdm": "binance_usdm", "coinm": "binance_coinm"}  # else the market as named
SKIP_SUFFIXES = (".sha256", ".jsonl", ".json", ".md", ".txt", ".partial")


def input_files(paths: list[Path]) -> list[Path]:
    """The files named, a folder standing for its data files in name order (checksums, quarantines,
    manifests and hidden files left out)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                            and not f.name.endswith(SKIP_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not files:
        raise ValueError(f"no data files in {', '.join(map(str, paths))}")
    return files


def _clock(frames: dict[str, pl.DataFrame]) -> str:
    """The one time column an instrument's tables are written on: the receive time where every row has
    one (the clock all venues of a recording share), else the exchange time."""
    if all(f["local_ts"].null_count() == 0 for f in frames.values()):
        return "local_ts"
    if all(f["ts"].null_count() == 0 for f in frames.values()):
        return "ts"
    raise ValueError("rows with neither an exchange time (ts) nor a receive time (local_ts) for every row")


def _latest_quote_per_ts(quotes: pl.DataFrame, clock: str) -> tuple[pl.DataFrame, int]:
    """One quote per time (the last received: the one that prevails there), and how many it replaced."""
    kept = quotes.unique(clock, keep="last", maintain_order=True)
    return kept, quotes.height - kept.height


def _instruments(paths: list[Path], quarantine: Any, *, fmt: str = "auto", symbol: str | None = None,
                 market: str | None = None) -> tuple[list[tuple[dict[str, Any], dict[str, pl.DataFrame]]],
                                                       dict[str, str]]:
    """Files -> [(what each instrument is, its benchmark tables)], and the files skipped (with why).

    Files of one format and instrument form one continuous input, in the order given (the readers'
    cross-file checks apply); each instrument is a (symbol, venue) of the benchmark tables, on its
    receive clock where it has one, else its exchange clock. Quotes sharing a time keep the last (counted)."""
    from data_loaders import formats, parquet_ticks

    groups: dict[tuple[str, str, str, str], list[Path]] = {}
    picks: dict[tuple[str, str, str, str], tuple[str | None, str | None]] = {}  # the instrument to read
    skipped: dict[str, str] = {}
    for f in input_files(paths):
        found, kinds = formats.contents(f, fmt)
        tables = [k for k in kinds if k in TABLES]
        if not tables:
            skipped[f.name] = f"holds {', '.join(kinds)}, not trades or quotes"
            continue
        held = parquet_ticks.instruments(f) if found == "parquet" and not (symbol or market) else []
        for sym, mkt in held:  # a table of several instruments in columns (a dataset's own): one group each
            groups.setdefault((found, sym, mkt, tables[0]), []).append(f)
            picks[(found, sym, mkt, tables[0])] = sym, mkt
        for table in tables if not held else []:  # the instrument, from the file alone (read again with its group)
            _, stats = formats.read(table, [f], fmt=found, symbol=symbol, market=market)
            if not stats.get("symbol") or not stats.get("market"):
                raise ValueError(f"{f}: names no symbol and market; pass --symbol and --venue")
            groups.setdefault((found, stats["symbol"], stats["market"], table), []).append(f)
            picks[(found, stats["symbol"], stats["market"], table)] = symbol, market
    if not groups:
        raise ValueError(f"no trades or quotes in the files given ({skipped})")
    read: dict[tuple[str, str, str], dict[str, tuple[pl.DataFrame, list[Path]]]] = {}
    for (found, sym, mkt, table), files in groups.items():
        pick_symbol, pick_market = picks[(found, sym, mkt, table)]
        frame, _ = formats.read(table, files, quarantine=quarantine, fmt=found, symbol=pick_symbol,
                                market=pick_market)
        read.setdefault((found, sym.lower(), mkt.lower()), {})[table] = frame, files
    venues = [(sym, VENUES.get(mkt, mkt)) for _, sym, mkt in read]
    twice = sorted({f"{s.upper()}@{v}" for s, v in venues if venues.count((s, v)) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} given in more than one format (e.g. a download's zip and its "
                         f"Parquet): its rows would count twice; give each instrument once")
    instruments = []
    for (found, sym, mkt), tables in read.items():
        frames = {t: frame for t, (frame, _) in tables.items()}
        clock = _clock(frames)
        entry: dict[str, Any] = {"format": found, "symbol": sym.upper(), "venue": VENUES.get(mkt, mkt),
                                 "clock": clock, "files": {t: [str(f) for f in fs] for t, (_, fs) in tables.items()}}
        if "quotes" in frames:
            frames["quotes"], entry["quotes_superseded"] = _latest_quote_per_ts(frames["quotes"], clock)
        entry["rows"] = {t: f.height for t, f in frames.items()}
        instruments.append((entry, {t: _bench_frame(f, entry["symbol"], entry["venue"], t, ts=clock)
                                    for t, f in frames.items()}))
    return instruments, skipped


def build_from(out: Path, paths: list[Path], *, fmt: str = "auto", symbol: str | None = None,
               market: str | None = None, label: str = "files") -> dict[str, Any]:
    """A dataset from files: ticks Parquet (trades, quotes), Binance recordings, Binance public-data
    CSV or Tardis CSV, each read into ticks frames through the reader registry (data_loaders.formats),
    grouped into instruments by `_instruments`. Bad lines go to DIR/inputs.quarantine.jsonl and are
    counted in dataset.json."""
    from data_loaders.quarantine import Quarantine

    writer = _Writer(Path(out))
    try:
        with Quarantine(Path(out) / "inputs.quarantine.jsonl") as quarantine:
            instruments, skipped = _instruments(paths, quarantine, fmt=fmt, symbol=symbol, market=market)
            for _, tables in instruments:
                for table, frame in tables.items():
                    writer.write(table, frame)
    except BaseException:
        writer.discard()
        raise
    return writer.close({"kind": label, "inputs": [entry for entry, _ in instruments], "skipped": skipped,
                         "quarantined": dict(quarantine.counts)})


def build_binance(out: Path, recordings: dict[str, list[Path]] | None = None) -> dict[str, Any]:
    """The shared real recordings (spot and USD-M BTCUSDT: two venues on the receive clock)."""
    from data_loaders.paths import binance_recordings

    recordings = binance_recordings() if recordings is None else recordings
    if not recordings:
        raise FileNotFoundError("no Binance recordings found (see data_loaders.paths.shared_data_dir)")
    return build_from(out, [f for files in recordings.values() for f in files], fmt="binance", label="binance")


def read_manifest(data: Path) -> dict[str, Any]:
    path = Path(data) / "dataset.json"
    if not path.exists():
        raise FileNotFoundError(f"{data} is not a dbbench dataset (no dataset.json); build one with `dbbench dataset`")
    return orjson.loads(path.read_bytes())


def _stamp(path: Path) -> tuple[str, int, int, int]:
    """A file's identity for the memos below: path, inode, size and modification time."""
    st = path.stat()
    return str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _stamped_sha256(stamp: tuple[str, int, int, int]) -> str:
    """A file's sha256, computed once while its inode, size and modification time stay the same
    (`dbbench load` verifies before it streams, `dbbench run` once per engine and per description)."""
    return sha256(Path(stamp[0]))


def _file_sha256(path: Path) -> str:
    return _stamped_sha256(_stamp(path))


def verify_table(data: Path, table: str) -> None:
    """The table file is the one its dataset.json recorded (a folder without one, or a dataset from
    before checksums were recorded, has nothing to compare)."""
    path, manifest = Path(data) / f"{table}.parquet", Path(data) / "dataset.json"
    recorded = read_manifest(data).get("sha256", {}).get(table) if manifest.exists() else None
    if recorded is not None and recorded != _file_sha256(path):
        raise IntegrityError(f"{path} is not the file {Path(data) / 'dataset.json'} records (sha256 differs): "
                             "it changed after the dataset was built; build the dataset again")


def is_ticks_folder(data: Path) -> bool:
    """A folder of ticks Parquet as it is, rather than a dataset `dbbench dataset` built."""
    return Path(data).is_dir() and not (Path(data) / "dataset.json").exists()


def _ticks_files(data: Path) -> list[Path]:
    files = [f for f in input_files([data]) if f.suffix == ".parquet"] if Path(data).is_dir() else []
    if not files:
        raise FileNotFoundError(f"{data} is not a dbbench dataset (no dataset.json) nor a folder of ticks Parquet; "
                                "build one with `dbbench dataset`")
    return files


@functools.lru_cache(maxsize=2)
def _read_ticks_folder(stamps: tuple[tuple[str, int, int, int], ...]) -> dict[str, pl.DataFrame]:
    """The benchmark tables a folder's ticks Parquet files make, read once while the files stay the same
    (`dbbench run` asks for them per engine and per reference answer)."""
    from data_loaders.quarantine import Quarantine

    quarantine = Quarantine(None)
    instruments, _ = _instruments([Path(s[0]) for s in stamps], quarantine, fmt="parquet")
    if quarantine.total:
        folder = Path(stamps[0][0]).parent
        raise ValueError(f"{folder}: {quarantine.total} bad rows ({dict(quarantine.counts)}); build a dataset with "
                         f"`dbbench dataset --from {folder}`, which quarantines them")
    return {t: pl.concat([tables[t] for _, tables in instruments if t in tables])
               if any(t in tables for _, tables in instruments) else pl.DataFrame(schema=pl.Schema(TABLES[t]))
            for t in TABLES}


def _ticks_folder(data: Path) -> dict[str, pl.DataFrame]:
    """A folder of ticks Parquet (no dataset.json), as it is: the benchmark tables its trades and quotes
    files make. A bad row is an error here, not dropped: `dbbench dataset --from` quarantines them."""
    return _read_ticks_folder(tuple(_stamp(f) for f in _ticks_files(data)))


def describe(data: Path) -> dict[str, Any]:
    """What a dataset holds: its dataset.json, or for a folder of ticks Parquet the same fields read from
    the files (rows, time range, symbols, venues, and each file's sha256: the run's dataset identity)."""
    if not is_ticks_folder(data):
        if not Path(data).exists():
            raise FileNotFoundError(f"{data}: no such folder (a dataset.json and its tables, or ticks Parquet); "
                                    "build a dataset with `dbbench dataset`")
        return read_manifest(data)
    files, tables = _ticks_files(data), _ticks_folder(data)
    ts = pl.concat([t["ts"] for t in tables.values()]).dt.epoch("ns")
    return {"source": {"kind": "ticks folder", "path": str(data)}, "rows": {t: f.height for t, f in tables.items()},
            "min_ts": ts.min(), "max_ts": ts.max(),
            "symbols": sorted(set().union(*(f["symbol"].unique() for f in tables.values()))),
            "venues": sorted(set().union(*(f["venue"].unique() for f in tables.values()))),
            "sha256": {f.name: _file_sha256(f) for f in files}}


def verify_dataset(data: Path) -> dict[str, Any]:
    """What `dbbench load` loads: a dataset whose every table still has the sha256 dataset.json records
    (a changed file is an IntegrityError naming it), or a folder of ticks Parquet, described from its files."""
    if not is_ticks_folder(data) and Path(data).exists():
        for table in TABLES:
            verify_table(data, table)
    return describe(data)


def scan_table(data: Path, table: str) -> pl.LazyFrame:
    """One benchmark table of a dataset or a folder of ticks Parquet, for the reference answers."""
    if is_ticks_folder(data):
        return _ticks_folder(data)[table].lazy()
    return pl.scan_parquet(Path(data) / f"{table}.parquet")


def iter_batches(data: Path, table: str, batch_rows: int = 1_000_000) -> Iterator[pa.RecordBatch]:
    """Stream one table of a dataset as Arrow batches in the engine table's schema, `DICTIONARY_COLUMNS`
    as Arrow dictionaries of strings: they hold a few values, and decoding them to plain strings was a
    third of pyarrow's read (every engine takes either). A batch has at most `batch_rows` rows, and ends
    early where the Parquet's dictionary changes (a row group per market in the synthetic data).
    A folder of ticks Parquet (no dataset.json) gives its tables as `verify_dataset` describes them."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    if is_ticks_folder(data):
        arrow = _ticks_folder(data)[table].to_arrow().cast(TABLES[table])
        yield from arrow.to_batches(max_chunksize=batch_rows)
        return
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
