"""`dbbench`: build a dataset, load it into an engine, ask it the suite's questions (answers checked).

    dbbench dataset (--source synth [--scale N --symbols K --days D] | --source binance | --from PATH...) --out DIR
    dbbench load --engine E --data DIR [--dsn DSN]
    dbbench query --engine E --query Q [--dsn DSN] [--data DIR] [--format csv|json|table]
    dbbench servers up|down|status
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from data_loaders.atomic import write_bytes
from data_loaders.errors import ENGINE, EXIT_CODES_HELP, USAGE, ErrorBoundary, fail
from data_loaders.redact import redact
from data_loaders.summary import print_summary
from dbbench import queries
from dbbench.dataset import (
    SYNTH_SYMBOLS,
    build_binance,
    build_from,
    build_synth,
    iter_batches,
    synth_symbols,
    verify_dataset,
)
from dbbench.engines import ENGINES, connect, default_dsn
from dbbench.engines.base import QUERY_NAMES, TABLES, EngineError
from dbbench.run_cli import register as register_run_and_report
from dbbench.servers import servers_app

app = typer.Typer(help="Tick-database benchmark: datasets, engines, the checked query suite.", no_args_is_help=True,
                  cls=ErrorBoundary, epilog=EXIT_CODES_HELP)
app.add_typer(servers_app, name="servers")

LAST_LOAD = Path(".dbbench") / "loaded.json"  # engine and DSN digest -> dataset dir of its last verified load


def _load_key(engine: str, dsn: str) -> str:
    """Which database a load went to: the engine and a digest of its DSN (never the DSN: it may hold a
    password)."""
    return f"{engine} {hashlib.sha256(dsn.encode()).hexdigest()[:16]}"




def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        fail(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}", USAGE)


def _progress(as_json: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
                    TimeRemainingColumn(), disable=as_json, transient=True, console=Console(stderr=True))


@app.command()
def dataset(
    paths: list[Path] = typer.Argument(None, help="More files or folders for --from (`--from A B C`)."),
    source: str = typer.Option(None, help="synth (the synthetic market) or binance (the shared recordings)."),
    sources: list[Path] = typer.Option(None, "--from", help="Files or folders: ticks Parquet (trades, quotes), "
                                       "Binance recordings, Binance CSV or Tardis CSV."),
    out: Path = typer.Option(..., help="Dataset directory: trades.parquet, quotes.parquet, dataset.json."),
    fmt: str = typer.Option("auto", "--format", help="--from: auto, or a format of data_loaders.formats "
                            "(parquet, binance, tardis, binance-csv)."),
    symbol: str = typer.Option(None, help="--from: the instrument, where the files do not name it."),
    venue: str = typer.Option(None, help="--from: the market (spot, usdm, coinm), where the files do not name it."),
    scale: int = typer.Option(1_000_000, "--scale", "--rows", help="synth: exactly this many trades+quotes."),
    symbols: int = typer.Option(len(SYNTH_SYMBOLS), help="synth: number of symbols (each on two venues)."),
    days: float = typer.Option(None, help="synth: the time span in days (default: one quote per market per 100 ms)."),
    seed: int = typer.Option(0, help="synth: random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Build a dataset once (TSBS style: load timings never include generating it)."""
    started = time.perf_counter()
    given = [*(sources or []), *(paths or [])]
    if (source is None) == (not given) or (paths and not sources):
        fail("give --source synth|binance or --from PATH... (one of them)", USAGE)
    if source not in (None, "binance", "synth"):
        fail(f"unknown source {source!r}: binance or synth", USAGE)
    if source == "synth" and (scale < 1 or symbols < 1 or (days is not None and days <= 0)):
        fail("--scale, --symbols and --days must be positive", USAGE)
    try:
        if given:
            manifest = build_from(out, given, fmt=fmt, symbol=symbol, market=venue)
        elif source == "binance":
            manifest = build_binance(out)
        else:
            with _progress(as_json) as bar:
                task = bar.add_task("synth", total=scale)
                manifest = build_synth(out, scale, seed, symbols=synth_symbols(symbols), days=days,
                                       progress=lambda n: bar.update(task, advance=n))
    except (OSError, ValueError, RuntimeError) as exc:
        fail(f"dbbench dataset: {exc}")
    print_summary("dbbench dataset", {"source": source or "files", "out": str(out), "rows": manifest["rows"],
                                      "symbols": len(manifest["symbols"]), "venues": len(manifest["venues"]),
                                      "quarantined": manifest["source"].get("quarantined", {}),
                                      "skipped_files": manifest["source"].get("skipped", {}),
                                      "seconds": time.perf_counter() - started}, as_json)


