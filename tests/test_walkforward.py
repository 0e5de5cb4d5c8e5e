"""Time grid, walk-forward split and `hfformer walkforward`, on the synthetic market and real recordings."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from data_loaders import formats
from data_loaders.paths import nexo_recording
from data_loaders.synth import generate
from hfformer.cli import app
from hfformer.config import load_config, utc_ns
from hfformer.data import MIN_WINDOWS, data_warnings, describe_market, prepare
from hfformer.walkforward import fold_periods

SMALL = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25"]
TINY = [*SMALL, "model.d_model=12", "model.n_heads=2", "model.d_ff=16", "batch_size=32", "max_epochs=1",
        "max_train_windows=256", "max_val_windows=128", "progress=false", "warmup_steps=4", "lstm.hidden=8",
        "device=cpu", "threads=1"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, minutes=6, seed=2)
    return out


def test_walk_forward_split_learns_only_from_the_past(synth):
    start = utc_ns("2024-08-09T00:03:00Z")  # the synthetic market starts at 2024-08-09 00:00 UTC
    end = utc_ns("2024-08-09T00:05:00Z")
    cfg = load_config(None, [*SMALL, 'data.test_start="2024-08-09T00:03:00Z"',
                             'data.test_end="2024-08-09T00:05:00Z"'])
    prep = prepare(synth, cfg.data)
    ts, ends, horizon = prep.features.ts, prep.ends, max(cfg.data.horizons)
    assert prep.grid.clock == "ts" and prep.grid.step_ns == 100_000_000
    assert ends["test"].size and ends["train"].size and ends["val"].size
    assert ts[ends["test"]].min() >= start
    assert ts[ends["test"] + horizon].max() < end  # every test target lies inside the test period
    cut = int(np.searchsorted(ts, start))
    for part in ("train", "val"):  # gap rows before the cut: no input or target reaches the test period
        assert ends[part].max() < cut - cfg.data.gap
    assert ends["train"].max() < ends["val"].min() - cfg.data.gap
    # validation is the later part of the past, in the fractions' proportion (0.7 : 0.15)
    assert 0.1 < ends["val"].size / (ends["train"].size + ends["val"].size) < 0.25


def test_a_gap_in_the_grid_breaks_the_windows_and_is_counted(synth, tmp_path):
    book = pl.read_parquet(synth / "book.parquet")
    holed = tmp_path / "holed.parquet"
    book.filter((pl.int_range(pl.len()) < 1000) | (pl.int_range(pl.len()) >= 1050)).write_parquet(holed)
    cfg = load_config(None, SMALL)
    whole, gapped = prepare(synth / "book.parquet", cfg.data), prepare(holed, cfg.data)
    assert whole.features.report["grid_gap"] == 0 and gapped.features.report["grid_gap"] == 1
    ts, window = gapped.features.ts, cfg.data.window
    starts = gapped.ends["all"] - window + 1
    spans = ts[gapped.ends["all"] + max(cfg.data.horizons)] - ts[starts]
    # no window with its targets reaches across the hole: each covers exactly its rows' grid time
    assert np.all(spans == (window - 1 + max(cfg.data.horizons)) * gapped.grid.step_ns)


def test_books_in_several_files_are_read_lazily_with_the_checks_of_a_full_read(synth, tmp_path):
    """hfformer reads its book a chunk at a time (formats.scan_book): the same rows and stats as a full
    read, a file boundary breaks the windows, and a changed, mixed or wrong file is refused as before."""
    from data_loaders.atomic import IntegrityError, checksum_path, sha256

    book = pl.read_parquet(synth / "book.parquet")
    days = tmp_path / "days"
    days.mkdir()
    for i, part in enumerate((book.head(2000), book.slice(2000))):
        part.write_parquet(days / f"book-{i}.parquet")
        checksum_path(days / f"book-{i}.parquet").write_text(sha256(days / f"book-{i}.parquet") + "\n")
    files = sorted(days.glob("*.parquet"))
    lazy, stats = formats.scan_book(files)
    full, full_stats = formats.read("book", files, fmt="parquet")
    assert lazy.collect().equals(full) and stats == {**full_stats, "bad_lines": {}}
    prep = prepare(days, load_config(None, SMALL).data)
    assert prep.features.report["file_boundary"] == 1 and not prep.features.valid[2000]
    np.testing.assert_array_equal(prep.features.ts, book["ts"].to_numpy())
    named = prepare(files, load_config(None, SMALL).data)  # --data A --data B: the same as their folder
    np.testing.assert_array_equal(named.features.x, prep.features.x)
    np.testing.assert_array_equal(named.ends["test"], prep.ends["test"])
    with pytest.raises(ValueError, match="given twice"):
        prepare([files[0], days], load_config(None, SMALL).data)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(files[0]), "--data", str(files[1]), "--out", str(run),
                                      "--model", "naive", *[a for s in TINY for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(days), "--json"])
    assert result.exit_code == 0, result.output  # the folder gives the windows the run was trained on

    (days / "book-1.parquet").write_bytes((days / "book-0.parquet").read_bytes())  # its .sha256 no longer matches
    with pytest.raises(IntegrityError, match="book-1.parquet: sha256"):
        formats.scan_book(files)
    fewer = book.select(pl.exclude("^(bid|ask)_(px|qty)_10$"))
    fewer.write_parquet(days / "book-1.parquet")
    (days / "book-1.parquet.sha256").unlink()
    with pytest.raises(ValueError, match="different numbers of levels"):
        formats.scan_book(files)
    book.with_columns(symbol=pl.Series(["a", "b"] * (book.height // 2) + ["a"] * (book.height % 2))).write_parquet(
        days / "book-1.parquet")
    with pytest.raises(ValueError, match="book-1.parquet: holds several instruments"):
        formats.scan_book(files)
    pl.DataFrame({"ts": [1], "trade_id": [1], "price": [1.0], "qty": [1.0]}).write_parquet(days / "book-1.parquet")
    with pytest.raises(ValueError, match="book-1.parquet: holds trades, not book"):
        formats.scan_book(files)


def test_a_book_off_any_grid_is_refused(binance, tmp_path):
    book, _ = formats.read("book", binance["spot"][:1], levels=10)
    path = tmp_path / "per_update.parquet"
    book.write_parquet(path)
    with pytest.raises(ValueError, match="not on a regular time grid.*ticks book --every"):
        prepare(path, load_config(None, SMALL).data)


def test_real_resampled_book_runs_on_the_receive_clock_with_warnings(binance, tmp_path):
    book, _ = formats.read("book", binance["spot"], levels=10, every="100ms")
    path = tmp_path / "spot.parquet"
    book.write_parquet(path, metadata={"symbol": "btcusdt", "market": "spot"})
    prep = prepare(path, load_config(None, SMALL).data)
    assert prep.grid.clock == "local_ts"
    warnings = data_warnings(prep)  # 11 minutes: every part is far too small
    assert [w.split(":")[0] for w in warnings] == ["train", "val", "test"]
    assert prep.ends["test"].size < MIN_WINDOWS
    label = describe_market(prep)
    assert label.startswith("BTCUSDT spot") and "not BTC-USDT" not in label


def test_a_thin_altcoin_is_labelled_as_not_btc(tmp_path):
    nexo = nexo_recording()
    if not nexo:
        pytest.skip("the NEXOUSDT recording is not under ../shared/data/binance")
    book, _ = formats.read("book", nexo[:1], levels=10, every="100ms")
    path = tmp_path / "nexo.parquet"
    book.write_parquet(path, metadata={"symbol": "nexousdt", "market": "spot"})
    label = describe_market(prepare(path, load_config(None, SMALL).data))
    assert label.startswith("NEXOUSDT spot: tick 0.001") and "not BTC-USDT: a large-tick market" in label


def test_test_periods_align_to_the_calendar():
    first, last = utc_ns("2024-07-23T15:39:42"), utc_ns("2024-07-25T01:51:46")
    days = fold_periods(first, last, "day", 1.0)
    assert (days[0][0].isoformat(), days[0][1].isoformat()) == (
        "2024-07-24T00:00:00+00:00", "2024-07-25T00:00:00+00:00")
    assert len(days) == 2 and days[1][1] > days[1][0]
    hours = fold_periods(first, last, "6h", 3.0)  # 18:00 leaves only 2.3 h before it: starts at 00:00
    assert hours[0][0].isoformat() == "2024-07-24T00:00:00+00:00" and len(hours) == 5
    with pytest.raises(ValueError, match="no test period"):
        fold_periods(first, last, "day", 40.0)
    with pytest.raises(ValueError, match="--every"):
        fold_periods(first, last, "2d", 1.0)


def test_cli_walkforward_without_a_test_period_is_a_clear_error(synth, tmp_path):
    args = ["walkforward", "--data", str(synth), "--out", str(tmp_path / "wf"), "--models", "naive",
            "--every", "1h", "--min-train-hours", "0"]
    result = CliRunner().invoke(app, args + [a for s in TINY for a in ("--set", s)])
    # 6 minutes of data hold no hour boundary after their start: one line, exit 3, nothing trained
    assert result.exit_code == 3 and "no test period" in result.output
    assert not (tmp_path / "wf").exists()


def test_walkforward_end_to_end_on_two_hours(tmp_path):
    data = tmp_path / "synth"
    generate(data, minutes=150, seed=4)  # 2024-08-09 00:00 - 02:30 UTC: test periods 01:00 and 02:00
    out = tmp_path / "wf"
    args = ["walkforward", "--data", str(data), "--out", str(out), "--models", "naive,lstm", "--every", "1h",
            "--bootstrap", "20", "--rule", "horizons=[5]", "--rule", "fees=usdm", "--json"]
    result = CliRunner().invoke(app, args + [a for s in TINY for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["folds"] == 2 and summary["market"].startswith("BTCUSDT synthetic")
    assert summary["fees"] == "usdm"
    table = pl.read_csv(out / "walkforward.csv")
    assert set(table["model"]) == {"naive", "lstm", "zero", "oracle"} and set(table["fold"]) == {1, 2}
    assert table.filter(pl.col("fold") == 1)["train_hours"].max() < 1.0
    assert table.filter(pl.col("fold") == 2)["train_hours"].max() > 1.5  # expanding window
    # the last fold's test period is 30 minutes: warned about, not silently compared
    assert "test:" in table.filter(pl.col("fold") == 2)["warning"][0]
    for fold in ("fold1", "fold2"):
        assert (out / fold / "evaluation.json").exists() and (out / fold / "backtest.json").exists()
        evaluation = json.loads((out / fold / "evaluation.json").read_text())
        assert evaluation["windows"] == int(table.filter(pl.col("fold") == int(fold[-1]))["test_windows"][0])
