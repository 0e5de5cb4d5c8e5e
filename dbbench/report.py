"""`dbbench report`: tables (Markdown, CSV) and one self-contained HTML page from results files.

Several results files (other machines, other days) are put side by side: every column is an
engine of one run, labelled with the run's machine and start time. They must be runs on one
dataset (the same checksums): results from different datasets are refused, naming both. Latency is
the median (and p95) of the timed repetitions, cold the run after a restart; each ratio is
ClickBench's, to the fastest valid time of that query over every column with +10 ms on both
sides, and the score tables rank columns by ClickBench's score, hot and cold (`dbbench.score`:
geometric mean over every query of the suite, a query without a correct answer counted as a
documented penalty). Only valid numbers are shown as numbers: a wrong answer, an error or an
unsupported query says so.

The HTML page draws its bar charts as inline SVG with inline CSS: it opens offline and fetches
nothing. A chart uses a log scale when its slowest bar is more than LOG_SCALE_RATIO times its
fastest.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import polars as pl

from data_loaders.atomic import write_bytes
from dbbench import results as results_io
from dbbench.machine import label as machine_label
from dbbench.score import PENALTY_FACTOR, PENALTY_FLOOR_S, SMOOTHING_S, scores

LOG_SCALE_RATIO = 20.0
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def run_labels(runs: list[dict[str, Any]]) -> list[str]:
    """host (cores, memory) start-time; numbered when two runs would read the same."""
    labels = [f"{machine_label(r['machine'])} {r['started'][:16]}" for r in runs]
    return [f"{lab} #{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


def _column(engine: str, run: str, several: bool) -> str:
    return f"{engine} @ {run}" if several else engine


def frames(runs: list[dict[str, Any]]) -> dict[str, pl.DataFrame]:
    """Long tables: latency, ingest, storage, concurrency and engines (status, reason, version)."""
    labels = run_labels(runs)
    several = len(runs) > 1
    rows: dict[str, list[dict[str, Any]]] = {"latency": [], "ingest": [], "storage": [], "concurrency": [],
                                             "engines": []}
    for run, lab in zip(runs, labels):
        for name, e in run["engines"].items():
            col = _column(name, lab, several)
            rows["engines"].append({"run": lab, "engine": name, "column": col, "cold_run": run["config"]["cold"],
                                    "status": e["status"],
                                    "reason": e.get("reason") or "", "version": e.get("version") or "",
                                    "profile": e.get("profile") or "",
                                    "server_time": e.get("server_time") or "none reported",
                                    "cold_method": e.get("cold_method") or ""})
            for query, q in e.get("queries", {}).items():
                hot, cold = q.get("hot") or {}, q.get("cold") or {}
                valid = bool(q.get("valid"))
                rows["latency"].append({
                    "run": lab, "engine": name, "column": col, "cold_run": run["config"]["cold"], "query": query,
                    "status": q["status"], "valid": valid,
                    "median_s": hot["client"]["median"] if valid and hot.get("client") else None,
                    "p95_s": hot["client"]["p95"] if valid and hot.get("client") else None,
                    "min_s": hot["client"]["min"] if valid and hot.get("client") else None,
                    "server_median_s": hot["server"]["median"] if valid and hot.get("server") else None,
                    "overhead_pct": hot.get("overhead_pct") if valid else None,
                    "cold_s": cold["client"]["median"] if valid and cold.get("client") else None,
                    "detail": q.get("error") or (q.get("verdict") if q["status"] == "wrong" else "") or "",
                })
            for load in e.get("load", []):
                for table, t in load["tables"].items():
                    rows["ingest"].append({"run": lab, "engine": name, "column": col, "batch_rows": load["batch_rows"],
                                           "table": table, "valid": load["valid"], "rows": t["rows"],
                                           "seconds": t["seconds"], "rows_per_s": t["rows_per_s"],
                                           "mb_per_s": t["mb_per_s"], "csv_mb_per_s": t["csv_mb_per_s"]})
            for table, s in e.get("storage", {}).items():
                rows["storage"].append({"run": lab, "engine": name, "column": col, "table": table, **s})
            for c in e.get("concurrency", []):
                lat = c.get("latency") or {}
                mix = c.get("mix")
                left = ", ".join(f"{q} ({why})" for q, why in (c.get("left_out") or {}).items())
                rows["concurrency"].append({"run": lab, "engine": name, "column": col, "clients": c["clients"],
                                            "mix": (f"{len(mix)} queries" if mix is not None else "")
                                            + (f"; left out: {left}" if left else ""),
                                            "seconds": c["duration_s"], "queries": c["queries"], "qps": c["qps"],
                                            "p50_s": lat.get("median"), "p95_s": lat.get("p95"),
                                            "errors": c["errors"], "wrong": c["wrong"], "valid": c["valid"]})
    schemas = {
        "latency": {"run": pl.String, "engine": pl.String, "column": pl.String, "cold_run": pl.Boolean,
                    "query": pl.String, "status": pl.String, "valid": pl.Boolean, "median_s": pl.Float64,
                    "p95_s": pl.Float64, "min_s": pl.Float64, "server_median_s": pl.Float64,
                    "overhead_pct": pl.Float64, "cold_s": pl.Float64, "detail": pl.String},
    }
    out = {k: pl.DataFrame(v, schema=schemas.get(k), infer_schema_length=None) for k, v in rows.items()}
    lat = out["latency"]
    if lat.height:
        out["latency"] = lat.with_columns(_ratio("median_s").alias("ratio"), _ratio("p95_s").alias("ratio_p95"),
                                          _ratio("cold_s").alias("cold_ratio"))
    return out


def _ratio(value: str) -> pl.Expr:
    """ClickBench's ratio to the fastest of the query over every column: (t + 10 ms) / (best + 10 ms)."""
    return (pl.col(value) + SMOOTHING_S) / (pl.col(value).min().over("query") + SMOOTHING_S)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms < 1000 else f"{seconds:.3g} s"


