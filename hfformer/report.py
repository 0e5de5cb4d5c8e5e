"""A run directory -> one offline HTML page (figures inlined as base64 PNG), the PNGs, and Markdown.

Reads what train/evaluate/backtest wrote into RUN: <model>/metrics.csv, evaluation.csv,
forecasts/<model>.parquet and backtest.{json,parquet} (run here with the default rule when
absent). Sections whose inputs are missing say so instead of failing the whole report.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import orjson
import polars as pl

from data_loaders.atomic import atomic_output, checked, write_bytes
from data_loaders.features import target_scale
from hfformer.backtest import (
    backtest_models,
    epoch_ns,
    load_forecasts,
    read_backtest,
    write_backtest,
)
from hfformer.config import PAPER_HORIZONS

# Published test results (sign accuracy, R2) of the HFformer paper, drawn as reference marks.
PUBLISHED = {
    "hfformer": {
        1: (0.565, 0.100),
        3: (0.664, 0.114),
        5: (0.687, 0.105),
        10: (0.678, 0.079),
        20: (0.636, 0.050),
        30: (0.601, 0.028),
    },
    "lstm": {
        1: (0.561, 0.094),
        3: (0.661, 0.089),
        5: (0.690, 0.096),
        10: (0.679, 0.074),
        20: (0.619, 0.040),
        30: (0.583, 0.030),
    },
}
FAN_ORIGINS = 8  # forecast fans drawn per model in the fan chart


@dataclass
class Section:
    title: str
    text: str = ""
    figure: str | None = None  # PNG file name in the output directory
    table: pl.DataFrame | None = None  # already formatted as strings
    code: str = ""  # shown verbatim


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    missing: list[str] = field(
        default_factory=list
    )  # inputs that were absent, with what was skipped


def read_metrics(path: Path) -> pl.DataFrame:
    """RUN/<model>/metrics.csv, numeric (an empty val_loss column would read as text)."""
    numeric = ["epoch", "step", "train_loss", "val_loss", "lr", "windows_per_s"]
    return pl.read_csv(path).with_columns(pl.col(numeric).cast(pl.Float64))


def fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def model_colors(models: list[str]) -> dict[str, str]:
    """One colour per model in every figure; the oracle is grey (the realised price is black)."""
    grey = "#7f7f7f"
    palette = iter(
        c for c in map(matplotlib.colors.to_hex, plt.get_cmap("tab10").colors) if c != grey
    )
    return {m: grey if m == "oracle" else next(palette) for m in models}


def save(fig: plt.Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=110, bbox_inches="tight", format=path.suffix.lstrip("."))
    plt.close(fig)
    return path


def pnl_figure(bars: pl.DataFrame, colors: dict[str, str], out_dir: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for model, part in bars.partition_by("model", as_dict=True, maintain_order=True).items():
        ax.plot(
            epoch_ns(part["exit_ts"]).astype("datetime64[ns]"),
            part["cum_pnl"].to_numpy(),
            color=colors[model[0]],
            label=f"{model[0]} ({part['cum_pnl'][-1]:+.2f})",
            lw=1.4,
        )
    ax.axhline(0, color="grey", lw=0.7)
    ax.set(
        title="Cumulative PnL after fees (test split)",
        ylabel="PnL (quote currency)",
        xlabel="time (UTC)",
    )
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return save(fig, out_dir, "pnl.png")


def accuracy_figure(evaluation: pl.DataFrame, colors: dict[str, str], out_dir: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, title in ((axes[0], "sign_acc", "Sign accuracy"), (axes[1], "r2", "R²")):
        for (model,), part in (
            evaluation.sort("horizon")
            .partition_by("model", as_dict=True, maintain_order=True)
            .items()
        ):
            h = part["horizon"].to_numpy()
            ax.plot(h, part[metric].to_numpy(), color=colors[model], label=model, lw=1.4)
            if f"{metric}_lo" in part.columns:
                ax.fill_between(
                    h,
                    part[f"{metric}_lo"].to_numpy(),
                    part[f"{metric}_hi"].to_numpy(),
                    color=colors[model],
                    alpha=0.18,
                    lw=0,
                )
        for (name, points), marker in zip(PUBLISHED.items(), ("x", "+")):
            hs = sorted(points)
            ax.scatter(
                hs,
                [points[h][metric == "r2"] for h in hs],
                marker=marker,
                color="dimgrey",
                zorder=3,
                label=f"published {name}",
            )
        ax.set(title=f"{title} per horizon (bands: bootstrap CI)", xlabel="horizon h (ticks)")
        ax.grid(alpha=0.3)
    axes[0].axhline(0.5, color="grey", lw=0.7)
    axes[1].axhline(0, color="grey", lw=0.7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), frameon=False)
    fig.subplots_adjust(bottom=0.24)
    return save(fig, out_dir, "accuracy.png")


def fan_stretch(price: np.ndarray, has_forecast: np.ndarray, length: int) -> int | None:
    """Start of the `length`-row block with the widest price range and forecasts at every row."""
    blocks = (price.size - 1) // length
    if blocks < 1:
        return None
    ranges = np.ptp(price[: blocks * length].reshape(blocks, length), axis=1)
    complete = has_forecast[: blocks * length].reshape(blocks, length).all(axis=1)
    if not complete.any():
        return None
    return int(np.argmax(np.where(complete, ranges, -1.0))) * length


def fan_figure(
    frames: dict[str, pl.DataFrame], colors: dict[str, str], out_dir: Path
) -> Path | None:
    """Median and q10..q90 forecast fans in price units from several origins, and the price."""
    first = next(iter(frames.values()))
    horizons = sorted(
        int(c[3:-4]) for c in first.columns if c.startswith("f_h") and c.endswith("_q50")
    )
    if not horizons:
        return None
    step = max(horizons)
    median_cols = [f"f_h{h}_q50" for h in horizons]
    has_forecast = np.ones(first.height, dtype=bool)
    for frame in frames.values():
        has_forecast &= ~np.isnan(frame.select(median_cols).to_numpy()).any(axis=1)
    price = first["price"].to_numpy()
    start = fan_stretch(price, has_forecast, step * FAN_ORIGINS)
    if start is None:
        return None
    scale_bp = np.array([1e-4 / target_scale(h) for h in horizons])  # scaled target -> log return
    realised = np.arange(start, min(start + step * (FAN_ORIGINS + 1), price.size))
    fig, axes = plt.subplots(
        len(frames), 1, figsize=(10, 2.6 * len(frames)), sharex=True, squeeze=False
    )
    for ax, (model, frame) in zip(axes[:, 0], frames.items()):
        ax.plot(realised - start, price[realised], color="black", lw=1.3, label="realised price")
        origins = np.arange(start, start + step * FAN_ORIGINS, step)
        ax.scatter(origins - start, price[origins], color="black", s=12, zorder=3)
        for origin in origins:
            x = np.concatenate([[0], horizons]) + origin - start
            quantile = {}
            for q in (10, 50, 90):
                cols = [f"f_h{h}_q{q}" for h in horizons]
                if set(cols) <= set(frame.columns):
                    f = frame.select(cols).row(origin)
                    quantile[q] = price[origin] * np.exp(
                        np.concatenate([[0.0], np.array(f, float) * scale_bp])
                    )
            if 10 in quantile and 90 in quantile:
                ax.fill_between(
                    x, quantile[10], quantile[90], color=colors[model], alpha=0.25, lw=0
                )
            ax.plot(x, quantile[50], color=colors[model], lw=1.2)
        ax.set_title(f"{model}: median and 10%–90% forecast fans every {step} ticks", fontsize=10)
        ax.set_ylabel("price")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", frameon=False, fontsize=8)
    axes[-1, 0].set_xlabel(f"ticks from row {start} of the test split")
    return save(fig, out_dir, "fan.png")


def training_figure(curves: dict[str, pl.DataFrame], colors: dict[str, str], out_dir: Path) -> Path:
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves) + 1, 3.4), squeeze=False)
    for ax, (model, metrics) in zip(axes[0], curves.items()):
        ax.plot(
            metrics["step"],
            metrics["train_loss"],
            color=colors[model],
            lw=1,
            alpha=0.8,
            label="train",
        )
        val = metrics.filter(pl.col("val_loss").is_not_null() & pl.col("val_loss").is_not_nan())
        ax.plot(
            val["step"], val["val_loss"], color="black", marker="o", ms=3, lw=1, label="validation"
        )
        ax.set(title=model, xlabel="step", ylabel="loss")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    return save(fig, out_dir, "training.png")


def backtest_table(summary: dict[str, dict]) -> pl.DataFrame:
    keys = (
        "pnl",
        "fees",
        "trades",
        "hit_rate",
        "sharpe",
        "max_drawdown",
        "turnover",
        "no_forecast",
    )
    return pl.DataFrame([{"model": m, **{k: fmt(s[k]) for k in keys}} for m, s in summary.items()])


def evaluation_table(evaluation: pl.DataFrame) -> pl.DataFrame:
    """Paper horizons only (all are in RUN/evaluation.csv); sign_acc and r2 with [lo, hi] CIs."""
    shown = evaluation.filter(pl.col("horizon").is_in(PAPER_HORIZONS))
    if shown.is_empty():
        shown = evaluation
    metrics = [
        m
        for m in ("sign_acc", "r2", "mse", "pinball", "coverage80", "r2_oracle_frac", "oracle_frac", "ceiling_frac")
        if m in evaluation.columns
    ]
    rows = []
    for row in shown.sort("model", "horizon").iter_rows(named=True):
        cells = {"model": row["model"], "h": str(row["horizon"])}
        for m in metrics:
            with_ci = m in ("sign_acc", "r2", "oracle_frac", "ceiling_frac") and f"{m}_lo" in row
            ci = f" [{fmt(row[m + '_lo'])}, {fmt(row[m + '_hi'])}]" if with_ci else ""
            cells[m] = fmt(row[m]) + ci
        rows.append(cells)
    return pl.DataFrame(rows)


def training_table(curves: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "model": m,
                "epochs": fmt(c["epoch"].max()),
                "steps": fmt(c["step"].max()),
                "last train loss": fmt(c["train_loss"][-1]),
                "best val loss": fmt(c["val_loss"].fill_nan(None).min()),
                "windows/s (median)": fmt(c["windows_per_s"].fill_nan(None).median()),
            }
            for m, c in curves.items()
        ]
    )


def markdown_table(table: pl.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * table.width]
    lines += ["| " + " | ".join(row) + " |" for row in table.iter_rows()]
    return "\n".join(lines)


def html_table(table: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in table.iter_rows()
    )
    table_html = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class='wide'>{table_html}</div>"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1150px;
       color: #1d1d1f; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta { color: #666; font-size: 0.9rem; } img { max-width: 100%; display: block; margin: 0.8rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.8rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; white-space: nowrap; }
th { background: #f4f4f6; } td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; } .wide { overflow-x: auto; }
pre { background: #f6f6f8; padding: 0.8rem; overflow-x: auto; }
"""