@app.command()
def load(
    engine: str = typer.Option(..., help=f"One of {', '.join(ENGINES)}."),
    data: Path = typer.Option(..., help="A dataset directory from `dbbench dataset`, or a folder of ticks Parquet."),
    dsn: str = typer.Option(None, help="Engine DSN (default: $DBBENCH_<ENGINE>_DSN, a started server, or built-in)."),
    batch_rows: int = typer.Option(1_000_000, help="Rows per Arrow batch handed to the engine."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Recreate the tables and bulk-load the dataset (timed to the rows visible to a count), then compact each
    table (timed apart); reports rows/s, MB/s, the compaction's seconds and the bytes on disk after it, with what
    they include."""
    _check_engine(engine)
    try:
        manifest = verify_dataset(data)
    except (OSError, ValueError) as exc:  # IntegrityError is a ValueError
        fail(str(exc))
    dsn = dsn or default_dsn(engine)
    fields: dict[str, Any] = {"engine": engine, "dsn": redact(dsn)}
    try:
        db = connect(engine, dsn)
        try:
            fields.update(engine=db.name, version=db.version(), compaction=db.compaction)
            db.warm_up()
            db.create_schema()
            with _progress(as_json) as bar:
                for table in TABLES:
                    task = bar.add_task(f"{db.name} {table}", total=manifest["rows"][table])
                    batches = (bar.update(task, advance=b.num_rows) or b for b in iter_batches(data, table, batch_rows))
                    result = db.load(table, batches)
                    t0 = time.perf_counter()
                    db.compact(table)
                    compact_s = time.perf_counter() - t0
                    storage = db.storage(table)
                    fields[table] = {"rows": result.rows, "rows_per_s": round(result.rows / result.seconds),
                                     "MB_per_s": round(result.bytes_in / result.seconds / 1e6, 1),
                                     "seconds": round(result.seconds, 3), "compact_seconds": round(compact_s, 3),
                                     "bytes_on_disk": storage.bytes, **storage.details,
                                     "storage_includes": storage.includes}
        finally:
            db.close()
    except (EngineError, OSError, ValueError) as exc:
        fail(f"{engine} ({redact(dsn)}): {exc}", ENGINE)
    loads = orjson.loads(LAST_LOAD.read_bytes()) if LAST_LOAD.exists() else {}
    write_bytes(LAST_LOAD, orjson.dumps({**loads, _load_key(engine, dsn): str(Path(data).resolve())}))
    print_summary("dbbench load", fields, as_json)


def _last_loaded(engine: str, dsn: str) -> Path:
    loads = orjson.loads(LAST_LOAD.read_bytes()) if LAST_LOAD.exists() else {}
    key = _load_key(engine, dsn)
    if key not in loads:
        fail(f"no --data given and no `dbbench load --engine {engine}` into this database ({redact(dsn)}) "
             f"recorded in {LAST_LOAD}", USAGE)
    return Path(loads[key])


@app.command()
def query(
    engine: str = typer.Option(..., help=f"One of {', '.join(ENGINES)}."),
    query: str = typer.Option(..., "--query", help=f"One of {', '.join(QUERY_NAMES)}."),
    dsn: str = typer.Option(None, help="Engine DSN (default as for `load`)."),
    data: Path = typer.Option(None, help="The dataset loaded (default: the last one `dbbench load` loaded)."),
    start: int = typer.Option(None, help="Range start, UTC ns (default: the dataset's first minute)."),
    end: int = typer.Option(None, help="Range end, UTC ns, exclusive (default: after the dataset's last minute)."),
    symbol: str = typer.Option(None, help="range_scan symbol (default: the dataset's first)."),
    scan_start: int = typer.Option(None, help="range_scan window start, UTC ns (the window is 5 minutes)."),
    fmt: str = typer.Option("table", "--format", help="csv, json or table."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run one query: its answer on stdout (times as UTC datetimes, whatever the engine); on stderr whether it
    matches the Polars reference (exit 4 if not)."""
    _check_engine(engine)
    if query not in QUERY_NAMES:
        fail(f"unknown query {query!r}; queries: {', '.join(QUERY_NAMES)}", USAGE)
    if fmt not in ("csv", "json", "table"):
        fail(f"unknown format {fmt!r}: csv, json or table", USAGE)
    dsn = dsn or default_dsn(engine)
    data = data or _last_loaded(engine, dsn)
    try:
        params = queries.params_for(query, queries.default_params(data))  # per-row queries: their window
    except FileNotFoundError as exc:
        fail(f"{data} is not a dbbench dataset: {exc}")
    given = {"start": start, "end": end, "symbol": symbol, "scan_start": scan_start}
    params.update({k: v for k, v in given.items() if v is not None})
    if scan_start is not None:
        params["scan_end"] = scan_start + queries.SCAN_NS
    try:
        db = connect(engine, dsn)
        try:
            t0 = time.perf_counter()
            answer = db.query(query, params)
            seconds = time.perf_counter() - t0
            name = db.name
        finally:
            db.close()
    except (EngineError, NotImplementedError, OSError) as exc:
        fail(f"{engine} ({redact(dsn)}): {exc}", ENGINE)
    reference = queries.reference(query, data, params)
    verdict = queries.compare(answer, reference, query)
    answer = queries.as_contract(answer, reference)  # times as UTC datetimes from every engine
    if fmt == "csv":
        print(answer.write_csv(), end="")
    elif fmt == "json":
        print(answer.write_json())
    else:
        with pl.Config(tbl_rows=20, tbl_cols=-1):
            print(answer)
    print_summary("dbbench query", {"engine": name, "query": query, "rows": answer.height,
                                    "seconds": round(seconds, 4), "correct": verdict.ok, "verdict": str(verdict)},
                  as_json, err=True)  # stdout holds the answer alone
    if not verdict.ok:
        raise typer.Exit(ENGINE)


register_run_and_report(app)

if __name__ == "__main__":
    app()