def latency_matrix(latency: pl.DataFrame, value: str, ratio: str) -> pl.DataFrame:
    """query x column: `value` (median_s or p95_s) with its ratio to the fastest, or the status."""
    text = latency.with_columns(
        pl.when(pl.col("valid") & pl.col(value).is_not_null())
        .then(pl.col(value).map_elements(_ms, return_dtype=pl.String) + pl.format(" (x{})", pl.col(ratio).round(2)))
        .otherwise(pl.col("status"))
        .alias("cell")
    )
    return text.pivot(on="column", index="query", values="cell", aggregate_function="first", maintain_order=True)


SCORE_NOTE = (f"ClickBench's score: per query (t + {SMOOTHING_S * 1e3:g} ms) / (fastest + {SMOOTHING_S * 1e3:g} ms); "
              f"a query without a correct answer (wrong, error, unsupported, not run, missing) counts as "
              f"{PENALTY_FACTOR:g} x max({PENALTY_FLOOR_S:g} s, the column's slowest answer), as ClickBench does; "
              "geometric mean over every query of the suite that some column answered. Lower is better; "
              "1 is the fastest everywhere.")


def score_table(latency: pl.DataFrame, columns: list[str], value: str) -> pl.DataFrame:
    """ClickBench's score of each column on `value` (median_s: hot, cold_s: cold), best first; `columns`
    are every column scored (one without rows, a skipped engine, is listed without a score)."""
    times: dict[str, dict[str, float | None]] = {c: {} for c in columns}
    why: dict[str, dict[str, str]] = {c: {} for c in columns}
    for r in latency.filter(pl.col("column").is_in(columns)).iter_rows(named=True):
        ok = r["valid"] and r[value] is not None
        times[r["column"]][r["query"]] = r[value] if ok else None
        why[r["column"]][r["query"]] = r["status"] if not r["valid"] else "no time"
    rows = [{"column": s.column, "score": s.score, "answered": f"{s.answered}/{s.queries}",
             "penalty_s": s.penalty_s,
             "penalized": ", ".join(f"{q} ({w})" for q, w in s.penalized.items())
             or ("" if s.score is not None else "no query answered: not scored")}
            for s in scores(times, why)]
    schema = {"column": pl.String, "score": pl.Float64, "answered": pl.String, "penalty_s": pl.Float64,
              "penalized": pl.String}
    return pl.DataFrame(rows, schema=schema)


