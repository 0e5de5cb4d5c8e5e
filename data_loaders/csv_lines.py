"""Shared plumbing of the CSV file readers (Binance public data, Tardis.dev): bytes -> numbered lines -> typed fields.

Files are read as whole lines first, so that every row keeps its file line number and a ragged or
garbled row becomes a quarantined line instead of a parser error or a silently shifted column.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import polars as pl

from data_loaders.quarantine import Quarantine

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"

# Plausible UTC epoch range in ns (2010 .. 2100): a time outside it is garbage or in another unit.
MIN_NS = 1_262_304_000_000_000_000
MAX_NS = 4_102_444_800_000_000_000
NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The decompressed content of a plain, gzip or zip (one CSV inside) file, or its first `limit` bytes."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic.startswith(ZIP_MAGIC):
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise ValueError(f"{path}: expected one CSV inside the zip, found {len(members)}")
            with z.open(members[0]) as f:
                return f.read(limit) if limit else f.read()
    if magic.startswith(GZIP_MAGIC):
        if limit is None:
            return gzip.decompress(path.read_bytes())
        with gzip.open(path, "rb") as f:
            return f.read(limit)
    with path.open("rb") as f:
        return f.read(limit) if limit else f.read()


def head_lines(path: Path, n: int = 8) -> list[str]:
    """The first complete lines of a (possibly compressed) file, for sniffing; [] if it cannot be read."""
    try:
        head = read_bytes(path, limit=64 * 1024)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return []
    lines = head.decode("utf-8", errors="replace").splitlines()
    if len(head) == 64 * 1024:
        lines = lines[:-1]  # the last one may be cut
    return lines[:n]


def read_lines(data: bytes) -> pl.DataFrame:
    """One row per file line: `line` (1-based line number) and `text` (null for a blank line).

    Bytes that are not UTF-8 become U+FFFD, so such a line is quarantined (its fields do not parse)
    instead of failing the whole file."""
    if not data:
        return pl.DataFrame(schema={"line": pl.Int64, "text": pl.String})
    lines = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        separator="\x1f",  # a byte that never occurs in these files: one column holding the whole line
        quote_char=None,
        new_columns=["text"],
        infer_schema=False,
        encoding="utf8-lossy",
    )
    return lines.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))


def split_fields(lines: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Split `text` on commas into the named String columns, plus `n_fields` to catch ragged rows."""
    n = len(names)
    fields = pl.col("text").str.split_exact(",", n - 1).struct.rename_fields(names)
    return lines.with_columns(
        n_fields=(pl.col("text").str.count_matches(",", literal=True) + 1)
        .fill_null(0)
        .cast(pl.Int64),
        fields=fields,
    ).unnest("fields")


def parse_bool(name: str) -> pl.Expr:
    """'true'/'false' in any case -> Boolean; anything else -> null."""
    text = pl.col(name).str.to_lowercase()
    return (
        pl.when(text == "true")
        .then(True)
        .when(text == "false")
        .then(False)
        .otherwise(None)
        .alias(name)
    )


def parse_float(name: str) -> pl.Expr:
    """Decimal text -> finite Float64; non-numeric, NaN and infinities -> null."""
    value = pl.col(name).cast(pl.Float64, strict=False)
    return pl.when(value.is_finite()).then(value).otherwise(None).alias(name)


def parse_int(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Int64, strict=False).alias(name)


def time_unit(values: pl.Series) -> str:
    """The unit of epoch timestamps from their magnitude (median, so a few bad rows cannot flip it)."""
    median = values.drop_nulls().median()
    if median is None:
        return "ms"
    for unit in ("ns", "us", "ms", "s"):  # finest first: the first unit that lands after 2010
        if median * NS_PER[unit] >= MIN_NS:
            return unit
    return "s"


def to_ns(name: str, unit: str) -> pl.Expr:
    """Epoch time in `unit` -> ns; null when outside 2010..2100 (garbage, or a row in another unit)."""
    scale = NS_PER[unit]
    value = pl.col(name)
    in_range = value.is_between(MIN_NS // scale, MAX_NS // scale)
    return pl.when(in_range).then(value * scale).otherwise(None)


def first_problem(checks: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """The kind of the first failing check (ordered by priority), or null for a good row."""
    expr = pl.lit(None, dtype=pl.String)
    for kind, failed in reversed(checks):
        expr = pl.when(failed.fill_null(True)).then(pl.lit(kind)).otherwise(expr)
    return expr.alias("problem")


def quarantine_rows(rows: pl.DataFrame, quarantine: Quarantine) -> None:
    """Write every row with a `problem` to the quarantine, with its file and line number, in file order."""
    bad = rows.filter(pl.col("problem").is_not_null()).select("problem", "file", "line", "text")
    for kind, file, line, text in bad.iter_rows():
        quarantine.add(kind, file, line, text or "")


def agreed(what: str, option: str, said: dict[str, str | None]) -> str:
    """The one value (lowercased) of `what` that every source naming it gives: file names, rows, `option`.

    `said` maps each source to its value, or None where it does not say. Output never carries a
    guessed instrument: sources that disagree, or none that says, are a clear error."""
    values = {source: value.lower() for source, value in said.items() if value}
    if len(set(values.values())) > 1:
        found = ", ".join(f"{source}: {value}" for source, value in values.items())
        raise ValueError(f"the {what} is ambiguous ({found})")
    if not values:
        names = ", ".join(source for source in said if source != option)
        raise ValueError(f"cannot tell the {what}: {names} do not name it; pass {option}")
    return next(iter(values.values()))
