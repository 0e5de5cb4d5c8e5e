"""`hfformer backtest` and `hfformer report`: typer commands, registered by hfformer/cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from data_loaders.errors import USAGE, fail
from data_loaders.summary import print_summary

ERRORS = (ValueError, FileNotFoundError, RuntimeError, KeyError)  # bad input, reported by every hfformer command

AGAIN_HELP = ("Read the test split again knowingly: no warning (each read is recorded in RUN/test_reads.json; "
              "a second one warns).")
SET_HELP = (
    "Rule parameter as key=value (TOML value), repeatable: every, delay_ticks, latency_ms, "
    "exit_at=decision|fill, horizons=[22,28], signal_quantile, require_agreement, "
    "require_interval, interval=[10,90], min_signal, size_thresholds, sizes, base_size, "
    "fill=mid|touch, fees=spot|usdm|paper (named fee schedules; default spot, 10 bp per side), "
    "maker_fee_bps, taker_fee_bps, entry_liquidity=maker|taker, exit_liquidity"
)


def backtest(
    run: Annotated[
        Path, typer.Argument(help="Run directory written by `hfformer train`/`evaluate`.")
    ],
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Book Parquet or directory (repeat for several, in time order); needed "
                                    "only for models without RUN/forecasts."),
    ] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    again: Annotated[bool, typer.Option("--again", help=AGAIN_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Backtest every model's test forecasts; write RUN/backtest.{json,parquet}."""
    from hfformer.backtest import (
        backtest_models,
        config_from_overrides,
        fee_preset,
        load_forecasts,
        write_backtest,
    )

    try:
        config = config_from_overrides(overrides or [])
    except ERRORS as error:
        fail(f"hfformer backtest: settings: {error}", USAGE)
    try:
        result = backtest_models(load_forecasts(run, data, again), config)
        written = write_backtest(run, result)
    except ERRORS as error:
        fail(f"hfformer backtest: {error}")

    def shown(value: float) -> float:  # full precision in JSON, 4 digits in the line
        return value if as_json or isinstance(value, int) else float(f"{value:.4g}")

    keys = ("pnl", "trades", "hit_rate", "sharpe", "max_drawdown", "fees", "turnover")
    per_model = {k: {m: shown(s[k]) for m, s in result.summary.items()} for k in keys}
    bars = next(iter(result.summary.values()))
    print_summary(
        "hfformer backtest",
        {
            "run": str(run),
            "models": len(result.summary),
            "bars": bars["bars"],
            "no_forecast": bars["no_forecast"],
            "fee_preset": fee_preset(config),
            **per_model,
            "sharpe_warning": bars["sharpe_warning"],
            "skipped": result.skipped,
            "wrote": [str(p) for p in written],
        },
        as_json,
    )


def report(
    run: Annotated[
        Path, typer.Argument(help="Run directory written by `hfformer train`/`evaluate`.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default RUN/report).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Turn a run directory into an offline HTML page, PNG figures and Markdown tables."""
    from hfformer.report import build_report

    try:
        written = build_report(run, out)
    except ERRORS as error:
        fail(f"hfformer report: {error}")
    print_summary(
        "hfformer report",
        {
            "run": str(run),
            "html": str(written.html),
            "markdown": str(written.markdown),
            "figures": len(written.figures),
            "models": written.models,
            "missing": written.missing,
        },
        as_json,
    )
