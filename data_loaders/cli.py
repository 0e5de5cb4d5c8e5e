"""`ticks`: exchange feeds and files -> validated Parquet (trades, quotes, book), synthetic markets.

Every command prints a one-line summary (or JSON with --json) and exits non-zero with a clear
message on failure. Files given together are one continuous recording.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import polars as pl
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from data_loaders import formats, parquet_ticks
from data_loaders.atomic import atomic_output, check_writable
from data_loaders.errors import ENGINE, EXIT_CODES_HELP, USAGE, ErrorBoundary, fail
from data_loaders.quarantine import Quarantine, quarantine_path
from data_loaders.summary import print_summary

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, cls=ErrorBoundary, epilog=EXIT_CODES_HELP)
err = Console(stderr=True)

Files = Annotated[
    list[Path],
    typer.Argument(exists=True, dir_okay=False, help="input files, in order (one recording)"),
]
Out = Annotated[Path, typer.Option("--out", help="output Parquet file")]
Format = Annotated[str, typer.Option("--format", help="|".join(formats.FORMATS))]
Json = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
Symbol = Annotated[
    str | None,
    typer.Option("--symbol", help="instrument, e.g. BTCUSDT, where the file names do not say"),
]
Venue = Annotated[
    str | None,
    typer.Option("--venue", help="market, e.g. spot or usdm, where the file names do not say"),
]


@contextmanager
def _progress(what: str) -> Iterator[None]:
    """A spinner with elapsed time on stderr while long work runs (hidden when not a terminal)."""
    with Progress(
        SpinnerColumn(), TextColumn(what), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        bar.add_task(what, total=None)
        yield




def _write(frame: pl.DataFrame, out: Path, kind: str, fmt: str, stats: dict) -> None:
    metadata = {"kind": kind, "format": fmt}
    for key in ("symbol", "market"):
        if key in stats:
            metadata[key] = str(stats[key])
    with atomic_output(out, checksum=True) as partial:
        frame.write_parquet(partial, metadata=metadata)


def _run(command: str, files: list[Path], out: Path, as_json: bool, **options) -> None:
    """Shared body of trades/quotes/book: read through the registry with quarantine next to `out`,
    write, summarise."""
    started = time.perf_counter()
    try:
        check_writable(out)
    except OSError as exc:
        fail(f"cannot write {out}: {exc}", USAGE)
    try:
        with (
            Quarantine(quarantine_path(out)) as quarantine,
            _progress(f"{command}: reading {len(files)} file(s)"),
        ):
            frame, stats = formats.read(command, files, quarantine=quarantine, **options)
            if frame.height or not quarantine.total:
                _write(frame, out, command, stats["format"], stats)
    except (OSError, ValueError, RuntimeError) as exc:  # includes FormatError and GapError
        fail(str(exc))
        return
    if not frame.height and quarantine.total:
        fail(f"no usable {command} rows: every one of the {quarantine.total:,} bad lines went to {quarantine.path} "
             f"(reasons: {dict(quarantine.counts)}); {out} was not written")
    seconds = time.perf_counter() - started
    stats.pop("file_rows", None)
    fields = {**stats, "out": str(out), "seconds": round(seconds, 3)}
    if "messages" in stats:
        fields["msgs_per_s"] = round(stats["messages"] / seconds) if seconds > 0 else 0
    if quarantine.total:
        fields["quarantine"] = str(quarantine.path)
    print_summary(command, fields, as_json)


@app.command()
def book(
    files: Files,
    out: Out,
    levels: Annotated[int, typer.Option("--levels", min=1, help="book levels per side")] = 10,
    every: Annotated[
        str | None, typer.Option("--every", help="resample on a fixed grid, e.g. 100ms")
    ] = None,
    on_gap: Annotated[
        str, typer.Option("--on-gap", help="flag|drop|error: what an update-id gap does")
    ] = "flag",
    fmt: Format = "auto",
    symbol: Symbol = None,
    venue: Venue = None,
    as_json: Json = False,
) -> None:
    """Rebuild the order book: one row per applied diff, or the last state on a fixed grid."""
    if on_gap not in ("flag", "drop", "error"):
        fail(f"--on-gap must be flag, drop or error, not {on_gap!r}", USAGE)
    _run("book", files, out, as_json, fmt=fmt, symbol=symbol, market=venue, levels=levels, every=every,
         on_gap=on_gap)


@app.command()
def trades(
    files: Files,
    out: Out,
    fmt: Format = "auto",
    symbol: Symbol = None,
    venue: Venue = None,
    as_json: Json = False,
) -> None:
    """Trades to Parquet (ts, local_ts, trade_id, price, qty, side)."""
    _run("trades", files, out, as_json, fmt=fmt, symbol=symbol, market=venue)


@app.command()
def quotes(
    files: Files,
    out: Out,
    fmt: Format = "auto",
    symbol: Symbol = None,
    venue: Venue = None,
    as_json: Json = False,
) -> None:
    """Best bid/offer quotes (bookTicker) to Parquet."""
    _run("quotes", files, out, as_json, fmt=fmt, symbol=symbol, market=venue)


@app.command()
def synth(
    minutes: Annotated[
        float, typer.Option("--minutes", min=0.0, help="length of the market to generate")
    ],
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    seed: Annotated[int, typer.Option("--seed")] = 0,
    market: Annotated[
        str,
        typer.Option(
            "--market",
            help="regime: hidden regimes, self-exciting flow, queue-dependent impact (oracle and "
            "ceiling columns); linear: v1, a Gaussian signal the book shows linearly",
        ),
    ] = "regime",
    as_json: Json = False,
) -> None:
    """Generate a seeded synthetic BTC-USDT market: DIR/{trades,quotes,book}.parquet and DIR/oracle.parquet
    (oracle_h{h}; the regime market adds ceiling_h{h}, the best forecast from the files alone)."""
    from data_loaders.synth import MARKETS, generate

    if market not in MARKETS:
        fail(f"--market must be one of {', '.join(MARKETS)}, not {market!r}", USAGE)
    try:
        with _progress(f"synth: {minutes} minutes of the {market} market"):
            stats = generate(out, minutes, seed, market=market)
    except (OSError, ValueError, RuntimeError) as exc:
        fail(str(exc))
        return
    print_summary("synth", {"out": str(out), **stats}, as_json)


def _parquet_info(path: Path) -> dict:
    meta = pq.read_metadata(path)
    columns = meta.schema.names
    kv = parquet_ticks.metadata(path)
    info: dict = {"kind": parquet_ticks.kind_of(path), "rows": meta.num_rows, "columns": len(columns)}
    time_col = "ts" if "ts" in columns else ("local_ts" if "local_ts" in columns else None)
    if time_col:
        span = (
            pl.scan_parquet(path)
            .select(pl.col(time_col).min().alias("a"), pl.col(time_col).max().alias("b"))
            .collect()
        )
        first, last = span.row(0)
        if first is not None:
            info["from"] = str(pl.Series([first, last]).cast(pl.Datetime("ns", "UTC"))[0])
            info["to"] = str(pl.Series([first, last]).cast(pl.Datetime("ns", "UTC"))[1])
    info.update({k: v for k, v in kv.items() if k in ("symbol", "market", "venue", "format")})
    info["column_names"] = ",".join(columns)
    return info


def _recording_info(path: Path) -> dict:
    from data_loaders import binance_ws

    parsed = binance_ws.parse_recording([path], Quarantine(None))
    good = parsed.status == binance_ws.OK
    names = {binance_ws.K_DEPTH: "depth_diffs", binance_ws.K_TRADE: "trades", binance_ws.K_AGGTRADE: "agg_trades",
             binance_ws.K_TICKER: "book_tickers",
             binance_ws.K_SNAPSHOT: "snapshots", binance_ws.K_OTHER: "skipped"}  # fmt: skip
    info: dict = {
        "kind": "binance-recording",
        "symbol": parsed.symbol,
        "market": parsed.market,
    }
    info["messages"] = parsed.messages
    info.update({name: int(((parsed.kind == k) & good).sum()) for k, name in names.items()})
    info["bad_lines"] = {
        binance_ws.STATUS_NAMES[c]: int((parsed.status == c).sum())
        for c in binance_ws.STATUS_NAMES
        if (parsed.status == c).any()
    }
    info["ts_unit"] = ",".join(parsed.ts_units.values())
    stamps = parsed.local_ts[parsed.status != binance_ws.MALFORMED]
    if stamps.size:
        span = pl.Series([stamps.min(), stamps.max()]).cast(pl.Datetime("ns", "UTC"))
        info["from"], info["to"] = str(span[0]), str(span[1])
    return info


@app.command()
def info(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], as_json: Json = False
) -> None:
    """What a file holds: kind, rows, time range, columns (Parquet) or message counts (recording)."""
    try:
        with open(file, "rb") as fh:
            is_parquet = fh.read(4) == b"PAR1"
        if is_parquet:
            fields = _parquet_info(file)
        else:
            fmt = formats.detect(file)
            fields = (
                _recording_info(file)
                if fmt == "binance"
                else {"kind": fmt, "bytes": file.stat().st_size}
            )
    except (OSError, ValueError, RuntimeError) as exc:
        fail(f"{file}: {exc}")
        return
    print_summary("info", {"file": str(file), **fields}, as_json)


def _seconds(text: str, option: str) -> float:
    """A duration like 90s, 30m, 1h or 2d, in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        fail(f"{option} {text!r}: expected a positive duration such as 90s, 30m, 1h", USAGE)
    return value


