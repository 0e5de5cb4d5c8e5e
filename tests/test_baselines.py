"""The quant's baselines (linear, LightGBM): features, fit, choice on validation, save and load."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from data_loaders.atomic import sha256
from data_loaders.features import target_scale
from data_loaders.schema import book_schema
from data_loaders.synth import generate
from hfformer.checkpoint import load_checkpoint
from hfformer.cli import app
from hfformer.config import load_config
from hfformer.data import prepare
from hfformer.evaluate import evaluate
from hfformer.predict import Forecaster
from hfformer.tabular import column_names, trade_flow
from hfformer.train import train

SMALL = ["data.window=20", "data.horizons=[1,2,5]", "data.gap=25", "progress=false",
         "lightgbm.num_leaves=[4,8]", "lightgbm.min_data_in_leaf=[50]", "lightgbm.max_rounds=60",
         "lightgbm.early_stopping=10", "lightgbm.num_threads=1"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    data = tmp_path_factory.mktemp("synth")
    generate(data, minutes=4, seed=3)
    return data


@pytest.fixture(scope="module")
def run(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    fields = {kind: train(synth, out, kind, load_config(overrides=SMALL)) for kind in ("linear", "lightgbm")}
    return out, fields


def linear_book(n: int, levels: int, coef: np.ndarray, noise: float, seed: int) -> pl.DataFrame:
    """A book whose next mid log return is exactly coef . log(bid_qty_i / ask_qty_i) + noise."""
    rng = np.random.default_rng(seed)
    bid_qty = rng.lognormal(0.0, 0.5, (n, levels))
    ask_qty = rng.lognormal(0.0, 0.5, (n, levels))
    r = np.log(bid_qty / ask_qty) @ coef + noise * rng.standard_normal(n)
    mid = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r[:-1])]))  # mid_{t+1} / mid_t = exp(r_t)
    half = 0.005 + 0.001 * rng.random(n)
    cols = {"ts": np.arange(n, dtype=np.int64) * 100_000_000, "local_ts": np.arange(n, dtype=np.int64) * 100_000_000,
            "update_id": np.arange(n, dtype=np.int64), "in_sync": np.ones(n, dtype=bool)}
    for i in range(levels):
        cols[f"bid_px_{i + 1}"] = mid - half - 0.01 * i
    for i in range(levels):
        cols[f"bid_qty_{i + 1}"] = bid_qty[:, i]
    for i in range(levels):
        cols[f"ask_px_{i + 1}"] = mid + half + 0.01 * i
    for i in range(levels):
        cols[f"ask_qty_{i + 1}"] = ask_qty[:, i]
    return pl.DataFrame(cols).cast(book_schema(levels))


def test_linear_recovers_a_known_linear_relation(tmp_path):
    coef = np.array([2e-5, -1e-5, 0.0, 5e-6])
    linear_book(20_000, 4, coef, noise=2e-6, seed=0).write_parquet(tmp_path / "book.parquet")
    cfg = load_config(overrides=["data.levels=4", "data.price=mid", "data.window=20", "data.horizons=[1,2]",
                                 "data.gap=25", "linear.alphas=[0.001, 1000000.0]"])
    out = train(tmp_path, tmp_path / "run", "linear", cfg)
    assert out["trade_flow"].startswith("no trades file beside") and "left out" in out["trade_flow"]
    assert out["chosen"] == {"1": 0.001, "2": 0.001}  # the heavy penalty loses on validation
    f = Forecaster(tmp_path / "run", "linear")
    ridge = f.tabular.ridge
    names = column_names(4, cfg.linear.lags, flow=False)
    raw = ridge.coef / ridge.std[:, None]  # per unit of each feature
    for j, h in enumerate((1, 2)):  # E[r_{t+1} + ... | book_t] = coef . imbalance_t: the same slope for h = 2
        want = coef * 1e4 * target_scale(h)
        got = raw[[names.index(f"imbalance_{i}") for i in range(1, 5)], j]
        assert np.allclose(got, want, rtol=0.02, atol=0.01 * np.abs(want).max()), (h, got, want)
    prep = prepare(tmp_path, cfg.data)
    ends = prep.ends["test"]
    truth = np.log(prep.features.x[ends][:, 6:10] / prep.features.x[ends][:, 14:18]) @ coef * 1e4 * target_scale(1)
    assert prep.features.names[6] == "bid_qty_1" and prep.features.names[14] == "ask_qty_1"
    assert np.corrcoef(f.forecast(prep, ends)[:, 0, 0], truth)[0, 1] > 0.999


def test_each_baseline_trains_evaluates_saves_and_loads(synth, run):
    out, fields = run
    for kind in ("linear", "lightgbm"):
        assert fields[kind]["trade_flow"].endswith(f"trades from {synth / 'trades.parquet'}")
        assert set(fields[kind]["chosen"]) == {"1", "2", "5"} and fields[kind]["val_loss"] > 0
        ckpt = load_checkpoint(out / kind / "checkpoint.pt")
        assert ckpt["kind"] == kind and ckpt["columns"][-2:] == ["flow_1", "flow_10"]
        assert ckpt["tabular"]["flow"] is True
    result = evaluate(out, synth, n_boot=20)
    assert result["models"] == ["lightgbm", "linear", "zero", "oracle"]
    table = pl.read_csv(out / "evaluation.csv")
    prep = prepare(synth, load_config(overrides=SMALL).data)
    for kind in ("linear", "lightgbm"):
        saved = pl.read_parquet(out / "forecasts" / f"{kind}.parquet")
        again = Forecaster(out, kind).forecast(prep, prep.ends["test"])  # loaded afresh from the checkpoint
        assert np.array_equal(saved["f_h5_q50"].to_numpy(), again[:, 2, 0])
        assert table.filter((pl.col("model") == kind) & (pl.col("horizon") == 5))["oracle_frac"].item() > 0.2
    lgb = load_checkpoint(out / "lightgbm" / "checkpoint.pt")
    assert {c["num_leaves"] for c in lgb["chosen"].values()} <= {4, 8}
    assert all(1 <= c["rounds"] <= 60 for c in lgb["chosen"].values())


def test_choices_never_read_the_test_split(synth, run, tmp_path):
    """Sizes in the test part of the book changed: every baseline fits and chooses exactly as before."""
    out, _ = run
    other = tmp_path / "other"
    shutil.copytree(synth, other)
    (other / "book.parquet.sha256").unlink()
    book = pl.read_parquet(other / "book.parquet")
    cut = int(book.height * 0.86)  # inside the test split (the last 15% of the windows)
    book = book.with_columns(pl.when(pl.int_range(pl.len()) >= cut).then(pl.col(c) * 3.0).otherwise(pl.col(c))
                             for c in book.columns if "_qty_" in c)
    book.write_parquet(other / "book.parquet")
    cfg = load_config(overrides=SMALL)
    assert cut > prepare(other, cfg.data).ends["val"].max()
    for kind in ("linear", "lightgbm"):
        train(other, tmp_path / "run", kind, cfg)
        a, b = (load_checkpoint(r / kind / "checkpoint.pt") for r in (out, tmp_path / "run"))
        assert a["chosen"] == b["chosen"] and a["grid"] == b["grid"]


def test_trade_flow_uses_the_trades_and_is_required_once_trained_with(synth, run, tmp_path):
    out, _ = run
    prep = prepare(synth, load_config(overrides=SMALL).data)
    flow = trade_flow(prep)
    trades = pl.read_parquet(synth / "trades.parquet")
    t = int(prep.ends["test"][0])
    ts = prep.features.ts
    window = trades.filter((pl.col("ts") > ts[t - 1]) & (pl.col("ts") <= ts[t]))
    assert flow.cumulative[t] - flow.cumulative[t - 1] == pytest.approx((window["qty"] * window["side"]).sum())
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(synth / "book.parquet", bare / "book.parquet")
    with pytest.raises(ValueError, match="trained with trade flow, but no trades file beside"):
        Forecaster(out, "linear").forecast(prepare(bare, prep.cfg), prep.ends["test"])


def test_cli_trains_a_baseline_and_names_bad_settings(synth, tmp_path):
    args = ["train", "--data", str(synth), "--out", str(tmp_path), "--model", "linear", "--json"]
    result = CliRunner().invoke(app, args + [a for s in SMALL for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["chosen"].keys() == {"1", "2", "5"}
    result = CliRunner().invoke(app, args + ["--set", "linear.alphas=[0.0]"])
    assert result.exit_code == 2 and "linear.alphas must be a non-empty list of penalties > 0" in result.output
    result = CliRunner().invoke(app, args + ["--set", "data.window=20", "--set", "linear.lags=20"])
    assert result.exit_code == 2 and "linear.lags (20) must be < data.window (20)" in result.output


def test_the_test_split_is_read_once_and_the_run_records_it(synth, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = load_config(overrides=SMALL)
    train(synth, out, "linear", cfg)
    splits = json.loads((out / "splits.json").read_text())
    assert set(splits) == {"train", "val", "test"} and splits["test"]["windows"] > 0
    first = evaluate(out, synth, n_boot=10)
    assert "second_read" not in first and "WARNING" not in capsys.readouterr().err
    reads = json.loads((out / "test_reads.json").read_text())
    assert reads["test"] == splits["test"] and len(reads["reads"]) == 1
    read = reads["reads"][0]
    assert read["command"] == "hfformer evaluate" and "@" in read["who"] and read["time"].endswith("+00:00")
    assert read["models"] == {"linear": sha256(out / "linear" / "checkpoint.pt")} and read["again"] is False

    second = evaluate(out, synth, n_boot=10)  # the same numbers, seen twice: a loud warning
    expected = f"linear: test split already read 1 time(s), last at {read['time']} by {read['who']} (hfformer evaluate)"
    assert second["second_read"] == [expected]
    assert "WARNING: second read of the test split" in capsys.readouterr().err
    evaluate(out, synth, n_boot=10, again=True)  # knowingly: recorded, not shouted
    assert "WARNING" not in capsys.readouterr().err

    train(synth, out, "linear", load_config(overrides=[*SMALL, "linear.alphas=[5.0]"]))  # retrained after a look
    train(synth, out, "lightgbm", cfg)  # a new model: its first read
    third = evaluate(out, synth, n_boot=10)["second_read"]
    assert len(third) == 1 and third[0].startswith("linear: retrained after its test split was read 3 time(s)")
    reads = json.loads((out / "test_reads.json").read_text())["reads"]
    assert [r["again"] for r in reads] == [False, False, True, False] and set(reads[-1]["models"]) == {
        "linear", "lightgbm"}

    shutil.rmtree(out / "forecasts")  # the backtest computes missing forecasts: a read, recorded
    result = CliRunner().invoke(app, ["backtest", str(out), "--data", str(synth), "--again", "--set", "horizons=[5]"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "test_reads.json").read_text())["reads"][-1]["command"] == "hfformer backtest"

    # forecasts over the data the run was trained on cover its test windows: a read; over other data, none
    result = CliRunner().invoke(app, ["predict", str(out), "--data", str(synth), "--model", "linear", "--out",
                                      str(tmp_path / "f.parquet")])
    assert result.exit_code == 0 and "WARNING: second read of the test split" in result.output
    reads = json.loads((out / "test_reads.json").read_text())["reads"]
    other = tmp_path / "later"
    generate(other, minutes=6, seed=9)
    result = CliRunner().invoke(app, ["predict", str(out), "--data", str(other), "--model", "linear", "--out",
                                      str(tmp_path / "g.parquet")])
    assert result.exit_code == 0, result.output
    assert reads[-1]["command"] == "hfformer predict" and json.loads((out / "test_reads.json").read_text())[
        "reads"] == reads


def test_a_changed_test_split_is_refused(synth, tmp_path):
    out = tmp_path / "run"
    train(synth, out, "linear", load_config(overrides=SMALL))
    other = tmp_path / "other"
    shutil.copytree(synth, other)
    (other / "book.parquet.sha256").unlink()
    book = pl.read_parquet(other / "book.parquet")
    book.with_columns(pl.col("ask_px_1") + 0.01 * (pl.int_range(pl.len()) == book.height - 40)).write_parquet(
        other / "book.parquet")  # one price near the end: the same windows, another realised target
    result = CliRunner().invoke(app, ["evaluate", str(out), "--data", str(other)])
    assert result.exit_code == 3 and len(result.output.strip().splitlines()) == 1
    assert "its test split" in result.output and "is not the run's" in result.output
    assert not (out / "test_reads.json").exists() and not (out / "evaluation.csv").exists()
    with pytest.raises(ValueError, match="the test windows of this data differ from those the run's models"):
        train(other, out, "lightgbm", load_config(overrides=SMALL))
    (out / "splits.json").unlink()  # a run from before splits.json: the first read's windows are the reference
    evaluate(out, synth, n_boot=10)
    with pytest.raises(ValueError, match="is not the run's"):
        evaluate(out, other, n_boot=10)