def score_tables(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Hot for every column; cold for the columns of runs that measured it (`--cold`)."""
    lat, engines = tables["latency"], tables["engines"]
    out = {"hot": score_table(lat, engines["column"].to_list(), "median_s")}
    cold = engines.filter(pl.col("cold_run"))["column"].to_list()
    if cold:
        out["cold"] = score_table(lat, cold, "cold_s")
    return out


def _md_table(frame: pl.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:,.4g}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def _runs_table(runs: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([
        {"run": lab, "cpu": r["machine"].get("cpu"), "cores": r["machine"].get("cores"),
         "memory_GiB": round((r["machine"].get("memory_bytes") or 0) / 2**30, 1), "os": r["machine"].get("os"),
         "repeat": r["config"]["repeat"], "seed": (r["config"].get("workload") or {}).get("seed"),
         "cold": r["config"]["cold"], "page_cache": r["caches"]["os_page_cache"]}
        for r, lab in zip(runs, run_labels(runs))
    ])


def _dataset_table(runs: list[dict[str, Any]]) -> pl.DataFrame:
    """The one dataset of the report: name, source, rows and sha256 of each table (and their digest)."""
    identity = results_io.identity_of(runs[0])
    rows = [{"table": t, "rows": n, "sha256": identity["sha256"].get(t, "not recorded")}
            for t, n in identity["rows"].items()]
    rows.append({"table": "all", "rows": sum(identity["rows"].values()),
                 "sha256": identity["digest"] or "not recorded"})
    return pl.DataFrame(rows, schema={"table": pl.String, "rows": pl.Int64, "sha256": pl.String})


def _dataset_title(runs: list[dict[str, Any]]) -> str:
    return "Dataset: " + results_io.describe_dataset(results_io.identity_of(runs[0]))


def markdown(runs: list[dict[str, Any]], tables: dict[str, pl.DataFrame]) -> str:
    lat = tables["latency"]
    parts = ["# dbbench report", "", f"## {_dataset_title(runs)}", "", _md_table(_dataset_table(runs)), "",
             "## Runs", "", _md_table(_runs_table(runs)), ""]
    parts += ["## Engines", "",
              _md_table(tables["engines"].select("column", "status", "version", "profile", "server_time", "reason")),
              ""]
    if lat.height:
        for kind, table in score_tables(tables).items():
            parts += [f"## Score, {kind} (ClickBench's method)", "", SCORE_NOTE, "", _md_table(table), ""]
        parts += ["## Latency, hot: median of the timed runs (ClickBench ratio to the fastest)", "",
                  _md_table(latency_matrix(lat, "median_s", "ratio")), ""]
        if lat["cold_run"].any():
            parts += ["## Latency, cold: the run after a restart (ClickBench ratio to the fastest)", "",
                      _md_table(latency_matrix(lat.filter(pl.col("cold_run")), "cold_s", "cold_ratio")), ""]
        parts += ["## Latency, hot: p95 of the timed runs (ClickBench ratio to the fastest p95)", "",
                  _md_table(latency_matrix(lat, "p95_s", "ratio_p95")), ""]
        over = lat.filter(pl.col("valid") & pl.col("server_median_s").is_not_null())
        if over.height:
            parts += ["## Harness overhead (client median minus server median)", "",
                      _md_table(over.select("column", "query", "median_s", "server_median_s", "overhead_pct")), ""]
        problems = lat.filter(~pl.col("valid"))
        if problems.height:
            parts += ["## Not valid", "", _md_table(problems.select("column", "query", "status", "detail")), ""]
    if tables["ingest"].height:
        parts += ["## Ingest", "", _md_table(tables["ingest"].drop("run", "engine")), ""]
    if tables["storage"].height:
        parts += ["## Storage", "", _md_table(tables["storage"].drop("run", "engine")), ""]
    if tables["concurrency"].height:
        parts += ["## Concurrency", "", _md_table(tables["concurrency"].drop("run", "engine")), ""]
    return "\n".join(parts)


# --- HTML -----------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}td.bad{background:#fde0e0;color:#900}
.chart{margin:10px 0 24px}.chart svg{font-size:12px}.note{color:#666;font-size:12px}
"""


def _heat(ratio: float | None) -> str:
    """Cell colour by ratio to the fastest: green (1x) to red (>= 100x), log-scaled like ClickBench."""
    if ratio is None:
        return ""
    t = min(1.0, math.log10(max(ratio, 1.0)) / 2)
    return f' style="background:hsl({int(120 * (1 - t))},70%,85%)"'


def _html_table(frame: pl.DataFrame, left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(c)}</th>' for i, c in enumerate(frame.columns))
    body = []
    for row in frame.iter_rows():
        cells = []
        for i, v in enumerate(row):
            text = "" if v is None else (f"{v:,.4g}" if isinstance(v, float) else str(v))
            cells.append(f'<td class="{"l" if i < left else ""}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _latency_html(lat: pl.DataFrame, columns: list[str], status: dict[str, str], value: str = "median_s",
                  ratio: str = "ratio") -> str:
    """query x column: `value` with its ratio (heat-coloured), or the status in red."""
    head = "<tr><th class='l'>query</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    body = []
    for (query,), group in lat.group_by("query", maintain_order=True):
        by_col = {r["column"]: r for r in group.iter_rows(named=True)}
        cells = []
        for c in columns:
            r = by_col.get(c)
            if r is None:
                cells.append(f"<td class='bad'>{html.escape(status[c])}</td>")
            elif r["valid"] and r[value] is not None:
                title = f" title='p95 {_ms(r['p95_s'])}'" if value == "median_s" else ""
                cells.append(f"<td{_heat(r[ratio])}{title}>{_ms(r[value])} "
                             f"<small>x{r[ratio]:.2f}</small></td>")
            else:
                cells.append(f"<td class='bad' title='{html.escape(r['detail'])}'>{html.escape(r['status'])}</td>")
        body.append(f"<tr><td class='l'>{html.escape(query)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def bar_chart(title: str, bars: list[tuple[str, float | None, str]], colors: dict[str, str],
              what: str = "median client time") -> str:
    """Horizontal SVG bars (label, seconds or None, note); log scale when the spread is wide."""
    values = [v for _, v, _ in bars if v is not None and v > 0]
    lo, hi = (min(values), max(values)) if values else (1.0, 1.0)
    log = hi / lo > LOG_SCALE_RATIO
    width, label_w, bar_h, gap = 760, 260, 18, 6
    plot_w = width - label_w - 90

    def length(v: float) -> float:
        if log:  # from a decade below the fastest to the slowest
            floor = math.log10(lo) - 1
            return plot_w * (math.log10(v) - floor) / (math.log10(hi) - floor)
        return plot_w * v / hi

    rows = []
    for i, (label, value, note) in enumerate(bars):
        y = i * (bar_h + gap)
        rows.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{html.escape(label)}</text>')
        if value is None:
            rows.append(f'<text x="{label_w + 4}" y="{y + 13}" fill="#900">{html.escape(note)}</text>')
            continue
        w = max(1.0, length(value))
        rows.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                    f'fill="{colors.get(label, "#888")}"/>')
        rows.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{html.escape(_ms(value))}</text>')
    height = len(bars) * (bar_h + gap)
    scale = "log scale" if log else "linear scale"
    return (f'<div class="chart"><h3>{html.escape(title)} <span class="note">({scale}, {html.escape(what)})</span></h3>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(title)}">{"".join(rows)}</svg></div>')