@app.command()
def record(
    market: Annotated[str, typer.Option("--market", help="spot|usdm|coinm")],
    symbols: Annotated[str, typer.Option("--symbols", help="comma-separated, e.g. btcusdt,ethusdt")],
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    rotate: Annotated[str, typer.Option("--rotate", help="start a new file every (UTC-aligned) period")] = "1h",
    duration: Annotated[
        str | None, typer.Option("--duration", help="stop after this long (default: until Ctrl-C or SIGTERM)")
    ] = None,
    trades: Annotated[str, typer.Option("--trades", help="trade|aggTrade")] = "trade",
    depth: Annotated[str, typer.Option("--depth", help="diff stream, e.g. depth@100ms")] = "depth@100ms",
    ws_url: Annotated[
        str | None, typer.Option("--ws-url", help="websocket base URL (testnet, a local replay)")
    ] = None,
    rest_url: Annotated[str | None, typer.Option("--rest-url", help="REST base URL for depth snapshots")] = None,
    as_json: Json = False,
) -> None:
    """Record Binance's live streams (depth diffs, bookTicker, trades) in the line format `ticks book` reads."""
    import asyncio
    import logging

    from data_loaders.record import MARKETS, RecordConfig, Recorder

    if market not in MARKETS:
        fail(f"--market must be one of {', '.join(MARKETS)}, not {market!r}", USAGE)
    names = [s.strip().lower() for s in symbols.split(",") if s.strip()]
    if not names:
        fail("--symbols: no symbol given", USAGE)
    if trades not in ("trade", "aggTrade"):
        fail(f"--trades must be trade or aggTrade, not {trades!r}", USAGE)
    try:
        check_writable(out / "probe")
    except OSError as exc:
        fail(f"cannot write to {out}: {exc}", USAGE)
    config = RecordConfig(market, names, out, ws_url, rest_url, depth, trades, int(_seconds(rotate, "--rotate")),
                          duration_s=_seconds(duration, "--duration") if duration else None)  # fmt: skip
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as bar:  # fmt: skip
        task = bar.add_task("record: connecting", total=None)

        def status(recorder: Recorder) -> None:
            s = recorder.stats
            bar.update(task, description=f"record: {sum(s.messages.values()):,} messages, {s.gaps} gaps, "
                                         f"{s.disconnects} reconnects, {s.snapshots} snapshots")

        recorder = Recorder(config, status)
        try:
            summary = asyncio.run(recorder.run())
        except ConnectionError as exc:
            fail(str(exc), ENGINE)
            return
    print_summary("record", summary, as_json)