def render_html(title: str, meta: str, sections: list[Section], out_dir: Path) -> str:
    parts = [f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if s.figure:
            data = base64.b64encode((out_dir / s.figure).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,{data}'>")
        if s.table is not None:
            parts.append(html_table(s.table))
        if s.code:
            parts.append(f"<pre>{html.escape(s.code)}</pre>")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def render_markdown(title: str, meta: str, sections: list[Section]) -> str:
    parts = [f"# {title}\n\n{meta}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        if s.text:
            parts.append(s.text + "\n")
        if s.figure:
            parts.append(f"![{s.title}]({s.figure})\n")
        if s.table is not None:
            parts.append(markdown_table(s.table) + "\n")
        if s.code:
            parts.append(f"```\n{s.code.rstrip()}\n```\n")
    return "\n".join(parts)


def rule_text(config: dict) -> str:
    c = config
    return (
        f"Decide every {c['every']} ticks from horizons {c['horizons'][0]}..{c['horizons'][-1]} "
        f"(q{c['signal_quantile']} signal); enter {c['delay_ticks']} ticks"
        + (f" and {c['latency_ms']} ms" if c["latency_ms"] else "")
        + f" later at the {'weighted mid' if c['fill'] == 'mid' else 'touch'}; exit at the next "
        f"{'decision' if c['exit_at'] == 'decision' else 'decision plus the same delay'}; "
        f"{'all horizons must agree; ' if c['require_agreement'] else ''}"
        f"{'the 10%-90% interval must exclude zero; ' if c['require_interval'] else ''}"
        f"skip if |sum| < {c['min_signal']}·n; sizes {list(c['sizes'])} BTC at |sum| ≥ "
        f"{list(c['size_thresholds'])}·n, else {c['base_size']}; "
        f"fees {c['maker_fee_bps']}/{c['taker_fee_bps']} bps maker/taker per side. "
        "Sharpe annualised from the median bar length; PnL in quote currency."
    )


@dataclass
class RunData:
    """Everything the report reads from RUN; None/empty where absent."""

    frames: dict[str, pl.DataFrame]  # model -> test forecasts
    curves: dict[str, pl.DataFrame]  # model -> training metrics
    evaluation: pl.DataFrame | None
    evaluation_summary: dict  # evaluation.json without its metrics ({} when absent)
    backtest: tuple[dict, pl.DataFrame] | None  # backtest.json payload, bars of every model
    config_text: str | None
    missing: list[str]

    @property
    def models(self) -> list[str]:
        evaluated = self.evaluation["model"].unique() if self.evaluation is not None else []
        return sorted({*self.frames, *self.curves, *evaluated})


def read_run(run_dir: Path) -> RunData:
    """Read RUN's outputs; run and write the default backtest when forecasts exist without one."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    forecasts = sorted((run_dir / "forecasts").glob("*.parquet"))
    frames = {p.stem: pl.read_parquet(checked(p)) for p in forecasts}
    metrics = (p for p in sorted(run_dir.glob("*/metrics.csv")) if p.parent.name != "forecasts")
    curves = {p.parent.name: c for p in metrics if (c := read_metrics(p)).height}
    evaluation_csv, config_toml = run_dir / "evaluation.csv", run_dir / "config.toml"
    evaluation = pl.read_csv(evaluation_csv) if evaluation_csv.exists() else None
    evaluation_json = run_dir / "evaluation.json"
    evaluation_summary = orjson.loads(evaluation_json.read_bytes()) if evaluation_json.exists() else {}
    evaluation_summary.pop("metrics", None)
    missing, backtest = [], None
    if not (run_dir / "backtest.parquet").exists() and frames:
        try:
            write_backtest(run_dir, backtest_models(load_forecasts(run_dir)))
        except ValueError as error:
            missing.append(f"backtest: {error}")
    if (run_dir / "backtest.parquet").exists():
        backtest = read_backtest(run_dir)
    elif not frames:
        missing.append("backtest: no RUN/backtest.parquet and no forecasts")
    config_text = config_toml.read_text() if config_toml.exists() else None
    return RunData(frames, curves, evaluation, evaluation_summary, backtest, config_text, missing)


def report_sections(run: RunData, out_dir: Path) -> list[Section]:
    """Draw every figure whose inputs exist into out_dir; note in run.missing what could not be."""
    colors = model_colors(run.models)
    sections = []
    if run.backtest is not None:
        payload, bars = run.backtest
        pnl_figure(bars, colors, out_dir)
        skipped = "".join(f" Not backtested: {m} ({why})." for m, why in payload["skipped"].items())
        text = rule_text(payload["config"]) + skipped
        sections.append(Section("Backtest", text, "pnl.png", backtest_table(payload["models"])))
    if run.evaluation is not None:
        accuracy_figure(run.evaluation, colors, out_dir)
        text = (
            "Marks: the paper's published HFformer and LSTM results. Table: the paper's "
            "horizons; all horizons are in evaluation.csv."
        )
        if "market" in run.evaluation_summary:
            text = f"Data: {run.evaluation_summary['market']}. " + text
        if run.evaluation_summary.get("too_little_data"):
            text += (" Warning: too little data to tell models apart ("
                     + "; ".join(run.evaluation_summary["too_little_data"]) + ").")
        table = evaluation_table(run.evaluation)
        sections.append(Section("Forecast accuracy on the test split", text, "accuracy.png", table))
    else:
        run.missing.append("evaluation: no RUN/evaluation.csv")
    if run.frames and fan_figure(run.frames, colors, out_dir) is not None:
        text = (
            "Forecasts of the scaled target turned back into prices, p_t·exp(f/scale(h)/1e4), "
            "from several origins over the test stretch with the widest price range."
        )
        sections.append(Section("Forecast fans against the realised price", text, "fan.png"))
    else:
        run.missing.append("fan chart: no forecasts with median columns and complete rows")
    if run.curves:
        training_figure(run.curves, colors, out_dir)
        table = training_table(run.curves)
        sections.append(Section("Training", figure="training.png", table=table))
    else:
        run.missing.append("training curves: no RUN/<model>/metrics.csv")
    if run.config_text is not None:
        sections.append(Section("Run configuration", code=run.config_text))
    return sections


def build_report(run_dir: Path, out_dir: Path | None = None) -> ReportFiles:
    """Write RUN/report (or out_dir)/{report.html, report.md, *.png}; see the module docstring."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    if not run.models:
        raise ValueError(f"{run_dir} holds no forecasts, metrics or evaluation to report on")
    out_dir = Path(out_dir) if out_dir else run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = report_sections(run, out_dir)
    title = f"HFformer run report: {run_dir.name}"
    meta = (
        f"Run {run_dir.resolve()} · models: {', '.join(run.models)} · generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}"
    )
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    write_bytes(html_path, render_html(title, meta, sections, out_dir).encode())
    write_bytes(md_path, render_markdown(title, meta, sections).encode())
    figures = [out_dir / s.figure for s in sections if s.figure]
    return ReportFiles(html_path, md_path, figures, run.models, run.missing)
