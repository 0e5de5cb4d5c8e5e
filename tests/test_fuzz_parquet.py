"""Book Parquet inputs (`hfformer train --data`): wrong dtypes, nulls, NaN/inf, missing columns.

The feature builder (data_loaders/features.py, read through hfformer/data.py) must return, flagging
bad rows, or raise a ValueError: a column of the wrong type is an error naming it, never a polars
or numpy traceback and never read as something else (a Boolean as a price of 1.0).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data_loaders.features import FeatureConfig, build_features

N = 5
TS = np.arange(N, dtype=np.int64) * 100_000_000 + 1_723_161_255_000_000_000


def _book() -> pl.DataFrame:
    levels = {f"{side}_{i}": [{"bid_px": 59_999.0 - i, "ask_px": 60_001.0 + i}.get(side, 1.0)] * N
              for side in ("bid_px", "bid_qty", "ask_px", "ask_qty") for i in (1, 2)}
    return pl.DataFrame({"ts": TS, "local_ts": pl.Series([None] * N, dtype=pl.Int64),
                         "update_id": list(range(N)), "in_sync": [True] * N, **levels})


OK_CASES = {  # (column, values) -> how many rows must come out valid
    "nan_price": ("bid_px_1", pl.Series([math.nan] * N), 0),
    "inf_price": ("ask_px_1", pl.Series([math.inf] * N), 0),
    "null_price": ("bid_qty_1", pl.Series([None] * N, dtype=pl.Float64), 0),
    "zero_size": ("ask_qty_2", pl.Series([0.0] * N), 0),
    "negative_price": ("bid_px_2", pl.Series([-1.0] * N), 0),
    "null_in_sync": ("in_sync", pl.Series([None] * N, dtype=pl.Boolean), 0),
    "datetime_ns_utc_ts": ("ts", pl.Series(TS).cast(pl.Datetime("ns", "UTC")), N - 1),
    "int_price": ("bid_px_1", pl.Series([59_998] * N), N - 1),
}
ERROR_CASES = {  # (column, values or None to drop it)
    "missing_column": ("bid_qty_2", None),
    "null_ts": ("ts", pl.Series([None] * N, dtype=pl.Int64)),
}
WRONG_DTYPES = {  # each a ValueError naming the column
    "string_price": ("bid_px_1", pl.Series(["x"] * N)),  # polars InvalidOperationError
    "string_ts": ("ts", pl.Series(["a"] * N)),  # polars InvalidOperationError
    "string_in_sync": ("in_sync", pl.Series(["yes"] * N)),  # TypeError: str & bool
    "list_price": ("bid_px_1", pl.Series([[1.0]] * N)),  # polars InvalidOperationError
    "struct_price": ("bid_px_1", pl.Series([{"a": 1.0}] * N)),  # numpy TypeError (log of objects)
    "bool_price": ("bid_px_1", pl.Series([True] * N)),  # accepted as price 1.0
    "int_in_sync": ("in_sync", pl.Series([1] * N)),  # accepted as a flag
}


def _read(tmp_path: Path, column: str, values: pl.Series | None):
    book = _book()
    book = book.drop(column) if values is None else book.with_columns(values.alias(column))
    path = tmp_path / "book.parquet"
    book.write_parquet(path)
    return build_features(pl.scan_parquet(path), FeatureConfig(levels=2, horizons=(1,)))


@pytest.mark.parametrize("case", OK_CASES)
def test_bad_values_are_flagged_rows(tmp_path: Path, case: str) -> None:
    column, values, valid = OK_CASES[case]
    features = _read(tmp_path, column, values)
    assert features.report["rows"] == N and features.report["valid"] == valid
    assert features.report["valid"] + features.report["invalid"] == N  # every row accounted for


@pytest.mark.parametrize("case", ERROR_CASES)
def test_unusable_books_are_a_value_error(tmp_path: Path, case: str) -> None:
    with pytest.raises(ValueError):
        _read(tmp_path, *ERROR_CASES[case])


@pytest.mark.parametrize("case", WRONG_DTYPES)
def test_wrong_dtypes_are_a_value_error(tmp_path: Path, case: str) -> None:
    column = WRONG_DTYPES[case][0]
    with pytest.raises(ValueError, match=f"wrong type: {column} is"):
        _read(tmp_path, *WRONG_DTYPES[case])
