"""The `dbbench run` and `dbbench report` commands; `register(app)` mounts them on dbbench's CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from data_loaders.atomic import check_writable
from data_loaders.errors import ENGINE, USAGE, fail
from data_loaders.summary import print_summary
from dbbench.engines import ENGINES
from dbbench.engines.base import QUERY_NAMES
from dbbench.workload import DEFAULT_SEED


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(t.replace("_", "")) for t in _split(text)]
    except ValueError as exc:
        raise typer.BadParameter(f"{option}: comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{option}: at least one integer >= 1, got {text!r}")
    return values


def _dsns(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        engine, sep, dsn = pair.partition("=")
        if not sep or engine not in ENGINES:
            raise typer.BadParameter(f"--dsn takes ENGINE=DSN with ENGINE one of {', '.join(ENGINES)}; got {pair!r}")
        out[engine] = dsn
    return out


def dataset_dir(data: Path | None, rows: int | None) -> Path:
    """--data DIR as given (a dataset, or a folder of ticks Parquet whose files are read in each run),
    else a synthetic dataset of --rows rows under .dbbench/data (built once)."""
    from dbbench.dataset import build_synth

    if data is None and rows is None:
        raise typer.BadParameter("give --data DIR (a `dbbench dataset` directory or a folder of ticks Parquet) "
                                 "or --rows N (a synthetic dataset)")
    directory = data or Path(".dbbench/data") / f"synth-{rows}"
    if data is None and not (directory / "dataset.json").exists():
        build_synth(directory, rows)
    elif not directory.is_dir():
        raise typer.BadParameter(f"{directory}: no such folder; build a dataset with `dbbench dataset` or give --rows")
    return directory


def run_cmd(
    engines: str = typer.Option(",".join(ENGINES), help="Comma-separated engines, run one at a time."),
    rows: int = typer.Option(None, help="Build (once) and use a synthetic dataset of about this many rows."),
    data: Path = typer.Option(None, help="A dataset directory (trades.parquet, quotes.parquet, dataset.json), "
                                         "or a folder of ticks Parquet as it is."),
    dsn: list[str] = typer.Option([], help="ENGINE=DSN (repeatable); default $DBBENCH_<ENGINE>_DSN "
                                           "or `dbbench servers`."),
    queries: str = typer.Option(",".join(QUERY_NAMES), help="Comma-separated queries of the suite."),
    repeat: int = typer.Option(10, min=1, help="Timed repetitions per query."),
    warmup: int = typer.Option(1, min=0, help="Untimed (but checked) runs before the timed ones."),
    clients: str = typer.Option("1", help="Concurrency: comma-separated client counts, e.g. 1,10."),
    duration: float = typer.Option(None, min=0.1,
                                   help="Concurrency: seconds per client count (default: one pass each)."),
    cold: bool = typer.Option(False, "--cold", help="Also time each query once right after an engine restart."),
    drop_caches: bool = typer.Option(True, help="On --cold, drop the OS page cache where permitted."),
    batch_rows: str = typer.Option("1000000", help="Load batch-size sweep, comma-separated; the last load stays."),
    seed: int = typer.Option(DEFAULT_SEED, help="The workload's seed: which parameters each run of each query gets "
                                                "(the same for every engine)."),
    out: Path = typer.Option(None, help="Results JSON (default results/dbbench-<UTC time>.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Benchmark the engines on one dataset: load, hot and cold queries checked against Polars, concurrency."""
    from dbbench.runner import RunConfig, run, summary, units

    config = RunConfig(
        data=dataset_dir(data, rows),
        engines=_split(engines),
        dsns=_dsns(dsn),
        queries=_split(queries),
        repeat=repeat,
        warmup=warmup,
        clients=_ints(clients, "--clients"),
        duration_s=duration,
        cold=cold,
        drop_caches=drop_caches,
        batch_rows=_ints(batch_rows, "--batch-rows"),
        seed=seed,
        out=out or Path("results") / f"dbbench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json",
    )
    unknown = [e for e in config.engines if e not in ENGINES]
    if unknown:
        raise typer.BadParameter(f"unknown engines {unknown}; engines: {', '.join(ENGINES)}")
    unknown = [q for q in config.queries if q not in QUERY_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown queries {unknown}; queries: {', '.join(QUERY_NAMES)}")
    try:
        check_writable(config.out)
    except OSError as exc:
        fail(f"dbbench run: cannot write the results file {config.out}: {exc}", USAGE)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True, disable=as_json)
    with bar:
        task = bar.add_task("dbbench run", total=units(config))
        res = run(config, progress=lambda text: bar.update(task, advance=1, description=text))
    for name, engine in res["engines"].items():
        if engine["status"] != "ok":
            typer.echo(f"dbbench run: {engine['status']} {name}: {engine['reason']}", err=True)
    fields = summary(res)
    print_summary("dbbench run", {**fields, "out": str(config.out)}, as_json)
    bad = any(e["status"] == "failed" for e in res["engines"].values())
    raise typer.Exit(ENGINE if bad else 0)


def report_cmd(
    results: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="One or more results JSON files."),
    out: Path = typer.Option(Path("report"), help="Directory for report.md, report.html and the CSV tables."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """ClickBench scores (hot, cold), latency, ingest, storage and concurrency tables (Markdown, CSV) and an offline
    HTML page with bar charts; the runs must be on one dataset."""
    from dbbench.report import write_report
    from dbbench.results import ResultsError

    try:
        written = write_report(results, out)
    except ResultsError as exc:
        fail(f"dbbench report: {exc}")
    print_summary("dbbench report", {"runs": len(results), **{k: str(v) for k, v in written.items()}}, as_json)


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("report")(report_cmd)