def html_page(runs: list[dict[str, Any]], tables: dict[str, pl.DataFrame]) -> str:
    lat = tables["latency"]
    columns = tables["engines"]["column"].to_list()
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(columns)}
    status = dict(tables["engines"].select("column", "status").iter_rows())
    parts = [(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>dbbench report</title>"
             f"<style>{CSS}</style></head><body><h1>dbbench report</h1>"),
             f"<h2>{html.escape(_dataset_title(runs))}</h2>", _html_table(_dataset_table(runs)),
             "<h2>Runs</h2>", _html_table(_runs_table(runs)),
             "<h2>Engines</h2>",
             _html_table(tables["engines"].select("column", "status", "version", "profile", "server_time", "reason"))]
    if lat.height:
        for kind, table in score_tables(tables).items():
            parts += [f"<h2 id='score-{kind}'>Score, {kind} (ClickBench's method)</h2>",
                      f"<p class='note'>{html.escape(SCORE_NOTE)}</p>", _html_table(table)]
        parts += ["<h2 id='latency-hot'>Latency, hot (median of the timed runs, ClickBench ratio to the fastest)</h2>",
                  _latency_html(lat, columns, status)]
        cold = tables["engines"].filter(pl.col("cold_run"))["column"].to_list()
        if cold:
            title = "Latency, cold (the run after a restart, ClickBench ratio to the fastest)"
            parts += [f"<h2 id='latency-cold'>{title}</h2>",
                      _latency_html(lat.filter(pl.col("cold_run")), cold, status, "cold_s", "cold_ratio")]
        parts.append("<h2>Per query (hot)</h2>")
        for (query,), group in lat.group_by("query", maintain_order=True):
            by_col = {r["column"]: r for r in group.iter_rows(named=True)}
            bars = [(c, by_col[c]["median_s"], by_col[c]["status"]) for c in columns if c in by_col]
            parts.append(bar_chart(query, bars, colors))
    if tables["ingest"].height:
        ingest = tables["ingest"].filter(pl.col("valid"))
        parts += ["<h2>Ingest</h2>", _html_table(tables["ingest"].drop("run", "engine"))]
        for (table,), group in ingest.group_by("table", maintain_order=True):
            best = group.sort("rows_per_s", descending=True).unique("column", keep="first", maintain_order=True)
            bars = [(r["column"], 1 / r["rows_per_s"] * 1e6 if r["rows_per_s"] else None, "")
                    for r in best.iter_rows(named=True)]
            parts.append(bar_chart(f"load {table}", bars, colors, "seconds per million rows, best batch size"))
    if tables["storage"].height:
        parts += ["<h2>Storage</h2>", _html_table(tables["storage"].drop("run", "engine"))]
    if tables["concurrency"].height:
        parts += ["<h2>Concurrency</h2>", _html_table(tables["concurrency"].drop("run", "engine"))]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(paths: list[Path], out: Path) -> dict[str, Path]:
    """Read the results files (runs on one dataset), write report.md, report.html and one CSV per table
    (score_hot.csv, score_cold.csv among them) into `out`."""
    runs = [results_io.read(p) for p in paths]
    if not runs:
        raise ValueError("no results files given")
    first = results_io.identity_of(runs[0])
    for path, run in zip(paths[1:], runs[1:]):
        other = results_io.identity_of(run)
        if not results_io.same_dataset(first, other):
            raise results_io.ResultsError(
                f"{paths[0]} and {path} are results on different datasets ({results_io.describe_dataset(first)}; "
                f"{results_io.describe_dataset(other)}): scores compare engines on one dataset; report each "
                "dataset's runs separately")
    tables = frames(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"markdown": out / "report.md", "html": out / "report.html"}
    write_bytes(written["markdown"], markdown(runs, tables).encode())
    write_bytes(written["html"], html_page(runs, tables).encode())
    for name, frame in tables.items():
        written[name] = write_bytes(out / f"{name}.csv", frame.write_csv().encode())
    if tables["latency"].height:
        for kind, frame in score_tables(tables).items():
            written[f"score_{kind}"] = write_bytes(out / f"score_{kind}.csv", frame.write_csv().encode())
    return written
