"""The `hfformer` command: train, evaluate, predict, export (backtest and report register below)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from data_loaders.errors import EXIT_CODES_HELP, USAGE, ErrorBoundary, fail
from data_loaders.summary import print_summary
from hfformer.analysis_cli import AGAIN_HELP, ERRORS, backtest, report

app = typer.Typer(help="HFformer, LSTM, linear, LightGBM and naive forecasters of order-book returns.",
                  no_args_is_help=True, add_completion=False, cls=ErrorBoundary,
                  epilog=EXIT_CODES_HELP)

JSON = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]




@app.command()
def train(
    data: Annotated[list[Path], typer.Option(help="Book Parquet, or a directory (synthetic: book + oracle)"
                                                       "; repeat --data for several, in time order.")],
    out: Annotated[Path, typer.Option(help="Run directory (RUN).")],
    model: Annotated[str, typer.Option(
        help="hfformer, lstm, linear (ridge on per-level features), lightgbm, or naive (ridge on the summed "
             "imbalance).")] = "hfformer",
    name: Annotated[str | None, typer.Option(help="Directory name under RUN (default: the model).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config (see hfformer/default.toml).")] = None,
    overrides: Annotated[list[str] | None,
                         typer.Option("--set", help="section.key=value (TOML value), repeatable.")] = None,
    per_horizon: Annotated[bool, typer.Option("--per-horizon", help="One model per horizon.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from RUN/<name>/checkpoint.pt.")] = False,
    as_json: JSON = False,
) -> None:
    """Train one model into RUN/<name>/ (checkpoint.pt, metrics.csv); RUN/config.toml is the resolved config."""
    from hfformer.checkpoint import checkpoint_path, load_checkpoint
    from hfformer.config import load_config
    from hfformer.train import train as run_train

    try:
        base = load_checkpoint(checkpoint_path(out, name or model))["config"] if resume else None
    except ERRORS as error:
        fail(f"hfformer train --resume: {error}")
    try:
        sets = list(overrides or []) + (["train.per_horizon=true"] if per_horizon else [])
        cfg = load_config(config, sets, base=base)
    except ERRORS as error:
        fail(f"hfformer train: settings: {error}", USAGE)
    try:
        fields = run_train(data, out, model, cfg, name=name, resume=resume)
    except ERRORS as error:
        fail(f"hfformer train: {error}")
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        print_summary("hfformer train", fields, as_json)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory written by `hfformer train`.")],
    data: Annotated[list[Path], typer.Option(help="The same book Parquet or directory the run was trained on"
                                                       "; repeat --data for several, in time order.")],
    bootstrap: Annotated[int, typer.Option(help="Block-bootstrap resamples for the 95% intervals.")] = 200,
    again: Annotated[bool, typer.Option("--again", help=AGAIN_HELP)] = False,
    as_json: JSON = False,
) -> None:
    """Every model of RUN (+ zero, + oracle on synthetic data) on the same test windows; the read of the
    test split is recorded in RUN/test_reads.json, and a second one warns unless --again."""
    from hfformer.evaluate import evaluate as run_evaluate
    from hfformer.evaluate import print_table

    try:
        result = run_evaluate(run, data, n_boot=bootstrap, again=again)
    except ERRORS as error:
        fail(f"hfformer evaluate: {error}")
    table = result.pop("table")
    if not as_json:
        print_table(table)
        typer.echo(f"data: {result['market']}", err=True)
        if result["too_little_data"]:
            typer.echo("warning: too little data to tell models apart: " + "; ".join(result["too_little_data"]),
                       err=True)
    print_summary("hfformer evaluate", {**result, "wrote": f"{run}/evaluation.csv,json forecasts/"}, as_json)


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run directory written by `hfformer train`.")],
    data: Annotated[list[Path], typer.Option(help="Book Parquet or directory to forecast over"
                                                       "; repeat --data for several, in time order.")],
    out: Annotated[Path, typer.Option(help="Forecasts Parquet to write.")],
    model: Annotated[str, typer.Option(help="Model name under RUN.")] = "hfformer",
    again: Annotated[bool, typer.Option("--again", help=AGAIN_HELP)] = False,
    as_json: JSON = False,
) -> None:
    """Forecast every window with valid inputs; write ts, prices and f_h{h}_q{q} columns. On the data RUN was
    trained on, that covers its test split: the read is recorded in RUN/test_reads.json."""
    from hfformer.predict import predict as run_predict

    try:
        fields = run_predict(run, data, out, model=model, again=again)
    except ERRORS as error:
        fail(f"hfformer predict: {error}")
    print_summary("hfformer predict", fields, as_json)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run directory written by `hfformer train`.")],
    out: Annotated[Path, typer.Option(help="Model file to write.")],
    fmt: Annotated[str, typer.Option("--format", help="Only onnx.")] = "onnx",
    model: Annotated[str, typer.Option(help="Model name under RUN (hfformer or lstm).")] = "hfformer",
    tolerance: Annotated[float, typer.Option(help="Max |ONNX Runtime - PyTorch| allowed.")] = 1e-4,
    as_json: JSON = False,
) -> None:
    """Export a torch model to ONNX and check ONNX Runtime agrees with PyTorch."""
    from hfformer.export import export as run_export

    try:
        fields = run_export(run, out, model=model, fmt=fmt, tolerance=tolerance)
    except (*ERRORS, ImportError) as error:
        fail(f"hfformer export: {error}")
    print_summary("hfformer export", fields, as_json)


@app.command()
def tune(
    data: Annotated[list[Path], typer.Option(help="Book Parquet, or a directory (synthetic: book + oracle)"
                                                       "; repeat --data for several, in time order.")],
    out: Annotated[Path, typer.Option(help="Directory for the trials (trial<k>/), tune.json and best.toml.")],
    model: Annotated[str, typer.Option(help="hfformer or lstm.")] = "hfformer",
    budget: Annotated[int, typer.Option(min=1, help="Trials: the same number for every model compared.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the draw of trials.")] = 0,
    config: Annotated[Path | None, typer.Option(help="TOML config every trial starts from.")] = None,
    overrides: Annotated[list[str] | None,
                         typer.Option("--set", help="section.key=value (TOML value), repeatable.")] = None,
    as_json: JSON = False,
) -> None:
    """Seeded random search (learning rate, width, dropout) chosen on validation loss; never reads test."""
    from hfformer.tune import tune as run_tune

    try:
        result = run_tune(data, out, model, budget, config, list(overrides or []), seed,
                          progress=lambda line: typer.echo(line, err=True))
    except ERRORS as error:
        fail(f"hfformer tune: {error}")
    print_summary("hfformer tune", {**result, "wrote": f"{out}/best.toml,tune.json"}, as_json)


@app.command()
def compare(
    side_a: Annotated[str, typer.Argument(metavar="A", help="RUN[:model], or several (seeds) joined by commas.")],
    side_b: Annotated[str, typer.Argument(metavar="B", help="The same for the other side.")],
    resamples: Annotated[int, typer.Option(help="Block-bootstrap resamples.")] = 1000,
    as_json: JSON = False,
) -> None:
    """Paired comparison on the same test windows: 95% interval of MSE(A) - MSE(B) per horizon."""
    from hfformer.compare import compare as run_compare
    from hfformer.compare import print_comparison

    try:
        result = run_compare(side_a, side_b, n_boot=resamples)
    except ERRORS as error:
        fail(f"hfformer compare: {error}")
    if not as_json:
        print_comparison(result)
    verdicts = {r["horizon"]: r["verdict"] for r in result["rows"]}
    print_summary("hfformer compare", {**{k: v for k, v in result.items() if k != "rows"}, "verdicts": verdicts}
                  | ({"rows": result["rows"]} if as_json else {}), as_json)


@app.command()
def walkforward(
    data: Annotated[list[Path], typer.Option(help="Book Parquet or directory, on a regular time grid"
                                                       "; repeat --data for several, in time order.")],
    out: Annotated[Path, typer.Option(help="Output directory: fold<k>/ runs and walkforward.csv,json.")],
    models: Annotated[str, typer.Option(help="Comma-separated models trained in every fold.")] = "naive,lstm,hfformer",
    every: Annotated[str, typer.Option(help="Test period: 'day' (UTC days) or hours, e.g. '6h'.")] = "day",
    min_train_hours: Annotated[float, typer.Option(help="Data before the first test period.")] = 1.0,
    config: Annotated[Path | None, typer.Option(help="TOML config (see hfformer/default.toml).")] = None,
    overrides: Annotated[list[str] | None,
                         typer.Option("--set", help="section.key=value (TOML value), repeatable.")] = None,
    rule: Annotated[list[str] | None,
                    typer.Option("--rule", help="Backtest rule key=value, as `hfformer backtest --set` "
                                 "(fees=spot|usdm|paper; default spot).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Block-bootstrap resamples for the 95% intervals.")] = 200,
    as_json: JSON = False,
) -> None:
    """Walk-forward: per test period, train on everything before it, then evaluate and backtest."""
    from hfformer.backtest import config_from_overrides
    from hfformer.config import load_config
    from hfformer.walkforward import print_folds
    from hfformer.walkforward import walkforward as run_walkforward

    try:
        cfg = load_config(config, list(overrides or []))
        rule_config = config_from_overrides(list(rule or []))
    except ERRORS as error:
        fail(f"hfformer walkforward: settings: {error}", USAGE)
    try:
        result = run_walkforward(data, out, [m.strip() for m in models.split(",") if m.strip()], cfg,
                                 every=every, min_train_hours=min_train_hours, backtest_config=rule_config,
                                 n_boot=bootstrap, progress=lambda line: typer.echo(line, err=True))
    except ERRORS as error:
        fail(f"hfformer walkforward: {error}")
    table = result.pop("table")
    if not as_json:
        print_folds(table, result["market"])
    print_summary("hfformer walkforward", result, as_json)


# `hfformer backtest` and `hfformer report` live in hfformer/analysis_cli.py.
app.command()(backtest)
app.command()(report)

if __name__ == "__main__":  # torchrun --nproc_per_node N -m hfformer.cli train ...
    app()