@app.command()
def download(
    market: Annotated[str, typer.Option("--market", help="spot|usdm|coinm")],
    symbol: Annotated[str, typer.Option("--symbol", help="e.g. BTCUSDT")],
    first: Annotated[str, typer.Option("--from", help="first UTC day, YYYY-MM-DD")],
    last: Annotated[str, typer.Option("--to", help="last UTC day, YYYY-MM-DD (included)")],
    out: Annotated[Path, typer.Option("--out", help="output directory (the archive's layout below it)")],
    kinds: Annotated[
        str, typer.Option("--kinds", help="any of trades,aggTrades,bookTicker")
    ] = "trades,aggTrades,bookTicker",
    base_url: Annotated[str, typer.Option("--base-url", help="archive server")] = "https://data.binance.vision",
    as_json: Json = False,
) -> None:
    """Binance's public daily archives, each zip checked against its published sha256, to ticks Parquet."""
    from datetime import date

    from data_loaders import download as archives

    started = time.perf_counter()
    try:
        first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as exc:
        fail(f"--from/--to: {exc}; expected YYYY-MM-DD", USAGE)
        return
    wanted = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if market not in archives.MARKET_DIRS or not wanted or set(wanted) - set(archives.KINDS) or last_day < first_day:
        fail(f"expected --market {'|'.join(archives.MARKET_DIRS)}, --kinds among {','.join(archives.KINDS)} "
             f"and --from <= --to (got {market!r}, {kinds!r}, {first}..{last})", USAGE)  # fmt: skip
    try:
        check_writable(out / "probe")
    except OSError as exc:
        fail(f"cannot write to {out}: {exc}", USAGE)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as bar:  # fmt: skip
        task = bar.add_task("download", total=None)
        try:
            stats = archives.download(market, symbol, first_day, last_day, out, wanted, base_url,
                                      lambda name: bar.update(task, description=f"download: {name}"))  # fmt: skip
        except archives.ServerError as exc:
            fail(str(exc), ENGINE)
            return
        except (OSError, ValueError) as exc:
            fail(str(exc))
            return
    fields = {"market": market, "symbol": symbol.upper(), "days": (last_day - first_day).days + 1,
              "files": len(stats.files), "downloaded": stats.downloaded, "resumed": stats.resumed,
              "already_done": stats.skipped_done, "not_published": len(stats.not_published),
              "rows": stats.rows, "bad_lines": stats.bad_lines, "bytes": stats.bytes, "out": str(out),
              "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    if stats.not_published:
        fields["not_published_list"] = ",".join(stats.not_published)
    print_summary("download", fields, as_json)


if __name__ == "__main__":
    app()
